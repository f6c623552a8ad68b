"""Python benchmarks (docs/performance.md, issue #18), one run, ratios.

  P1  no-op Python plugin, 2 worker processes, vs the C++ noop plugin with
      isolation: process and 2 worker processes, through one host
  P2  client throughput on the C++ noop (in process): umi.Client.map and
      umi.aio.Client.map next to a bare pyzmq DEALER loop sending the same
      messages with the same window
  P3  a Python worker's RSS over 100,000 tasks

Usage: python3 bench/python/python_bench.py [--quick] [--host build/release/bin/umi-host]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

SOURCE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "python"))
import umi  # noqa: E402
import umi.aio  # noqa: E402

WINDOW = 256
CONFIG = """hardware:
  cpu: {cores: 2, threads: 2, max_concurrent_tasks: 2}
  memory: {total_gb: 8}
plugins:
  pynoop: {processes: 2}
  noop: {isolation: process, processes: 2}
"""
INPROC_CONFIG = """hardware:
  cpu: {cores: 2, threads: 2, max_concurrent_tasks: 8}
  memory: {total_gb: 8}
"""


class Host:
    def __init__(self, binary: str, config: str) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="umi-bench-")
        path = Path(self.dir.name) / "config.yaml"
        path.write_text(config)
        args = [binary, "--config", str(path), "--http", "off", "--log-level", "warn",
                "--plugins", str(Path(binary).parent.parent / "lib/umi/plugins"), "--plugins", str(Path(__file__).parent)]
        for name in ("tasks", "results", "rpc", "events"):
            args += [f"--{name}", "tcp://127.0.0.1:*"]
        env = dict(os.environ, UMI_PYTHON=sys.executable)
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.rpc = json.loads(self.process.stdout.readline())["rpc"]

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.dir.cleanup()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sync_rate(rpc: str, plugin: str, count: int) -> float:
    with umi.Client(rpc) as client:
        list(client.map(plugin, ({} for _ in range(200)), max_in_flight=WINDOW))  # warm-up: workers, sockets
        start = time.perf_counter()
        failed = sum(not r.ok for r in client.map(plugin, ({} for _ in range(count)), max_in_flight=WINDOW))
        elapsed = time.perf_counter() - start
    assert failed == 0, f"{failed} {plugin} tasks failed"
    return count / elapsed


def aio_rate(rpc: str, plugin: str, count: int) -> float:
    async def main() -> float:
        async with umi.aio.Client(rpc) as client:
            async for _ in client.map(plugin, ({} for _ in range(200)), max_in_flight=WINDOW):
                pass
            start = time.perf_counter()
            failed = 0
            async for result in client.map(plugin, ({} for _ in range(count)), max_in_flight=WINDOW):
                failed += not result.ok
            elapsed = time.perf_counter() - start
        assert failed == 0
        return count / elapsed

    return asyncio.run(main())


def bare_rate(rpc: str, plugin: str, count: int) -> float:
    """The floor of any Python client: pack, send, receive, unpack; no retries, no futures."""
    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(rpc)
    prefix = os.urandom(4).hex()

    def go(total: int, tag: str) -> None:
        sent = received = 0
        while received < total:
            while sent < total and sent - received < WINDOW:
                socket.send(msgpack.packb({"v": 1, "id": f"{prefix}-{tag}-{sent}", "plugin": plugin, "input": {},
                                           "priority": 0, "attempt": 1}))
                sent += 1
            result = msgpack.unpackb(socket.recv(), raw=False)
            assert result["status"] == "ok", result
            received += 1

    go(200, "warm")
    start = time.perf_counter()
    go(count, "run")
    elapsed = time.perf_counter() - start
    socket.close()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=str(SOURCE / "build/release/bin/umi-host"))
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    tasks = 5000 if args.quick else 40000
    rss_tasks = 10000 if args.quick else 100000

    print("| case | tasks | tasks/s | us/task | ratio |")
    print("|---|---|---|---|---|")
    host = Host(args.host, CONFIG)
    try:
        python = aio_rate(host.rpc, "pynoop", tasks)
        cpp = aio_rate(host.rpc, "noop", tasks)
        print(f"| P1 Python no-op plugin, 2 worker processes | {tasks} | {python:,.0f} | {1e6 / python:.0f} | "
              f"{python / cpp:.2f} of C++ |")
        print(f"| P1 C++ noop, isolation: process, 2 workers | {tasks} | {cpp:,.0f} | {1e6 / cpp:.0f} | 1.00 |")

        workers = [pid for pid in host.workers() if "umi._worker" in Path(f"/proc/{pid}/cmdline").read_text()]
        before = {pid: rss_mib(pid) for pid in workers}
        done = 0
        with umi.Client(host.rpc) as client:
            for result in client.map("pynoop", ({"i": i} for i in range(rss_tasks)), max_in_flight=WINDOW):
                done += result.ok
        after = {pid: rss_mib(pid) for pid in workers if Path(f"/proc/{pid}").exists()}
        growth = max(after[pid] - before[pid] for pid in after) if after else float("nan")
        print(f"| P3 Python worker RSS over {rss_tasks:,} tasks ({done:,} ok, {len(after)} workers alive) | "
              f"{rss_tasks} | - | - | RSS {', '.join(f'{before[p]:.1f}->{after[p]:.1f}' for p in after)} MiB "
              f"(max growth {growth:.2f} MiB) |")
    finally:
        host.stop()

    host = Host(args.host, INPROC_CONFIG)
    try:
        bare = bare_rate(host.rpc, "noop", tasks)
        sync = sync_rate(host.rpc, "noop", tasks)
        aio = aio_rate(host.rpc, "noop", tasks)
        print(f"| P2 bare pyzmq DEALER loop, window {WINDOW} | {tasks} | {bare:,.0f} | {1e6 / bare:.1f} | 1.00 |")
        print(f"| P2 umi.Client.map | {tasks} | {sync:,.0f} | {1e6 / sync:.1f} | {sync / bare:.2f} of bare |")
        print(f"| P2 umi.aio.Client.map | {tasks} | {aio:,.0f} | {1e6 / aio:.1f} | {aio / bare:.2f} of bare |")
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
