"""umi.RedisClient against a real redis-server and a real host on it."""

from __future__ import annotations

import json
import subprocess
import sys

import redis

import umi
from conftest import CONFIG, SOURCE, SUBMIT_BINARY


def test_the_redis_client_runs_maps_and_trims_its_stream(start_host, redis_url):
    start_host(config=CONFIG + f"transport: {{redis: '{redis_url}'}}\n")
    with umi.RedisClient(redis_url) as client:
        stream = client.reply_to
        result = client.run("echo", {"a": 1}, wait=60).raise_for_status()
        assert result.output["echo"] == {"a": 1} and result.host == "pytest"
        results = list(client.map("noop", ({"i": i} for i in range(300)), max_in_flight=64))
        assert len({r.id for r in results}) == 300 and all(r.ok for r in results)
        failed = client.run("faulty", {"mode": "raise"}, wait=60)
        assert (failed.status, failed.error_code) == ("error", "plugin_error")
        # No host runs this plugin: the task waits in Redis, and run gives up when told.
        waiting = client.run("no_such_plugin", wait=0.3)
        assert (waiting.status, waiting.error_code) == ("error", "no_result")
        server = redis.Redis.from_url(redis_url)
        assert server.xlen(stream) == 0  # read and trimmed
    assert not server.exists(stream)  # a stream of its own is deleted at close


def test_a_restarted_producer_collects_what_came_meanwhile(start_host, redis_url):
    with umi.RedisClient(redis_url, reply_to="umi:results:producer-7") as first:
        for i in range(5):
            first.submit("echo", {"i": i}, id=f"p7-{i}")
    # The producer is gone; a host comes and runs its tasks.
    start_host(config=CONFIG + f"transport: {{redis: '{redis_url}'}}\n")
    with umi.RedisClient(redis_url, reply_to="umi:results:producer-7") as second:
        results = [second.expect(f"p7-{i}").result(60) for i in range(5)]
    assert [r.output["echo"]["i"] for r in results] == list(range(5))


def test_a_priority_task_goes_to_its_levels_stream_and_runs(start_host, redis_url):
    from umi.redis_client import task_stream
    assert [task_stream("p", n) for n in (-3, 0, 1, 3, 4, 6, 7, 100)] == [
        "umi:tasks:p", "umi:tasks:p", "umi:tasks:p:p3", "umi:tasks:p:p3",
        "umi:tasks:p:p6", "umi:tasks:p:p6", "umi:tasks:p:p9", "umi:tasks:p:p9"]
    start_host(config=CONFIG + f"transport: {{redis: '{redis_url}'}}\n")
    with umi.RedisClient(redis_url) as client:
        assert client.run("echo", {"urgent": True}, priority=9, wait=60).raise_for_status().ok
    assert redis.Redis.from_url(redis_url).xlen("umi:tasks:echo:p9") <= 1  # taken, and trimmed at a heartbeat


def test_bad_redis_use_gets_a_clear_exception(tmp_path):
    import pytest
    with pytest.raises(umi.UsageError, match="cannot reach Redis"):
        umi.RedisClient(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(umi.UsageError, match="cannot read the password file"):
        umi.RedisClient("redis://127.0.0.1:1/0", password_file=tmp_path / "missing")


def test_python_m_umi_submit_sends_to_a_farm(start_host, redis_url):
    # As `umi-submit --redis` does; before, python3 -m umi had no --redis.
    start_host(config=CONFIG + f"transport: {{redis: '{redis_url}'}}\n")
    env = {"PYTHONPATH": str(SOURCE / "python"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "umi", "submit", "--redis", redis_url],
                         input='{"id": "r1", "plugin": "echo", "input": {"n": 1}}\n{"id": "r2", "plugin": "noop"}\n',
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    results = {r["id"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert results["r1"]["output"]["echo"] == {"n": 1} and results["r2"]["status"] == "ok"


def test_a_farms_results_are_kept_in_redis_for_lookups_by_id(start_host, redis_url):
    start_host(config=CONFIG + f"transport: {{redis: '{redis_url}'}}\ndedup: {{window_s: 60}}\n")
    with umi.RedisClient(redis_url) as client:
        assert client.result("kept-1") == umi.Lookup("unknown")
        done = client.run("echo", {"k": 1}, id="kept-1", wait=60).raise_for_status()
        found = client.result("kept-1")
        # The first result to a reply stream goes by script, later ones in a watched transaction: both keep it.
        later = client.run("echo", {"k": 2}, id="kept-2", wait=60).raise_for_status()
        assert client.result("kept-2").result.output == later.output
    assert found.state == "finished" and found.result is not None
    assert (found.result.id, found.result.output, found.result.host) == ("kept-1", done.output, "pytest")
    ttl_ms = redis.Redis.from_url(redis_url).pttl("umi:result:kept-1")
    assert 0 < ttl_ms <= 60_000, "kept for the dedup window"
    run = subprocess.run([SUBMIT_BINARY, "--redis", redis_url, "--op", "result", "--id", "kept-1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["result"]["output"]["echo"] == {"k": 1}



def test_a_farm_that_keeps_no_results_keeps_none(start_host, redis_url):
    start_host(config=CONFIG + f"transport: {{redis: '{redis_url}', keep_results: false}}\n")
    with umi.RedisClient(redis_url) as client:
        client.run("echo", {"k": 1}, id="not-kept", wait=60).raise_for_status()
        client.run("echo", {"k": 2}, id="not-kept-2", wait=60).raise_for_status()  # the transaction's path too
        assert client.result("not-kept") == umi.Lookup("unknown")
        assert client.result("not-kept-2") == umi.Lookup("unknown")
