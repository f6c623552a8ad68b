"""umi: a client for umi hosts (blocking ``umi.Client``, asyncio ``umi.aio.Client``,
``umi.RedisClient`` for a farm on Redis Streams),
and the runtime of Python plugins (``umi.plugin``). docs/python.md has the guide."""

from umi.client import Client
from umi.errors import (
    ClientClosed, ControlError, NoResult, TaskCancelled, TaskCrashed, TaskError, TaskFailed, TaskRejected,
    TaskTimedOut, UmiError, UsageError,
)
from umi.redis_client import RedisClient
from umi.result import Event, Result

__version__ = "0.1.0"

__all__ = [
    "Client", "RedisClient", "Result", "Event", "UmiError", "UsageError", "ClientClosed", "ControlError", "TaskError",
    "TaskRejected", "TaskFailed", "NoResult", "TaskTimedOut", "TaskCancelled", "TaskCrashed", "__version__",
]
