"""Fixtures for the Python tests: the real umi-host binary, real sockets,
real plugin files. ctest sets UMI_HOST_BINARY and UMI_TEST_PLUGIN_DIR (the
C++ plugins of the build); run by hand, the dev build is used."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "python"))  # the package from the source tree, as docs/python.md shows
HOST_BINARY = os.environ.get("UMI_HOST_BINARY", str(SOURCE / "build/dev/bin/umi-host"))
SUBMIT_BINARY = os.environ.get("UMI_SUBMIT_BINARY", str(SOURCE / "build/dev/bin/umi-submit"))
CPP_PLUGINS = os.environ.get("UMI_TEST_PLUGIN_DIR", str(SOURCE / "build/dev/lib/umi/plugins"))
PY_PLUGINS = str(Path(__file__).parent / "plugins")

CONFIG = """hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: 4}
  memory: {total_gb: 8}
shutdown: {drain_timeout_s: 1}
"""


class Host:
    """A running umi-host; endpoints from its ready line, its log in `log()`."""

    def __init__(self, config: str = CONFIG, plugin_dirs: list[str] | None = None,
                 endpoints: dict[str, str] | None = None, extra_args: list[str] | None = None, http: bool = False):
        self.dir = tempfile.TemporaryDirectory(prefix="umi-py-")
        self.config_path = Path(self.dir.name) / "config.yaml"
        self.config_path.write_text(config)
        self.log_path = Path(self.dir.name) / "host.log"
        env = dict(os.environ, UMI_PYTHON=sys.executable)
        args = [HOST_BINARY, "--config", str(self.config_path), "--http", "127.0.0.1:0" if http else "off",
                "--name", "pytest"]
        for name in ("tasks", "results", "rpc", "events"):
            args += [f"--{name}", (endpoints or {}).get(name, "tcp://127.0.0.1:*")]
        for directory in plugin_dirs or [PY_PLUGINS, CPP_PLUGINS]:
            args += ["--plugins", directory]
        args += extra_args or []
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.log_path, "w"),
                                        env=env, text=True)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("umi-host exited before it was ready:\n" + self.log())
        ready = json.loads(line)
        self.rpc, self.tasks, self.results, self.events = ready["rpc"], ready["tasks"], ready["results"], ready["events"]
        self.http = ready.get("http", "")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.dir.cleanup()
        return self.process.returncode


@pytest.fixture
def start_host():
    hosts: list[Host] = []

    def start(**kwargs) -> Host:
        host = Host(**kwargs)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()


@pytest.fixture
def host(start_host) -> Host:
    return start_host()


def await_subscription(client, stream) -> None:
    """Returns once `stream` receives events: PUB/SUB joins asynchronously, so
    probe tasks go until one's task.finished arrives."""
    while True:
        probe = client.run("echo", {"probe": True}).id
        while (event := stream.get(timeout=0.5)) is not None:
            if event.topic == "task.finished" and event.id == probe:
                return


async def await_subscription_async(client, stream) -> None:
    while True:
        probe = (await client.run("echo", {"probe": True})).id
        while (event := await stream.get(timeout=0.5)) is not None:
            if event.topic == "task.finished" and event.id == probe:
                return


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of the test's own, on a unix socket; its URL."""
    socket = tmp_path / "redis.sock"
    server = subprocess.Popen(["/usr/bin/redis-server", "--port", "0", "--unixsocket", str(socket),
                               "--unixsocketperm", "700", "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.PIPE, text=True)
    for line in server.stdout:  # it says when it accepts connections
        if "ready to accept connections" in line.lower() or "accept connections" in line:
            break
    yield f"unix://{socket}"
    server.kill()
    server.wait()
