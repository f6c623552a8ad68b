"""A task's result (protocol v1, docs/protocol.md), and the events a host publishes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from umi.errors import error_for

__all__ = ["Result", "Event", "Status", "Lookup"]

# How a task ended: the protocol's six words (docs/protocol.md, "Results").
Status = Literal["ok", "error", "rejected", "timeout", "cancelled", "crashed"]


@dataclass(slots=True)
class Result:
    """One task's outcome: exactly one per submitted id."""

    id: str
    plugin: str
    status: Status
    output: dict[str, Any] | None = None  # status ok only (a flow: always, its "steps")
    error_code: str = ""
    error_message: str = ""
    error_detail: str = ""  # more for people (a plugin's traceback); empty: none
    host: str = ""
    queued_ms: float = 0.0
    run_ms: float = 0.0
    allocation: dict[str, Any] | None = None  # absent when the task never started
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # sends by this client (retries included)
    runs: int = 0  # the host's runs of a task with a retry policy (the wire's `attempts`); 0: it had none
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the result map as received

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def raise_for_status(self) -> Result:
        """Returns self when ok; raises the TaskError subclass of its status otherwise."""
        if not self.ok:
            raise error_for(self)
        return self

    @classmethod
    def from_message(cls, message: dict[str, Any], attempts: int = 0) -> Result:
        get = message.get
        error = get("error") or {}
        status = get("status", "")
        return cls(
            id=get("id", ""),
            plugin=get("plugin", ""),
            status=cast(Status, status),  # the host sends only the six words
            output=get("output"),  # a task's when ok; a flow's steps whatever its status
            error_code=error.get("code", ""),
            error_message=error.get("message", ""),
            error_detail=error.get("detail", ""),
            host=get("host", ""),
            queued_ms=get("queued_ms", 0.0),
            run_ms=get("run_ms", 0.0),
            allocation=get("allocation"),
            started_at=get("started_at"),
            finished_at=get("finished_at"),
            attempts=attempts,
            runs=get("attempts", 0),
            raw=message,
        )

    @classmethod
    def no_result(cls, task_id: str, plugin: str, attempts: int) -> Result:
        return cls(id=task_id, plugin=plugin, status="error", error_code="no_result",
                   error_message=f"no result after {attempts} attempt(s)", attempts=attempts)


@dataclass(slots=True)
class Lookup:
    """Where a host has a task, by id (``op: result``): ``queued``, ``running``,
    ``finished`` (with its ``result``, as it was sent, within ``dedup.window_s``)
    or ``unknown`` (never seen here, refused, or forgotten after the window)."""

    state: Literal["queued", "running", "finished", "unknown"]
    result: Result | None = None

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> Lookup:
        stored = reply.get("result")
        return cls(state=reply.get("state", "unknown"),
                   result=Result.from_message(stored) if isinstance(stored, dict) else None)


@dataclass
class Event:
    """One message of a host's events socket: ``task.queued``, ``task.started``,
    ``task.progress`` (progress, message) or ``task.finished`` (result)."""

    topic: str
    id: str
    plugin: str
    progress: float | None = None
    message: str = ""
    result: Result | None = None
