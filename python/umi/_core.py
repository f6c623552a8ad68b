"""What the blocking and the asyncio client share: options, encoding,
socket wiring and the at-least-once bookkeeping, free of any I/O loop.

At-least-once (as umi/client.hpp): a task with no result by its deadline
(retry_after plus its timeout) is sent again, up to max_attempts sends in a
row that nobody answers; a host holding it (queued or running) answers the
copy ``rejected/duplicate_id``, which means "keep waiting" and starts the
count again, so a task waits as long as a host says it has it; one result
per id is handed out, later copies dropped; a task whose sends go unanswered
max_attempts times resolves ``error/no_result``.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import msgpack
import zmq

from umi.errors import UsageError
from umi.result import Event, Result

_REQUIREMENT_KEYS = frozenset({"cpu_cores", "cpu_threads", "gpu_count", "memory_mb", "exclusive_gpu"})
_ids = itertools.count(1)
_run = os.urandom(4).hex()


def new_id() -> str:
    """Unique per process and run: a host answers a re-sent id with its stored result."""
    return f"py-{_run}-{next(_ids)}"


@dataclass
class Options:
    rpc: list[str]
    tasks: str
    results: str
    events: str
    retry_after: float
    max_attempts: int
    curve_server_key: str
    curve_public_key: str
    curve_secret_key: str

    @classmethod
    def make(cls, rpc: str | list[str] | None, tasks: str | None, results: str | None, events: str | None,
             retry_after: float, max_attempts: int, curve_server_key: str | None, curve_public_key: str | None,
             curve_secret_key: str | None) -> Options:
        endpoints = [rpc] if isinstance(rpc, str) else list(rpc or [])
        if endpoints and (tasks or results):
            raise UsageError("give either rpc, or tasks and results, not both")
        if not endpoints and not (tasks and results):
            raise UsageError("not connected: give rpc='tcp://host:5557', or tasks= and results= endpoints")
        for endpoint in endpoints + [e for e in (tasks, results, events) if e]:
            check_endpoint(endpoint)
        if not retry_after > 0:
            raise UsageError(f"retry_after must be a positive number of seconds, not {retry_after!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise UsageError(f"max_attempts must be an int >= 1, not {max_attempts!r}")
        keys = (curve_server_key, curve_public_key, curve_secret_key)
        if any(keys) and not all(keys):
            raise UsageError("CURVE needs all three keys: curve_server_key, curve_public_key, curve_secret_key")
        for key in keys:
            if key and len(key) != 40:
                raise UsageError("CURVE keys are 40 Z85 characters (umi-host keygen)")
        return cls(endpoints, tasks or "", results or "", events or "", float(retry_after), max_attempts,
                   curve_server_key or "", curve_public_key or "", curve_secret_key or "")


def check_endpoint(endpoint: str) -> None:
    bare = endpoint.lstrip("@>")
    if not isinstance(endpoint, str) or "://" not in bare or bare.split("://", 1)[0] not in ("tcp", "ipc", "inproc"):
        raise UsageError(f"'{endpoint}' is not a ZeroMQ endpoint (tcp://host:port, ipc://path; '@' binds, '>' connects)")


def attach(socket: zmq.Socket, endpoint: str) -> None:
    try:
        if endpoint.startswith("@"):
            socket.bind(endpoint[1:])
        else:
            socket.connect(endpoint.lstrip(">"))
    except zmq.ZMQError as error:
        raise UsageError(f"cannot use endpoint '{endpoint}': {error}") from None


def secure(socket: zmq.Socket, options: Options) -> None:
    if options.curve_server_key:
        socket.curve_serverkey = options.curve_server_key.encode()
        socket.curve_publickey = options.curve_public_key.encode()
        socket.curve_secretkey = options.curve_secret_key.encode()


def make_sockets(context: zmq.Context, options: Options) -> tuple[zmq.Socket, zmq.Socket]:
    """(send, receive): one DEALER for rpc, or a PUSH and a PULL."""
    if options.rpc:
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        secure(dealer, options)
        for endpoint in options.rpc:
            attach(dealer, endpoint)
        return dealer, dealer
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    push.linger = 0
    pull.linger = 0
    secure(push, options)
    secure(pull, options)
    attach(push, options.tasks)
    attach(pull, options.results)
    return push, pull


# A task's retry policy (docs/protocol.md): runs in all, the first backoff, its cap, the codes that retry.
_RETRY_KEYS = {"attempts", "backoff_ms", "max_backoff_ms", "on"}


def make_request(plugin: str, input: dict[str, Any] | None, id: str | None, priority: int, timeout_ms: int,
                 resources: dict[str, Any] | None, retry: dict[str, Any] | None = None) -> dict[str, Any]:
    if not isinstance(plugin, str) or not plugin:
        raise UsageError(f"plugin must be a non-empty str, not {plugin!r}")
    if input is not None and not isinstance(input, dict):
        raise UsageError(f"input must be a dict, not {type(input).__name__}")
    if id is not None and (not isinstance(id, str) or not id):
        raise UsageError(f"id must be a non-empty str, not {id!r}")
    if not isinstance(priority, int) or not isinstance(timeout_ms, int) or timeout_ms < 0:
        raise UsageError("priority must be an int and timeout_ms an int >= 0")
    request: dict[str, Any] = {"v": 1, "id": id or new_id(), "plugin": plugin, "input": input or {},
                               "priority": priority}
    if timeout_ms:
        request["timeout_ms"] = timeout_ms
    if resources:
        unknown = set(resources) - _REQUIREMENT_KEYS
        if unknown:
            raise UsageError(f"unknown resources key(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_REQUIREMENT_KEYS))}")
        request["resources"] = dict(resources)
    if retry:
        unknown = set(retry) - _RETRY_KEYS
        if unknown:
            raise UsageError(f"unknown retry key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_RETRY_KEYS))}")
        request["retry"] = dict(retry)
    return request


_STEP_KEYS = {"plugin", "input", "after", "priority", "timeout_ms", "resources", "retry"}


def make_flow_request(steps: dict[str, dict[str, Any]], id: str | None) -> dict[str, Any]:
    """A flow (docs/flows.md): steps by name, each a task's fields plus `after`."""
    if not isinstance(steps, dict) or not steps:
        raise UsageError("a flow needs a non-empty dict of steps, {name: {plugin, input, after, ...}}")
    for name, step in steps.items():
        if not isinstance(step, dict) or not isinstance(step.get("plugin"), str) or not step["plugin"]:
            raise UsageError(f"flow step {name!r} must be a dict with a non-empty 'plugin'")
        unknown = set(step) - _STEP_KEYS
        if unknown:
            raise UsageError(f"flow step {name!r}: unknown key(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_STEP_KEYS))}")
    if id is not None and (not isinstance(id, str) or not id):
        raise UsageError(f"id must be a non-empty str, not {id!r}")
    return {"v": 1, "id": id or new_id(), "flow": steps}


