"""python3 -m umi: umi-submit for people without the C++ tools.

    python3 -m umi submit tasks.jsonl --rpc tcp://127.0.0.1:5557 > results.jsonl
    echo '{"plugin": "sleep", "input": {"ms": 100}}' | python3 -m umi submit --rpc tcp://127.0.0.1:5557
    python3 -m umi submit tasks.jsonl --redis redis://cache:6379/0   (a farm on Redis Streams)
    python3 -m umi stats --rpc tcp://127.0.0.1:5557

Each input line is a task object {"id", "plugin", "input", "priority",
"timeout_ms", "resources"} (a missing id gets one unique to this run). Input
is streamed: tasks go out while later lines are read, at most --max-in-flight
at a time. One JSON result per line out. Exit status: 0 when every task ended
ok, 1 when any did not (or a control request failed), 2 on bad input or usage.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import queue
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, TextIO

from umi.client import Client
from umi.errors import UmiError
from umi.redis_client import RedisClient
from umi.result import Result

_TASK_KEYS = {"id", "plugin", "input", "priority", "timeout_ms", "resources"}
# Arrays and objects nest at most this deep in a line, as in umi-submit: as
# deep as the host takes a message (json.loads recursed out at 100,000).
_MAX_JSON_DEPTH = 64


class BadLine(Exception):
    pass


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _too_deep(line: str) -> bool:
    """Whether arrays and objects nest deeper than _MAX_JSON_DEPTH (outside strings)."""
    depth = 0
    in_string = escaped = False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > _MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(value: Any) -> Any:
    """NaN and infinities as null, as umi-submit writes them: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _tasks(stream: TextIO, name: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        if _too_deep(line):
            raise BadLine(f"{name}:{number}: arrays and objects nested deeper than {_MAX_JSON_DEPTH} levels")
        try:
            task = json.loads(line, parse_constant=_not_json)
        except json.JSONDecodeError as error:
            raise BadLine(f"{name}:{number}: not JSON: {error.msg}") from None
        except ValueError as error:
            raise BadLine(f"{name}:{number}: not JSON: {error}") from None
        if not isinstance(task, dict):
            raise BadLine(f"{name}:{number}: a task is a JSON object")
        unknown = set(task) - _TASK_KEYS
        if unknown:
            raise BadLine(f"{name}:{number}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_TASK_KEYS))}")
        if not isinstance(task.get("plugin"), str) or not task["plugin"]:
            raise BadLine(f"{name}:{number}: \"plugin\" (a string) is required")
        yield task


def _client(args: argparse.Namespace) -> Client | RedisClient:
    if getattr(args, "redis", None):
        # Tasks wait in Redis for a host: nothing is resent, the first result per id counts.
        return RedisClient(args.redis, password_file=args.redis_password_file)
    return Client(args.rpc, tasks=args.tasks, results=args.results, retry_after=args.retry_after,
                  max_attempts=args.max_attempts, curve_server_key=args.curve_server_key,
                  curve_public_key=args.curve_public_key, curve_secret_key=args.curve_secret_key)


def _submit(args: argparse.Namespace) -> int:
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    name = "stdin" if args.file == "-" else args.file
    failed = 0
    bad: str | None = None
    with _client(args) as client:
        done: queue.SimpleQueue[Future[Result]] = queue.SimpleQueue()
        in_flight = 0
        source = _tasks(stream, name)

        def write(future: Future[Result]) -> None:
            nonlocal failed
            result = future.result()
            failed += not result.ok
            message = result.raw or {"id": result.id, "plugin": result.plugin, "status": result.status,
                                      "error": {"code": result.error_code, "message": result.error_message}}
            sys.stdout.write(json.dumps(_finite(message), default=_json_default, ensure_ascii=False,
                                        allow_nan=False) + "\n")

        while True:
            while bad is None and in_flight < args.max_in_flight:
                try:
                    task = next(source)
                except StopIteration:
                    break
                except BadLine as error:
                    bad = str(error)
                    break
                try:
                    future = client.submit(task["plugin"], task.get("input"), id=task.get("id"),
                                           priority=task.get("priority", 0), timeout_ms=task.get("timeout_ms", 0),
                                           resources=task.get("resources"))
                except UmiError as error:
                    bad = f"{name}: task {task.get('id', '')!r}: {error}"
                    break
                future.add_done_callback(done.put)
                in_flight += 1
            if in_flight == 0:
                break
            try:
                finished = done.get(timeout=args.wait)
            except queue.Empty:
                print(f"python3 -m umi: no result for {args.wait} s; {in_flight} task(s) unanswered", file=sys.stderr)
                return 1
            in_flight -= 1
            write(finished)
    sys.stdout.flush()
    if bad is not None:
        print(f"python3 -m umi: {bad} (the tasks before it were sent and answered above)", file=sys.stderr)
        return 2
    return 0 if failed == 0 else 1


def _control(args: argparse.Namespace) -> int:
    with _client(args) as client:
        assert isinstance(client, Client)  # control commands take no --redis
        reply: dict[str, Any]
        if args.command == "result":
            lookup = client.result(args.id)
            reply = {"state": lookup.state, **({"result": lookup.result.raw} if lookup.result else {})}
        else:
            method = getattr(client, args.command)
            reply = method(args.id) if args.command == "cancel" else method()
    print(json.dumps(_finite(reply), default=_json_default, ensure_ascii=False, indent=2, allow_nan=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m umi", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="send tasks from JSON lines, print results as JSON lines")
    submit.add_argument("file", nargs="?", default="-", help="a JSON-lines file of tasks (default: stdin)")
    submit.add_argument("--max-in-flight", type=int, default=256, help="tasks sent and not yet answered (default 256)")
    submit.add_argument("--wait", type=float, default=600.0,
                        help="give up when no result came for this many seconds (default 600)")
    submit.add_argument("--redis", help="a farm's Redis URL (redis://, rediss://, redis+sentinel://) instead of --rpc")
    submit.add_argument("--redis-password-file", help="a file holding the Redis password")
    for op in ("health", "stats", "drain", "reload", "cancel", "result"):
        command = commands.add_parser(op, help=f"the {op} control request; prints its reply")
        if op in ("cancel", "result"):
            command.add_argument("id", help="the task's id")
    for command in list(commands.choices.values()):
        command.add_argument("--rpc", action="append", help="a host's rpc endpoint (repeatable)")
        command.add_argument("--tasks", help="tasks endpoint ('@' binds) instead of --rpc")
        command.add_argument("--results", help="results endpoint ('@' binds) instead of --rpc")
        command.add_argument("--retry-after", type=float, default=30.0, help="seconds before a resend (default 30)")
        command.add_argument("--max-attempts", type=int, default=3, help="sends in a row with no answer before a task gives up (default 3)")
        command.add_argument("--curve-server-key", help="the host's CURVE public key (Z85)")
        command.add_argument("--curve-public-key", help="this client's CURVE public key (Z85)")
        command.add_argument("--curve-secret-key", help="this client's CURVE secret key (Z85)")
    args = parser.parse_args(argv)
    if not args.rpc and not args.tasks:
        args.rpc = ["tcp://127.0.0.1:5557"]
    try:
        return _submit(args) if args.command == "submit" else _control(args)
    except OSError as error:
        print(f"python3 -m umi: {error}", file=sys.stderr)
        return 2
    except UmiError as error:
        print(f"python3 -m umi: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
