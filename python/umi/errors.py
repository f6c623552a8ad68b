"""Exceptions of the umi client.

UmiError is the root. A task that did not end ``ok`` is not an exception
by itself: its Result says so, and ``Result.raise_for_status()`` raises the
TaskError subclass for its status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from umi.result import Result

__all__ = [
    "UmiError", "UsageError", "ClientClosed", "ControlError", "TaskError", "TaskRejected", "TaskFailed",
    "NoResult", "TaskTimedOut", "TaskCancelled", "TaskCrashed",
]


class UmiError(Exception):
    """Every exception this package raises on purpose."""


class UsageError(UmiError, ValueError):
    """The client was used wrongly: a bad endpoint, a bad option value, a
    control request without an rpc endpoint."""


class ClientClosed(UmiError):
    """The client was closed; its unfinished futures fail with this too."""


class ControlError(UmiError):
    """A control request (health, stats, cancel...) got ``ok: false`` or no reply in time."""

    def __init__(self, op: str, code: str, message: str) -> None:
        super().__init__(f"{op}: {code}: {message}" if message else f"{op}: {code}")
        self.op, self.code, self.message = op, code, message


class TaskError(UmiError):
    """A task ended with a status other than ``ok``; ``.result`` holds it."""

    def __init__(self, result: Result) -> None:
        super().__init__(f"task '{result.id}' ({result.plugin}) ended {result.status}: "
                         f"{result.error_code}: {result.error_message}")
        self.result = result

    @property
    def code(self) -> str:
        return self.result.error_code


class TaskRejected(TaskError):
    """``rejected``: never run (unknown_plugin, infeasible, bad_request, shutting_down...)."""


class TaskFailed(TaskError):
    """``error``: the plugin failed (its code, or plugin_error)."""


class NoResult(TaskFailed):
    """No host answered after every attempt (``error``/``no_result``, made by the client)."""


class TaskTimedOut(TaskError):
    """``timeout``: ran past its timeout_ms."""


class TaskCancelled(TaskError):
    """``cancelled``: by request, or by a shutdown past its drain timeout."""


class TaskCrashed(TaskError):
    """``crashed``: the worker process running it died."""


_BY_STATUS: dict[str, type[TaskError]] = {
    "rejected": TaskRejected, "error": TaskFailed, "timeout": TaskTimedOut,
    "cancelled": TaskCancelled, "crashed": TaskCrashed,
}


def error_for(result: Result) -> TaskError:
    if result.status == "error" and result.error_code == "no_result":
        return NoResult(result)
    return _BY_STATUS.get(result.status, TaskError)(result)
