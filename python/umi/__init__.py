"""umi: a client for umi hosts (blocking ``umi.Client``, asyncio ``umi.aio.Client``,
``umi.RedisClient`` for a farm on Redis Streams),
and the runtime of Python plugins (``umi.plugin``). docs/python.md has the guide.

The clients are imported on first use: a plugin's worker (``umi._worker``)
needs msgpack only, not pyzmq or redis, so any interpreter with msgpack can
run plugins."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from umi.errors import (
    ClientClosed, ControlError, NoResult, TaskCancelled, TaskCrashed, TaskError, TaskFailed, TaskRejected,
    TaskTimedOut, UmiError, UsageError,
)

if TYPE_CHECKING:
    from umi.client import Client
    from umi.redis_client import RedisClient
    from umi.result import Event, Lookup, Result, Status

__version__ = "0.1.0"

__all__ = [
    "Client", "RedisClient", "Result", "Event", "Status", "Lookup", "UmiError", "UsageError", "ClientClosed", "ControlError", "TaskError",
    "TaskRejected", "TaskFailed", "NoResult", "TaskTimedOut", "TaskCancelled", "TaskCrashed", "__version__",
]

_LAZY = {"Client": "umi.client", "RedisClient": "umi.redis_client", "Result": "umi.result", "Event": "umi.result",
         "Status": "umi.result", "Lookup": "umi.result"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'umi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
