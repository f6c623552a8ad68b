#!/usr/bin/env python3
"""A umi producer in Python (Debian: python3-zmq, python3-msgpack).

Sends tasks to a umi-host over its rpc socket (DEALER), prints one line per
result, and exits 1 if any task did not end "ok".

    producer.py --rpc tcp://127.0.0.1:5557 --count 10 --plugin sleep --ms 50
    producer.py --plugin checksum --input '{"path": "/srv/media/a.mp4"}'
    umi-host --rpc 'tcp://127.0.0.1:*' | producer.py --ready - --plugin noop

--ready reads the host's ready line ({"ready":true,"rpc":...}, its first
line on stdout) from a file or "-" (stdin) and takes the rpc endpoint from it.
"""
import argparse
import json
import sys

import msgpack
import zmq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc", default="tcp://127.0.0.1:5557", help="umi-host rpc endpoint")
    parser.add_argument("--ready", metavar="FILE", help="take --rpc from the host's ready line in FILE (- for stdin)")
    parser.add_argument("--plugin", default="sleep")
    parser.add_argument("--input", metavar="JSON", help="the task's input map, as JSON (default: {\"ms\": --ms})")
    parser.add_argument("--ms", type=int, default=50, help="input.ms for sleep-like plugins")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=60)
    args = parser.parse_args()

    task_input = {"ms": args.ms}
    if args.input is not None:
        try:
            task_input = json.loads(args.input)
        except json.JSONDecodeError as error:
            parser.error(f"--input is not JSON: {error}")
        if not isinstance(task_input, dict):
            parser.error("--input must be a JSON object (the task's input map)")
    if args.ready is not None:
        stream = sys.stdin if args.ready == "-" else open(args.ready, encoding="utf-8")
        try:
            ready = json.loads(stream.readline() or "null")
        except json.JSONDecodeError:
            ready = None
        if not isinstance(ready, dict) or not ready.get("ready") or "rpc" not in ready:
            parser.error(f"--ready {args.ready}: no ready line with an rpc endpoint")
        args.rpc = ready["rpc"]

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(args.rpc)

    pending = set()
    for n in range(args.count):
        task_id = f"py-{n}"
        socket.send(msgpack.packb({"v": 1, "id": task_id, "plugin": args.plugin, "input": task_input}))
        pending.add(task_id)

    failed = 0
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    while pending:
        if not poller.poll(args.timeout_s * 1000):
            print(f"no result within {args.timeout_s} s; {len(pending)} unanswered", file=sys.stderr)
            return 1
        result = msgpack.unpackb(socket.recv())
        pending.discard(result.get("id"))
        status = result["status"]
        detail = result.get("error", {}).get("message", "") if status != "ok" else f"run_ms={result['run_ms']:.1f}"
        print(f"{result.get('id')} {result['plugin']} {status} host={result['host']} {detail}")
        failed += status != "ok"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
