#!/usr/bin/env python3
"""A umi producer for a farm on Redis Streams (Debian: python3-redis, python3-msgpack).

Adds tasks to umi:tasks:<plugin> with reply_to a stream of its own, reads the
results from it (the first per id: a task whose host died may run twice),
prints one line per result, deletes its result stream, and exits 1 if any
task did not end "ok". See docs/scale-out.md.

    redis_producer.py --redis redis://cache:6379/0 --count 10 --plugin sleep --ms 50
    redis_producer.py --redis unix:///run/redis/redis.sock
"""
import argparse
import sys
import uuid

import msgpack
import redis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="redis:// or unix:// URL")
    parser.add_argument("--plugin", default="sleep")
    parser.add_argument("--ms", type=int, default=50, help="input.ms for sleep-like plugins")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=60, help="give up when no result comes for this long")
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis)
    run = uuid.uuid4().hex[:16]
    reply_to = f"umi:results:{run}"
    pending = set()
    pipe = client.pipeline(transaction=False)
    for i in range(args.count):
        task_id = f"{run}-{i}"
        task = {"v": 1, "id": task_id, "plugin": args.plugin, "input": {"ms": args.ms}, "reply_to": reply_to}
        pipe.xadd(f"umi:tasks:{args.plugin}", {"m": msgpack.packb(task)})
        pending.add(task_id)
    pipe.execute()

    failed = 0
    last_id = "0"
    try:
        while pending:
            reply = client.xread({reply_to: last_id}, count=100, block=int(args.timeout_s * 1000))
            if not reply:
                print(f"no result for {args.timeout_s} s; {len(pending)} task(s) unanswered", file=sys.stderr)
                return 1
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                result = msgpack.unpackb(fields[b"m"], raw=False)
                if result.get("id") not in pending:
                    continue  # a second result for an id: keep the first
                pending.discard(result["id"])
                status = result.get("status")
                failed += status != "ok"
                error = result.get("error") or {}
                detail = f" {error.get('code')}: {error.get('message')}" if error else ""
                print(f"{result['id'].split('-')[-1]} {result.get('plugin')} {status} host={result.get('host')}{detail}")
    finally:
        client.delete(reply_to)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
