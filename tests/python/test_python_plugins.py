"""Python plugins (<name>.py in a plugin directory) run by the real host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import umi
from conftest import CONFIG, HOST_BINARY, PY_PLUGINS, Path, await_subscription


def test_a_python_plugin_runs_with_its_requirement_settings_and_log(start_host):
    host = start_host(config=CONFIG + "plugins:\n  echo:\n    settings: {model: small, beams: 4}\n")
    with umi.Client(host.rpc) as client:
        result = client.run("echo", {"text": "hi", "n": [1, 2]}).raise_for_status()
    assert result.output["echo"] == {"text": "hi", "n": [1, 2]}
    assert result.output["settings"] == {"model": "small", "beams": 4}
    assert result.allocation["cpu_cores"] == 0.5 and result.allocation["memory_mb"] == 64
    # The grant reaches the libraries that size their thread pools from the environment.
    assert result.output["cpu_threads"] == 2 and result.output["omp_num_threads"] == "2"
    assert result.output["cuda_visible_devices"] == ""
    log = host.log()
    assert f"[echo {result.id}] echoing task {result.id}" in log
    assert "setup with 2 setting(s)" in log


def test_config_overrides_apply_to_python_plugins(start_host):
    host = start_host(config=CONFIG + "plugins:\n  echo: {cpu_cores: 1.5, memory_mb: 128}\n")
    with umi.Client(host.rpc) as client:
        result = client.run("echo").raise_for_status()
    assert result.allocation["cpu_cores"] == 1.5 and result.allocation["memory_mb"] == 128


def test_an_exception_is_an_error_result_with_type_and_message_and_a_traceback_in_the_log(host):
    with umi.Client(host.rpc) as client:
        raised = client.run("faulty", {"mode": "raise"})
        coded = client.run("faulty", {"mode": "code"})
        wrong = client.run("faulty", {"mode": "not_a_dict"})
        after = client.run("faulty", {"mode": "fine"})
    assert (raised.status, raised.error_code, raised.error_message) == ("error", "plugin_error", "KeyError: 'no such thing'")
    # The traceback, in the result too (before: only in the host's log), from the plugin's frame on.
    assert raised.error_detail.startswith("Traceback (most recent call last):"), raised.error_detail
    assert "faulty.py" in raised.error_detail and raised.error_detail.endswith("KeyError: 'no such thing'")
    assert "_worker.py" not in raised.error_detail and coded.error_detail == ""
    assert (coded.error_code, coded.error_message) == ("bad_input", "mode 'code' asks for a custom code")
    assert wrong.error_code == "plugin_error" and "not a dict" in wrong.error_message
    assert after.ok
    log = host.log()
    assert "Traceback (most recent call last)" in log and "faulty.py" in log and "_worker.py" not in log


def test_a_crash_costs_one_task_and_the_host_serves_on(host):
    with umi.Client(host.rpc) as client:
        aborted = client.run("faulty", {"mode": "abort"})
        segfault = client.run("faulty", {"mode": "segfault"})
        after = client.run("faulty", {"mode": "fine"})
    assert aborted.status == "crashed" and "signal 6" in aborted.error_message
    assert segfault.status == "crashed" and "signal 11" in segfault.error_message
    assert after.ok


def test_a_task_past_its_timeout_is_stopped_even_when_it_ignores_cancellation(host):
    with umi.Client(host.rpc) as client:
        hung = client.run("faulty", {"mode": "hang"}, timeout_ms=300)
        after = client.run("faulty", {"mode": "fine"})
    assert hung.status == "timeout"
    assert after.ok


def test_cancel_reaches_a_running_python_task(host):
    with umi.Client(host.rpc, events=host.events) as client, client.events() as stream:
        await_subscription(client, stream)
        future = client.submit("slow", {"ms": 60000}, id="slow-1")
        while not ((event := stream.get()).topic == "task.started" and event.id == "slow-1"):
            pass
        assert client.cancel("slow-1")["state"] == "running"
        result = future.result(30)
    assert (result.status, result.error_code) == ("cancelled", "cancelled")


def test_progress_reaches_the_events_socket(host):
    with umi.Client(host.rpc, events=host.events) as client, client.events() as stream:
        await_subscription(client, stream)
        client.run("slow", {"ms": 800, "steps": 4}, id="slow-2").raise_for_status()  # 200 ms apart: none coalesced
        seen = []
        while not (seen and seen[-1].topic == "task.finished" and seen[-1].id == "slow-2"):
            seen.append(stream.get())
    progress = [(e.progress, e.message) for e in seen if e.topic == "task.progress" and e.id == "slow-2"]
    assert progress == [(0.25, "step 1 of 4"), (0.5, "step 2 of 4"), (0.75, "step 3 of 4"), (1.0, "step 4 of 4")]


def test_tasks_of_one_python_plugin_run_side_by_side_in_separate_processes(host):
    with umi.Client(host.rpc) as client:
        futures = [client.submit("slow", {"ms": 1000, "steps": 1}) for _ in range(2)]
        first, second = (f.result().raise_for_status().output for f in futures)
    assert first["pid"] != second["pid"]
    # Each ran while the other was running: their intervals overlap.
    assert first["started"] < second["ended"] and second["started"] < first["ended"]


def test_memory_past_the_grant_ends_the_task_out_of_memory(host):
    with umi.Client(host.rpc) as client:
        result = client.run("faulty", {"mode": "memory"})
        after = client.run("faulty", {"mode": "fine"})
    assert (result.status, result.error_code) == ("error", "out_of_memory")
    assert after.ok


def test_broken_plugin_files_are_refused_with_the_reason_and_the_rest_serve(start_host):
    broken = str(Path(__file__).parent / "broken_plugins")
    listing = subprocess.run([HOST_BINARY, "plugins", "--plugins", broken], capture_output=True, text=True,
                             env={"UMI_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert listing.returncode == 1
    out = listing.stdout
    assert "syntax.py: cannot import: SyntaxError: expected ':' (syntax.py, line 2)" in out
    assert "missing_import.py: cannot import: ModuleNotFoundError: No module named 'module_that_does_not_exist'" in out
    assert "misspelt.py: REQUIREMENT has unknown key(s) threads (did you mean 'cpu_threads'?)" in out
    assert "no_execute.py: it defines no execute(ctx, input) function" in out
    host = start_host(plugin_dirs=[broken])
    with umi.Client(host.rpc) as client:
        assert client.run("fine").output == {"fine": True}
        refused = client.run("syntax")
        setup_failed = client.run("setup_fails")
    assert (refused.status, refused.error_code) == ("rejected", "unknown_plugin")
    assert "SyntaxError" in refused.error_message
    assert setup_failed.status == "error"
    assert "setup failed: RuntimeError: no model file" in setup_failed.error_message


def test_a_plugin_named_like_a_module_is_not_that_module_for_the_others(start_host, tmp_path):
    # Before, the plugin directory led sys.path: csv.py (a plugin) was `csv` for reader.py,
    # and every plugin of the directory a module of the others.
    (tmp_path / "csv.py").write_text("def execute(ctx, input):\n    return {}\n")
    (tmp_path / "other.py").write_text("def execute(ctx, input):\n    return {}\n")
    (tmp_path / "_shared.py").write_text("VALUE = 42\n")
    (tmp_path / "reader.py").write_text(
        "import csv\nimport importlib\n\nimport _shared\n\n\n"
        "def execute(ctx, input):\n"
        "    try:\n        importlib.import_module('other')\n        other = 'importable'\n"
        "    except ImportError:\n        other = 'not importable'\n"
        "    return {'csv': csv.__file__, 'has_reader': hasattr(csv, 'reader'), 'helper': _shared.VALUE,"
        " 'other': other}\n")
    host = start_host(plugin_dirs=[str(tmp_path)])
    with umi.Client(host.rpc) as client:
        output = client.run("reader").raise_for_status().output
    assert output["has_reader"] and not output["csv"].startswith(str(tmp_path)), output
    assert output["helper"] == 42
    assert output["other"] == "not importable"


def test_a_symlinked_plugin_says_where_it_points(tmp_path):
    # It loads what it points to, wherever that is; before, nothing said so.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "real.py").write_text("def execute(ctx, input):\n    return {}\n")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "linked.py").symlink_to(elsewhere / "real.py")
    env = {"UMI_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    listing = subprocess.run([HOST_BINARY, "plugins", "--json", "--plugins", str(plugins)], capture_output=True,
                             text=True, env=env)
    import json
    linked = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}["linked"]
    assert linked["path"] == str(plugins / "linked.py")
    assert linked["resolved_path"] == str((elsewhere / "real.py").resolve())
    assert "is a symlink to " + str((elsewhere / "real.py").resolve()) + ", outside its directory" in listing.stderr


def test_a_changed_python_plugin_runs_its_loaded_code_until_a_restart(start_host, tmp_path):
    # A reload says restart_needed for a changed file, and means it: workers started after the
    # change (here the replacement of one that died) run the code that was loaded. Before, they
    # ran the new file under the old descriptor.
    plugin = tmp_path / "versioned.py"
    code = 'import os\nREQUIREMENT = {{"memory_mb": {mb}}}\n\ndef execute(ctx, input):\n    return {{"v": {v}, "pid": os.getpid()}}\n'
    plugin.write_text(code.format(mb=64, v=1))
    host = start_host(plugin_dirs=[str(tmp_path)])
    with umi.Client(host.rpc) as client:
        first = client.run("versioned").raise_for_status().output
        plugin.write_text(code.format(mb=128, v=2))
        reply = client.reload()
        assert "plugins.versioned.library" in reply["restart_needed"], reply
        os.kill(first["pid"], signal.SIGKILL)
        after = client.run("versioned").raise_for_status()
    assert after.output["pid"] != first["pid"]
    assert after.output["v"] == 1
    assert after.allocation["memory_mb"] == 64


def _marked(mark: str) -> list[int]:
    """Live processes whose command line or environment holds `mark`. Pids alone cannot say: an
    isolated plugin's processes run in their own pid namespace, so the numbers it sees are not ours."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().split(") ")[1][0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline, open(f"/proc/{entry}/environ", "rb") as environ:
                if mark.encode() in cmdline.read() + environ.read():
                    found.append(int(entry))
        except OSError:  # it ended while we looked
            continue
    return found