def decode_event(frames: list[bytes]) -> Event | None:
    if len(frames) != 2:
        return None
    try:
        body = msgpack.unpackb(frames[1], raw=False)
    except Exception:
        return None
    if not isinstance(body, dict):
        return None
    topic = frames[0].decode(errors="replace")
    result = Result.from_message(body) if topic == "task.finished" else None
    progress = body.get("progress")
    return Event(topic, str(body.get("id", "")), str(body.get("plugin", "")),
                 float(progress) if progress is not None else None, str(body.get("message", "")), result)


class _Pending:
    __slots__ = ("request", "future", "attempts", "unanswered", "deadline")

    def __init__(self, request: dict[str, Any], future: Any) -> None:
        self.request = request
        self.future = future
        self.attempts = 0  # sends in all
        self.unanswered = 0  # sends since a host last said it holds the task
        self.deadline = 0.0


class Tracker:
    """The pending tasks and control requests of one client; not thread-safe
    (each client drives it from one thread)."""

    def __init__(self, options: Options, send: Callable[[bytes], bool]) -> None:
        self.options = options
        self._send = send  # False when the message could not be queued now
        self.pending: dict[str, _Pending] = {}
        self.controls: deque[tuple[str, Any]] = deque()  # (op, future), in order of sending
        self._deadlines: list[tuple[float, str]] = []  # a heap; stale entries skipped when popped

    def submit(self, request: dict[str, Any], future: Any) -> None:
        entry = self.pending.get(request["id"])
        if entry is not None:
            raise UsageError(f"a task with id '{request['id']}' is already pending on this client")
        entry = _Pending(request, future)
        self.pending[request["id"]] = entry
        self._transmit(entry, time.monotonic())

    def _transmit(self, entry: _Pending, now: float) -> None:
        entry.attempts += 1
        entry.unanswered += 1
        entry.request["attempt"] = entry.attempts
        queued = self._send(msgpack.packb(entry.request, use_bin_type=True))
        timeout_s = entry.request.get("timeout_ms", 0) / 1000.0
        # Never block: with no host connected this attempt is spent and the task goes again soon.
        entry.deadline = now + (self.options.retry_after + timeout_s if queued else min(self.options.retry_after, 0.1))
        heapq.heappush(self._deadlines, (entry.deadline, entry.request["id"]))

    def control(self, op: str, future: Any, task_id: str | None = None) -> None:
        message: dict[str, Any] = {"op": op}
        if task_id is not None:
            message["id"] = task_id
        self.controls.append((op, future))
        self._send(msgpack.packb(message, use_bin_type=True))

    def receive(self, data: bytes) -> list[tuple[Any, Any]]:
        """Futures to resolve, with their values, for one message."""
        try:
            message = msgpack.unpackb(data, raw=False)
        except Exception:
            return []  # not a protocol message
        if not isinstance(message, dict):
            return []
        if "ok" in message:  # results never carry "ok"; control replies always do
            if self.controls:
                return [(self.controls.popleft()[1], message)]
            return []
        entry = self.pending.get(message.get("id", ""))
        if entry is None:
            return []  # a copy after a retry, or not ours
        error = message.get("error") or {}
        if message.get("status") == "rejected" and error.get("code") == "duplicate_id":
            # A retry met the task still queued or running: its result will come.
            entry.deadline = time.monotonic() + self.options.retry_after
            entry.unanswered = 0
            heapq.heappush(self._deadlines, (entry.deadline, entry.request["id"]))
            return []
        del self.pending[entry.request["id"]]
        return [(entry.future, Result.from_message(message, entry.attempts))]

    def due(self) -> list[tuple[Any, Any]]:
        """Resends what is due; futures of tasks out of attempts, with their no_result."""
        now = time.monotonic()
        resolved = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, task_id = heapq.heappop(self._deadlines)
            entry = self.pending.get(task_id)
            if entry is None or entry.deadline != deadline:
                continue  # answered, or its deadline moved
            if entry.unanswered < self.options.max_attempts:
                self._transmit(entry, now)
            else:
                del self.pending[task_id]
                resolved.append((entry.future, Result.no_result(task_id, entry.request.get("plugin", "flow"), entry.attempts)))
        return resolved

    def seconds_to_next_deadline(self, cap: float) -> float:
        while self._deadlines:
            deadline, task_id = self._deadlines[0]
            entry = self.pending.get(task_id)
            if entry is not None and entry.deadline == deadline:
                return max(0.0, min(cap, deadline - time.monotonic()))
            heapq.heappop(self._deadlines)
        return cap

    def forget(self, task_id: str) -> None:
        self.pending.pop(task_id, None)
