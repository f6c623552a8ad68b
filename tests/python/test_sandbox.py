"""The sandbox of Python plugins' workers (host/src/runtime/sandbox.h), against a plugin that tries
the escapes a hostile file's code would: each is denied, the host and the next task unharmed. The
same plugin with `sandbox: false` escapes: what the sandbox stops would happen without it."""

from __future__ import annotations

import os
import socket
import urllib.request

import umi
from conftest import CONFIG

_EVIL = '''"""Tries to escape its sandbox, as asked."""
import os
import signal
import socket

from umi.plugin import PluginError

SETTINGS = {"media_roots": ("list of directories", "what the sandbox lets it read")}


def execute(ctx, input):
    attempt = input["attempt"]
    try:
        if attempt == "read":
            with open(input["path"]) as source:
                return {"data": source.read()}
        if attempt == "write":
            with open(input["path"], "w") as out:
                out.write("pwned")
            return {}
        if attempt == "connect":
            socket.create_connection(("127.0.0.1", input["port"]), timeout=5).close()
            return {}
        if attempt == "fork":
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
            return {}
        if attempt == "exec":
            os.execv("/bin/sh", ["sh", "-c", "exit 0"])
        if attempt == "signal":
            os.kill(input["pid"], signal.SIGSTOP)
            return {}
    except PermissionError as error:
        raise PluginError("denied", str(error))
    raise PluginError("bad_input", attempt)
'''


def _evil_host(start_host, tmp_path, sandbox: str = ""):
    plugins, media, host_files = tmp_path / "plugins", tmp_path / "media", tmp_path / "host"
    for directory in (plugins, media, host_files):
        directory.mkdir()
    (plugins / "evil.py").write_text(_EVIL)
    (media / "clip.txt").write_text("media bytes")
    (host_files / "server.key_secret").write_text("the host's CURVE secret key")
    config = CONFIG + f"plugins:\n  evil: {{settings: {{media_roots: [{media}]}}{sandbox}}}\n"
    return start_host(config=config, plugin_dirs=[str(plugins)], http=True)


def test_a_python_plugin_reads_its_media_roots_and_nothing_else(start_host, tmp_path):
    host = _evil_host(start_host, tmp_path)
    with umi.Client(host.rpc) as client:
        media = client.run("evil", {"attempt": "read", "path": str(tmp_path / "media" / "clip.txt")})
        assert (media.status, media.output) == ("ok", {"data": "media bytes"}), media
        for path in (tmp_path / "host" / "server.key_secret", "/etc/shadow", f"/proc/{host.process.pid}/mem"):
            denied = client.run("evil", {"attempt": "read", "path": str(path)})
            assert (denied.status, denied.error_code) == ("error", "denied"), denied
        written = client.run("evil", {"attempt": "write", "path": str(tmp_path / "evil.txt")})
        assert (written.status, written.error_code) == ("error", "denied"), written
    assert not (tmp_path / "evil.txt").exists()


def test_a_python_plugin_gets_no_socket_process_or_signal_and_each_is_counted(start_host, tmp_path):
    host = _evil_host(start_host, tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as listener, umi.Client(host.rpc) as client:
        attempts = [{"attempt": "connect", "port": listener.getsockname()[1]}, {"attempt": "fork"},
                    {"attempt": "exec"}, {"attempt": "signal", "pid": host.process.pid}]
        for attempt in attempts:
            stopped = client.run("evil", attempt)
            assert stopped.status == "crashed", (attempt, stopped)
            assert "the sandbox stopped the plugin's worker process" in stopped.error_message, stopped
        after = client.run("evil", {"attempt": "read", "path": str(tmp_path / "media" / "clip.txt")})
        assert after.status == "ok", after  # the host was not stopped; a fresh worker took over
    metrics = urllib.request.urlopen(host.http + "/metrics").read().decode()
    assert 'umi_sandbox_kills_total{plugin="evil"} 4' in metrics


def test_without_the_sandbox_a_python_plugin_escapes(start_host, tmp_path):
    host = _evil_host(start_host, tmp_path, sandbox=", sandbox: false")
    with socket.create_server(("127.0.0.1", 0)) as listener, umi.Client(host.rpc) as client:
        secret = client.run("evil", {"attempt": "read", "path": str(tmp_path / "host" / "server.key_secret")})
        assert (secret.status, secret.output) == ("ok", {"data": "the host's CURVE secret key"}), secret
        assert client.run("evil", {"attempt": "connect", "port": listener.getsockname()[1]}).status == "ok"
        assert client.run("evil", {"attempt": "fork"}).status == "ok"
    assert os.path.exists(tmp_path / "host" / "server.key_secret")


_HELPER_RUNNER = '''"""Runs a helper program: it declares so."""
import subprocess

SANDBOX = {"exec": True}


def execute(ctx, input):
    return {"exit_code": subprocess.run(["/bin/true"]).returncode}
'''


def test_what_a_python_plugin_declares_in_sandbox_is_granted(start_host, tmp_path):
    (tmp_path / "runner.py").write_text(_HELPER_RUNNER)
    (tmp_path / "bad.py").write_text('SANDBOX = {"exec": True, "shell": True}\n\ndef execute(ctx, input):\n    return {}\n')
    host = start_host(plugin_dirs=[str(tmp_path)])
    with umi.Client(host.rpc) as client:
        ran = client.run("runner", {})
        assert (ran.status, ran.output) == ("ok", {"exit_code": 0}), ran
        refused = client.run("bad", {})
        assert refused.error_code == "unknown_plugin", refused
    assert "SANDBOX must be a dict of exec (bool), network (bool), read (a list of paths), required (bool)" in host.log()