def _all_end(mark: str) -> bool:
    """Whether every process marked `mark` ends within 10 s; polled: no event says so."""
    for _ in range(200):
        if not _marked(mark):
            return True
        time.sleep(0.05)
    return False


_FORKER = """import os
import subprocess
import time


def execute(ctx, input):
    if input.get("spawn"):  # a program, not a fork: no Python runs in the child
        child = subprocess.Popen(["sleep", "30"], env=dict(os.environ, UMI_TEST_MARK=__file__)).pid
        with open(input["pidfile"], "w") as out:
            out.write(str(child))
        os._exit(3)
    if input.get("fork"):
        child = os.fork()
        if child == 0:
            time.sleep(input.get("child_s", 0.3))
            return {"from": "forked child of " + ctx.task_id}
        with open(input["pidfile"], "w") as out:
            out.write(str(child))
        if input.get("then_exit"):
            os._exit(3)
        return {"from": "parent"}
    time.sleep(input.get("sleep", 0))
    return {"from": "task " + ctx.task_id}
"""


def _forker_host(start_host, tmp_path):
    """A host running the forker, which the sandbox lets start processes and write its pid files."""
    (tmp_path / "forker.py").write_text(_FORKER)
    config = CONFIG + f"plugins:\n  forker: {{sandbox: {{exec: true, write: [{tmp_path}]}}}}\n"
    return start_host(config=config, plugin_dirs=[str(tmp_path)])


