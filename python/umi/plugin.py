"""What a Python plugin sees: the task context, and the error a plugin raises
for a result with its own code.

A Python plugin is a file ``<name>.py`` in one of the host's plugin
directories::

    REQUIREMENT = {"cpu_cores": 1, "cpu_threads": 1, "memory_mb": 256}

    def setup(settings):            # optional: once per worker process
        ...

    def execute(ctx, input):        # required: one task
        ctx.progress(0.5, "half way")
        return {"answer": 42}

    def teardown():                 # optional: when the worker process stops
        ...

The host runs it in worker processes (``umi._worker``), one task at a time
per process. See docs/python.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Context", "PluginError", "REQUIREMENT_KEYS"]

# The keys of REQUIREMENT, as in YAML, the C++ SDK and the protocol.
REQUIREMENT_KEYS = ("cpu_cores", "cpu_threads", "gpu_count", "memory_mb", "exclusive_gpu")


class PluginError(Exception):
    """Raise it to end the task ``error`` with your own code (``bad_input``,
    ``not_found``...) instead of ``plugin_error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Context:
    """One task's view of the host. Its methods may be called from any
    thread the plugin starts."""

    def __init__(
        self,
        task_id: str,
        plugin: str,
        grant: dict[str, Any],
        cancel_event: threading.Event,
        report_progress: Callable[[float, str], None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.task_id = task_id
        self.plugin = plugin
        self.cpu_cores: float = float(grant.get("cpu_cores", 0.0))
        self.cpu_threads: int = int(grant.get("cpu_threads", 0))
        self.memory_mb: int = int(grant.get("memory_mb", 0))
        # Logical CPUs the process is pinned to (hardware.cpu.pinning); empty otherwise.
        self.cpu_ids: Sequence[int] = tuple(grant.get("cpu_ids", ()))
        # The granted GPUs; CUDA_VISIBLE_DEVICES is set to them.
        self.gpu_ids: Sequence[int] = tuple(grant.get("gpu_ids", ()))
        self._cancel = cancel_event
        self._report_progress = report_progress
        self.log = logger

    def cancelled(self) -> bool:
        """True once the task was cancelled or timed out: return soon."""
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float) -> bool:
        """Sleeps up to ``timeout`` seconds, waking early on cancellation."""
        return self._cancel.wait(timeout)

    def progress(self, fraction: float, message: str = "") -> None:
        """Reports progress (0..1) as a ``task.progress`` event."""
        self._report_progress(min(max(float(fraction), 0.0), 1.0), str(message))
