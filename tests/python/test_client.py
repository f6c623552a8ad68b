"""umi.Client and umi.aio.Client against the real host."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

import umi
import umi.aio
from conftest import HOST_BINARY, SOURCE, await_subscription, await_subscription_async


def test_run_returns_the_result_and_failures_raise_their_subclass(host):
    with umi.Client(host.rpc) as client:
        ok = client.run("noop", {"x": 1})
        unknown = client.run("no_such_plugin")
        failed = client.run("faulty", {"mode": "raise"})
        timed_out = client.run("faulty", {"mode": "hang"}, timeout_ms=100)
    assert ok.ok and ok.host == "pytest" and ok.attempts == 1 and ok.allocation["cpu_cores"] > 0
    assert ok.raise_for_status() is ok
    assert (unknown.status, unknown.error_code) == ("rejected", "unknown_plugin")
    with pytest.raises(umi.TaskRejected) as rejected:
        unknown.raise_for_status()
    assert rejected.value.code == "unknown_plugin" and rejected.value.result is unknown
    with pytest.raises(umi.TaskFailed, match="KeyError"):
        failed.raise_for_status()
    with pytest.raises(umi.TaskTimedOut):
        timed_out.raise_for_status()


def test_a_retry_policy_runs_a_failing_task_again(host):
    with umi.Client(host.rpc) as client:
        failed = client.run("faulty", {"mode": "raise"}, retry={"attempts": 3, "backoff_ms": 10, "on": ["plugin_error"]})
        once = client.run("faulty", {"mode": "raise"})
        with pytest.raises(umi.UsageError, match="unknown retry key"):
            client.submit("noop", retry={"attemps": 2})
    assert (failed.status, failed.error_code, failed.runs) == ("error", "plugin_error", 3)
    assert failed.attempts == 1, "one send by the client; the host ran it three times"
    assert (once.status, once.runs) == ("error", 0)


def test_a_flow_runs_its_steps_in_order_and_answers_once(host):
    with umi.Client(host.rpc) as client:
        done = client.run_flow({"a": {"plugin": "echo", "input": {"n": 1}},
                                "b": {"plugin": "echo", "input": {}, "after": ["a"]}}, id="py-flow")
        failed = client.run_flow({"a": {"plugin": "faulty", "input": {"mode": "raise"}},
                                  "b": {"plugin": "echo", "after": ["a"]}})
        found = client.result("py-flow")
        with pytest.raises(umi.UsageError, match="unknown key"):
            client.submit_flow({"a": {"plugin": "echo", "inptu": {}}})
    assert (done.status, done.plugin, done.id) == ("ok", "flow", "py-flow")
    assert done.output["steps"]["b"]["output"]["echo"]["upstream"]["a"]["echo"] == {"n": 1}
    assert (failed.status, failed.error_code) == ("error", "step_failed")
    assert failed.output["steps"]["b"]["status"] == "skipped"
    assert found.state == "finished" and found.result.output["steps"].keys() == {"a", "b"}


def test_map_yields_one_result_per_input_with_a_bounded_number_in_flight(host):
    with umi.Client(host.rpc) as client:
        results = list(client.map("echo", ({"i": i} for i in range(200)), max_in_flight=8))
        stats = client.stats()
    assert sorted(r.output["echo"]["i"] for r in results) == list(range(200))
    assert len({r.id for r in results}) == 200
    assert stats["done"]["ok"] >= 200


def test_a_task_sent_before_any_host_is_there_arrives_on_a_retry(start_host):
    with umi.Client(tasks="@tcp://127.0.0.1:*", results="@tcp://127.0.0.1:*", retry_after=0.2,
                    max_attempts=1000) as client:
        future = client.submit("noop", id="early")
        # No host: the PUSH socket cannot queue it, and the client sends it again every 0.1 s.
        host = start_host(endpoints={"tasks": ">" + client.tasks_endpoint, "results": ">" + client.results_endpoint})
        assert client.wait_for_hosts(1, 30)
        result = future.result(30)
    assert result.ok and result.attempts >= 2 and result.host == "pytest"
    assert host.process.poll() is None


def test_a_retry_meeting_the_running_task_waits_for_its_one_result(host):
    with umi.Client(host.rpc, retry_after=0.1, max_attempts=50) as client:
        result = client.run("slow", {"ms": 1500, "steps": 1}, id="long-1")
        stats = client.stats()
    # Sent several times while it ran (duplicate_id: keep waiting); it ran once, one result came out.
    assert result.ok and result.attempts >= 2
    assert stats["plugins"]["slow"]["done"] == {"ok": 1, "rejected": result.attempts - 1}


def test_a_task_held_longer_than_its_attempts_still_gets_its_result(host):
    # Each retry meets the host still running it (duplicate_id), which starts the count again.
    # Before, those answers used up the attempts: no_result at 0.2 s, and the host's result dropped.
    with umi.Client(host.rpc, retry_after=0.1, max_attempts=2) as client:
        result = client.run("slow", {"ms": 1000, "steps": 1}, id="long-2")
    assert result.ok, (result.error_code, result.error_message)
    assert result.attempts >= 3


def test_an_id_sent_again_after_its_result_gets_the_stored_result_not_a_second_run(host):
    with umi.Client(host.rpc) as first:
        original = first.run("echo", {"n": 1}, id="dedup-1")
    with umi.Client(host.rpc) as second:  # a producer restarted after losing the reply
        again = second.run("echo", {"n": 1}, id="dedup-1")
        conflict = second.run("echo", {"n": 2}, id="dedup-1")
        stats = second.stats()
    assert again.ok and again.raw == original.raw and again.output["pid"] == original.output["pid"]
    assert (conflict.status, conflict.error_code) == ("rejected", "id_conflict")
    assert stats["deduplicated"] == 1


def test_no_result_after_every_attempt(tmp_path):
    with umi.Client(tasks=f"ipc://{tmp_path}/tasks", results=f"ipc://{tmp_path}/results", retry_after=0.05,
                    max_attempts=2) as client:
        result = client.run("noop", id="lost")
    assert (result.status, result.error_code, result.attempts) == ("error", "no_result", 2)
    with pytest.raises(umi.NoResult):
        result.raise_for_status()


def test_control_requests(host):
    with umi.Client(host.rpc) as client:
        assert client.health()["status"] == "serving"
        assert client.stats()["host"] == "pytest"
        with pytest.raises(umi.ControlError) as missing:
            client.cancel("never-sent")
        assert missing.value.code == "not_found"
        assert client.reload()["ok"]
        assert client.drain()["ok"]
        assert host.process.wait(30) == 0


def test_a_task_is_looked_up_by_id_running_finished_or_unknown(host):
    with umi.Client(host.rpc, events=host.events) as client, client.events() as stream:
        assert client.result("never-sent") == umi.Lookup("unknown")
        done = client.run("echo", {"a": 1}, id="looked-up")
        found = client.result("looked-up")
        assert found.state == "finished" and found.result is not None
        assert (found.result.id, found.result.status, found.result.output) == ("looked-up", "ok", done.output)
        assert found.result.started_at == done.started_at, "the stored result, as it was sent"
        await_subscription(client, stream)
        running = client.submit("slow", {"ms": 60000}, id="lookup-slow")
        while not ((event := stream.get()).topic == "task.started" and event.id == "lookup-slow"):
            pass
        assert client.result("lookup-slow") == umi.Lookup("running")
        client.cancel("lookup-slow")
        assert running.result(30).status == "cancelled"
        assert client.result("lookup-slow").result.status == "cancelled"
        with pytest.raises(umi.ControlError) as no_id:
            client._control("result", 10)
        assert no_id.value.code == "bad_request"


def test_bad_use_gets_a_clear_exception(host):
    with pytest.raises(umi.UsageError, match="not connected"):
        umi.Client()
    with pytest.raises(umi.UsageError, match="not a ZeroMQ endpoint"):
        umi.Client("localhost:5557")
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        umi.Client(host.rpc, retries=3)
    with pytest.raises(umi.UsageError, match="all three keys"):
        umi.Client(host.rpc, curve_server_key="x" * 40)
    client = umi.Client(host.rpc)
    with pytest.raises(umi.UsageError, match="input must be a dict"):
        client.submit("noop", [1, 2])
    with pytest.raises(umi.UsageError, match="unknown resources key"):
        client.submit("noop", resources={"threads": 2})
    future = client.submit("slow", {"ms": 60000})
    client.close()
    with pytest.raises(umi.ClientClosed):
        future.result(10)
    with pytest.raises(umi.ClientClosed):
        client.submit("noop")
    with umi.Client(tasks=host.tasks, results=host.results) as pipeline:
        with pytest.raises(umi.UsageError, match="needs an rpc endpoint"):
            pipeline.stats()
        with pytest.raises(umi.UsageError, match="events endpoint"):
            pipeline.events()


def test_curve_keys_get_through_and_strangers_do_not(start_host, tmp_path):
    def keygen(name: str) -> tuple[str, str]:
        subprocess.run([HOST_BINARY, "keygen", "--out", str(tmp_path / name)], check=True, capture_output=True)
        words = dict(line.split() for line in (tmp_path / f"{name}.key").read_text().splitlines())
        return words["public"], words["secret"]

    server_public, _ = keygen("server")
    client_public, client_secret = keygen("client")
    stranger_public, stranger_secret = keygen("stranger")
    (tmp_path / "authorized.pub").write_text(client_public + "\n")
    from conftest import CONFIG
    host = start_host(config=CONFIG + f"security:\n  curve:\n    secret_key_file: {tmp_path / 'server.key'}\n"
                                      f"    authorized_keys_file: {tmp_path / 'authorized.pub'}\n")
    with umi.Client(host.rpc, curve_server_key=server_public, curve_public_key=client_public,
                    curve_secret_key=client_secret) as client:
        assert client.run("noop").ok
    with umi.Client(host.rpc, curve_server_key=server_public, curve_public_key=stranger_public,
                    curve_secret_key=stranger_secret, retry_after=0.2, max_attempts=2) as stranger:
        assert stranger.run("noop").error_code == "no_result"


def test_the_asyncio_client(host):
    async def main() -> None:
        async with umi.aio.Client(host.rpc, events=host.events) as client:
            result = await client.run("echo", {"a": 1})
            assert result.ok and result.output["echo"] == {"a": 1}
            futures = [client.submit("echo", {"i": i}) for i in range(50)]
            assert sorted(r.output["echo"]["i"] for r in await asyncio.gather(*futures)) == list(range(50))
            seen = [r.output["echo"]["i"] async for r in client.map("echo", ({"i": i} for i in range(100)),
                                                                  max_in_flight=4)]
            assert sorted(seen) == list(range(100))
            assert (await client.run("nope")).error_code == "unknown_plugin"
            assert (await client.health())["status"] == "serving"
            async with client.events() as stream:
                await await_subscription_async(client, stream)
                running = client.submit("slow", {"ms": 60000}, id="aio-slow")
                while not ((event := await stream.get()).topic == "task.started" and event.id == "aio-slow"):
                    pass
                assert (await client.cancel("aio-slow"))["state"] == "running"
                assert (await running).status == "cancelled"
            with pytest.raises(umi.ControlError):
                await client.cancel("never-sent")
            pending = client.submit("slow", {"ms": 60000})
        with pytest.raises(umi.ClientClosed):
            await pending
        with pytest.raises(umi.ClientClosed):
            client.submit("noop")

    asyncio.run(main())


def test_the_asyncio_client_retries_and_gives_up(tmp_path):
    async def main() -> umi.Result:
        async with umi.aio.Client(tasks=f"ipc://{tmp_path}/t", results=f"ipc://{tmp_path}/r", retry_after=0.05,
                                  max_attempts=3) as client:
            return await client.run("noop")

    result = asyncio.run(main())
    assert (result.error_code, result.attempts) == ("no_result", 3)


def test_python_m_umi_submit(host, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "a", "plugin": "echo", "input": {"n": 1}}\n\n{"plugin": "noop"}\n')
    env = {"PYTHONPATH": str(SOURCE / "python"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "umi", "submit", str(tasks), "--rpc", host.rpc], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(r["status"] for r in results) == ["ok", "ok"]
    assert next(r for r in results if r["id"] == "a")["output"]["echo"] == {"n": 1}

    failing = subprocess.run([sys.executable, "-m", "umi", "submit", "--rpc", host.rpc], input='{"plugin": "nope"}\n',
                             capture_output=True, text=True, env=env)
    assert failing.returncode == 1 and json.loads(failing.stdout)["error"]["code"] == "unknown_plugin"

    bad = subprocess.run([sys.executable, "-m", "umi", "submit", "--rpc", host.rpc],
                         input='{"plugin": "noop"}\n{"plugin": "noop", "inptu": {}}\n', capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2 and "stdin:2: unknown key(s) inptu" in bad.stderr
    assert len(bad.stdout.splitlines()) == 1  # the good line before it was answered

    deep = '{"plugin": "noop", "input": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}\n"
    too_deep = subprocess.run([sys.executable, "-m", "umi", "submit", "--rpc", host.rpc],
                              input='{"plugin": "noop"}\n' + deep, capture_output=True, text=True, env=env)
    # Before: a RecursionError traceback, and the good line's result never written.
    assert too_deep.returncode == 2, too_deep.stderr
    assert "stdin:2: arrays and objects nested deeper than 64 levels" in too_deep.stderr
    assert "Traceback" not in too_deep.stderr
    assert len(too_deep.stdout.splitlines()) == 1

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} in the output: not JSON")

    nan = subprocess.run([sys.executable, "-m", "umi", "submit", "--rpc", host.rpc],
                         input='{"plugin": "echo", "input": {"nan": true}}\n', capture_output=True, text=True, env=env)
    assert nan.returncode == 0, nan.stderr
    assert json.loads(nan.stdout, parse_constant=strict)["output"] == {"ratio": None, "limit": None}  # before: NaN
    nan_in = subprocess.run([sys.executable, "-m", "umi", "submit", "--rpc", host.rpc],
                            input='{"plugin": "echo", "input": {"x": NaN}}\n', capture_output=True, text=True, env=env)
    assert nan_in.returncode == 2 and "stdin:1: not JSON: NaN is not JSON" in nan_in.stderr

    usage = subprocess.run([sys.executable, "-m", "umi", "stats", "--rpc", "localhost"], capture_output=True, text=True,
                           env=env)
    assert usage.returncode == 2 and "'localhost' is not a ZeroMQ endpoint" in usage.stderr
    stats = subprocess.run([sys.executable, "-m", "umi", "stats", "--rpc", host.rpc], capture_output=True, text=True,
                           env=env)
    assert stats.returncode == 0 and json.loads(stats.stdout)["host"] == "pytest"
    looked_up = subprocess.run([sys.executable, "-m", "umi", "result", "a", "--rpc", host.rpc], capture_output=True,
                               text=True, env=env)
    assert looked_up.returncode == 0, looked_up.stderr
    found = json.loads(looked_up.stdout)
    assert (found["state"], found["result"]["id"], found["result"]["output"]["echo"]) == ("finished", "a", {"n": 1})