def test_a_forking_plugin_answers_each_task_with_its_own_result(start_host, tmp_path):
    # Before: the forked child returned from execute 0.3 s later and its result was taken as the
    # next task's on the same worker.
    host = _forker_host(start_host, tmp_path)
    with umi.Client(host.rpc) as client:
        first = client.run("forker", {"fork": True, "pidfile": str(tmp_path / "child")}, id="a").raise_for_status()
        second = client.run("forker", {"sleep": 1.0}, id="b").raise_for_status()
    assert first.output == {"from": "parent"}
    assert second.output == {"from": "task b"}


def test_a_worker_that_exits_beside_its_forked_child_ends_its_task_at_once(start_host, tmp_path):
    # Before: the child held the worker's socket, so the task waited for the child (30 s here;
    # for ever without timeout_ms), and the child outlived the host.
    host = _forker_host(start_host, tmp_path)
    pidfile = tmp_path / "child"
    with umi.Client(host.rpc) as client:
        future = client.submit("forker", {"fork": True, "then_exit": True, "child_s": 30, "pidfile": str(pidfile)})
        result = future.result(timeout=10)
    assert (result.status, result.error_code) == ("crashed", "crashed"), result
    assert pidfile.read_text()  # it forked
    assert _all_end(str(tmp_path / "forker.py")), "the forked child outlived its worker"


