"""Operator-facing behaviour of umi-host seen from outside (issue 19): the real
binary, its log, its CLI."""

from __future__ import annotations

import subprocess
import sys

import umi
from conftest import CPP_PLUGINS, HOST_BINARY, PY_PLUGINS, Path, await_subscription


def test_progress_events_are_coalesced_and_completion_always_goes_out(host):
    with umi.Client(host.rpc, events=host.events) as client, client.events() as stream:
        await_subscription(client, stream)
        client.run("slow", {"ms": 600, "steps": 60}, id="chatty").raise_for_status()  # a report every 10 ms
        seen = []
        while not (seen and seen[-1].topic == "task.finished" and seen[-1].id == "chatty"):
            seen.append(stream.get())
    progress = [e.progress for e in seen if e.topic == "task.progress" and e.id == "chatty"]
    # At most one per 100 ms (a few a second), never none, and the last one says done.
    assert 1 < len(progress) < 60 and progress[-1] == 1.0
    assert progress == sorted(progress)


def test_a_task_that_overran_its_timeout_is_logged_with_by_how_much(host):
    with umi.Client(host.rpc) as client:
        stopped = client.run("slow", {"ms": 60000, "steps": 1}, timeout_ms=200)  # stops when told
        killed = client.run("faulty", {"mode": "hang"}, timeout_ms=200)  # ignores it: killed after the grace
    assert stopped.status == killed.status == "timeout"
    log = host.log()
    assert f"task '{stopped.id}' (slow) overran its timeout_ms=200 by " in log
    assert "ms before it stopped" in log
    assert (f"task '{killed.id}' (faulty) overran its timeout_ms=200 by " in log
            and "ms: it ignored cancellation and its worker process was killed" in log)


def test_plugins_takes_a_plugin_file_as_well_as_a_directory(start_host, tmp_path):
    env = {"UMI_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    noop = str(Path(CPP_PLUGINS) / "noop.so")
    echo = str(Path(PY_PLUGINS) / "echo.py")
    listing = subprocess.run([HOST_BINARY, "plugins", "--plugins", noop, "--plugins", echo], capture_output=True,
                             text=True, env=env)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:] if line.strip()]
    assert names == ["echo", "noop"]
    (tmp_path / "notes.txt").write_text("not a plugin")
    wrong = subprocess.run([HOST_BINARY, "plugins", "--plugins", str(tmp_path / "notes.txt")], capture_output=True,
                           text=True, env=env)
    assert wrong.returncode == 1
    assert "not a plugin file: give a directory, a .so library or a <name>.py file" in wrong.stdout
    host = start_host(plugin_dirs=[noop, echo])
    with umi.Client(host.rpc) as client:
        assert client.run("noop").ok and client.run("echo").ok
        assert client.run("sleep").error_code == "unknown_plugin"  # only the files named were loaded


def test_reload_lists_a_plugin_whose_file_changed_as_restart_needed(start_host, tmp_path):
    import os
    import shutil
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(Path(PY_PLUGINS) / "echo.py", plugins / "echo.py")
    shutil.copy(Path(CPP_PLUGINS) / "noop.so", plugins / "noop.so")
    host = start_host(plugin_dirs=[str(plugins)])
    with umi.Client(host.rpc) as client:
        assert client.reload()["restart_needed"] == []
        with open(plugins / "echo.py", "a") as edited:
            edited.write("\n# a new version\n")
        # A deploy replaces a library by renaming a new file over it (the old one stays mapped).
        shutil.copy(Path(CPP_PLUGINS) / "sleep.so", plugins / "noop.so.new")
        os.rename(plugins / "noop.so.new", plugins / "noop.so")
        reply = client.reload()
        assert client.run("noop").ok  # the loaded version serves on
    assert sorted(reply["restart_needed"]) == ["plugins.echo.library", "plugins.noop.library"]
    assert f"plugin echo: {plugins / 'echo.py'} changed on disk since it was loaded; restart the host" in host.log()