def test_a_program_a_dead_worker_started_goes_with_it(start_host, tmp_path):
    # Before: `sleep 30` outlived the worker that started it (and the host).
    host = _forker_host(start_host, tmp_path)
    pidfile = tmp_path / "child"
    with umi.Client(host.rpc) as client:
        result = client.run("forker", {"spawn": True, "pidfile": str(pidfile)})
    assert result.status == "crashed", result
    assert pidfile.read_text()  # it started the program
    assert _all_end(str(tmp_path / "forker.py")), "the program outlived its worker"


def test_plugins_json_lists_python_plugins_with_their_declaration():
    import json
    listing = subprocess.run([HOST_BINARY, "plugins", "--json", "--plugins", PY_PLUGINS], capture_output=True,
                             text=True, env={"UMI_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    echo = plugins["echo"]
    assert (echo["language"], echo["version"], echo["kind"]) == ("python", "1.2.3", "cpu")
    assert echo["description"] == "Echoes its input, with what the worker saw of its grant and settings."
    assert echo["declared"]["cpu_threads"] == 2 and echo["declared"]["memory_mb"] == 64


def test_an_interpreter_without_msgpack_is_named_with_what_it_lacks(tmp_path):
    # An interpreter without the system's site-packages (a venv, pyenv, conda): the worker needs
    # msgpack only. Before, the umi package imported its ZeroMQ client first and the host blamed
    # the package's location for the missing zmq.
    python = tmp_path / "python3"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    python.chmod(0o755)
    listing = subprocess.run([HOST_BINARY, "plugins", "--plugins", PY_PLUGINS], capture_output=True, text=True,
                             env={"UMI_PYTHON": str(python), "PATH": "/usr/bin:/bin"})
    assert listing.returncode == 1
    assert (f"the Python interpreter {python} cannot run plugins: ModuleNotFoundError: No module named 'msgpack'; "
            "install it for that interpreter, or set UMI_PYTHON") in listing.stdout, listing.stdout


def test_a_missing_interpreter_is_named(tmp_path):
    listing = subprocess.run([HOST_BINARY, "plugins", "--plugins", PY_PLUGINS], capture_output=True, text=True,
                             env={"UMI_PYTHON": str(tmp_path / "no-python"), "PATH": "/usr/bin:/bin"})
    assert listing.returncode == 1
    assert f"cannot start the Python interpreter '{tmp_path / 'no-python'}' (set UMI_PYTHON)" in listing.stdout