def test_json_log_lines_about_a_task_carry_task_plugin_status_and_code(start_host):
    import json
    host = start_host(extra_args=["--log-format", "json", "--log-level", "info"])
    with umi.Client(host.rpc) as client:
        client.run("faulty", {"mode": "raise"}, id="fails")
        client.run("no_such_plugin", id="unknown")
        client.run("echo", id="talks")
    lines = [json.loads(line) for line in host.log().splitlines() if line.startswith("{")]
    by_task = {}
    for line in lines:
        by_task.setdefault(line.get("task"), []).append(line)
    ended = next(line for line in by_task["fails"] if "ended" in line["message"])
    assert (ended["plugin"], ended["status"], ended["code"]) == ("faulty", "error", "plugin_error")
    rejected = next(line for line in by_task["unknown"] if "rejected" in line["message"])
    assert (rejected["plugin"], rejected["status"], rejected["code"]) == ("no_such_plugin", "rejected",
                                                                         "unknown_plugin")
    said = next(line for line in by_task["talks"] if "echoing task talks" in line["message"])
    assert said["plugin"] == "echo" and "status" not in said
    assert all(line["time"].endswith("Z") for line in lines)


def test_umi_submit_streams_its_input(host):
    """The first task is answered while its producer has not written the second line yet."""
    import json
    import threading
    from conftest import SUBMIT_BINARY
    submit = subprocess.Popen([SUBMIT_BINARY, "--rpc", host.rpc, "--quiet"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read_one() -> None:
        lines.append(submit.stdout.readline())

    submit.stdin.write('{"id": "first", "plugin": "noop"}\n')
    submit.stdin.flush()
    reader = threading.Thread(target=read_one)
    reader.start()
    reader.join(60)
    assert lines and json.loads(lines[0])["id"] == "first", "no result before the input ended"
    submit.stdin.write('{"id": "second", "plugin": "noop"}\n')
    submit.stdin.close()
    rest = submit.stdout.read()
    assert submit.wait(60) == 0
    assert json.loads(rest)["id"] == "second"


def test_metrics_pass_promtool_and_say_what_an_alert_needs(start_host):
    import json
    import shutil
    import urllib.request
    promtool = shutil.which("promtool")
    host = start_host(http=True)
    with umi.Client(host.rpc) as client:
        client.run("faulty", {"mode": "raise"})
        client.run("faulty", {"mode": "abort"})  # a worker dies and is replaced
        client.run("no_such_plugin")
        client.run("faulty", {"mode": "code"})
    text = urllib.request.urlopen(host.http + "/metrics").read().decode()
    if promtool:  # scripts/bootstrap installs it (Debian: prometheus)
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    # Each family's samples come together (a parser reading them one family at a time).
    families = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    seen: list[str] = []
    for name in families:
        base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        if not seen or seen[-1] != base:
            assert base not in seen, f"{base} is split"
            seen.append(base)
    assert samples['umi_task_failures_total{plugin="faulty",status="error",code="plugin_error"}'] == "1"
    assert samples['umi_task_failures_total{plugin="faulty",status="crashed",code="crashed"}'] == "1"
    assert samples['umi_task_failures_total{plugin="faulty",status="error",code="bad_input"}'] == "1"
    assert samples['umi_task_failures_total{plugin="_unknown",status="rejected",code="unknown_plugin"}'] == "1"
    assert samples['umi_tasks_total{plugin="echo",status="timeout"}'] == "0"  # present before the first
    assert samples['umi_worker_process_exits_total{plugin="faulty"}'] == "1"
    assert int(samples['umi_worker_processes{plugin="faulty"}']) >= 1
    assert samples["umi_reading_tasks"] == "1"
    assert float(samples["process_resident_memory_bytes"]) > 0
    assert 'umi_task_run_seconds_bucket{plugin="faulty",le="45"}' in samples  # buckets resolve media work
    stats = json.loads(urllib.request.urlopen(host.http + "/api/stats").read())  # what the dashboard draws
    assert stats["plugins"]["faulty"]["failures"] == {"plugin_error": 1, "crashed": 1, "bad_input": 1}
    assert stats["failures"]["unknown_plugin"] == 1 and stats["reading_tasks"] is True
    assert stats["oldest_queued_s"] == 0 and stats["plugins"]["echo"]["queued"] == 0


def test_settings_keys_a_plugin_does_not_read_are_named_with_a_did_you_mean(tmp_path):
    import json
    config = tmp_path / "config.yaml"
    config.write_text("hardware:\n  cpu: {cores: 2, threads: 2}\n  memory: {total_gb: 4}\nplugins:\n"
                      "  probe:\n    settings: {media_root: [/tmp]}\n  echo:\n    settings: {model: x, beam: 3}\n")
    env = {"UMI_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    check = subprocess.run([HOST_BINARY, "check-config", str(config), "--plugins", CPP_PLUGINS, "--plugins", PY_PLUGINS],
                           capture_output=True, text=True, env=env)
    assert ("plugins.probe.settings.media_root: probe reads no setting 'media_root' (did you mean 'media_roots'?); "
            "it reads media_roots, output_root; the key is ignored") in check.stdout
    assert "plugins.echo.settings.beam: echo reads no setting 'beam' (did you mean 'beams'?)" in check.stdout
    assert "plugins.echo.settings.model" not in check.stdout
    listing = json.loads(subprocess.run([HOST_BINARY, "plugins", "--json", "--plugins", CPP_PLUGINS, "--plugins",
                                         PY_PLUGINS], capture_output=True, text=True, env=env).stdout)
    declared = {p["name"]: p["settings"] for p in listing["plugins"]}
    assert [s["name"] for s in declared["probe"]] == ["media_roots", "output_root"]
    assert declared["echo"][1] == {"name": "beams", "type": "int", "description": "search width"}
    assert declared["noop"] == []  # declares none: every key is taken


def test_histogram_buckets_come_from_the_config(start_host):
    import urllib.request
    from conftest import CONFIG
    host = start_host(config=CONFIG + "http:\n  histogram_buckets_s: [0.5, 60, 7200]\n", http=True)
    with umi.Client(host.rpc) as client:
        assert client.run("noop").ok
    text = urllib.request.urlopen(host.http + "/metrics").read().decode()
    bounds = [line.split('le="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith('umi_task_run_seconds_bucket{plugin="noop"')]
    assert bounds == ["0.5", "60", "7200", "+Inf"]


def test_plugin_dirs_come_from_the_config_or_the_environment(tmp_path):
    # Before, only --plugins named them: a unit needed an ExecStart override to add one.
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "hello.py").write_text("def execute(ctx, input):\n    return {}\n")
    config = tmp_path / "umi.yaml"
    config.write_text("hardware:\n  cpu: {cores: 2, threads: 2}\n  memory: {total_gb: 4}\nplugin_dirs: [plugins]\n")
    env = {"UMI_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}

    def names(extra_env: dict[str, str]) -> set[str]:
        listing = subprocess.run([HOST_BINARY, "plugins", "--json", "--config", str(config)], capture_output=True,
                                 text=True, env={**env, **extra_env})
        import json
        return {p["name"] for p in json.loads(listing.stdout)["plugins"]}

    assert names({}) == {"hello"}  # relative to the config file
    assert "echo" in names({"UMI_PLUGIN_DIRS": f"/nowhere:{PY_PLUGINS}"}) and "hello" not in names(
        {"UMI_PLUGIN_DIRS": PY_PLUGINS})
    config.write_text("hardware:\n  cpu: {cores: 2, threads: 2}\n  memory: {total_gb: 4}\nplugin_dirs: plugins\n")
    check = subprocess.run([HOST_BINARY, "check-config", str(config)], capture_output=True, text=True, env=env)
    assert check.returncode != 0 and "plugin_dirs" in check.stdout + check.stderr, check.stdout + check.stderr


def test_at_debug_every_task_end_is_logged_by_id_and_a_traceback_reads_as_indented_lines(start_host):
    # Before: an ok task's end was never logged (an operator could not find it by id), and a traceback
    # was one line of literal \n.
    host = start_host(extra_args=["--log-level", "debug"])
    with umi.Client(host.rpc) as client:
        client.run("echo", {"x": 1}, id="find-me-later").raise_for_status()
        assert client.run("faulty", {"mode": "raise"}).error_code == "plugin_error"
    log = host.log()
    assert "task 'find-me-later' (echo) ended ok: queued" in log
    assert "\n    Traceback (most recent call last):\n      File " in log, log
