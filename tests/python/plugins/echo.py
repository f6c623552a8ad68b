"""Echoes its input, with what the worker saw of its grant and settings."""
import logging
import os

REQUIREMENT = {"cpu_cores": 0.5, "cpu_threads": 2, "memory_mb": 64}
VERSION = "1.2.3"
SETTINGS = {"model": "which model to load", "beams": ("int", "search width")}
_settings = {}


def setup(settings):
    _settings.update(settings)
    logging.getLogger("echo").info("setup with %d setting(s)", len(settings))


def execute(ctx, input):
    ctx.log.info("echoing task %s", ctx.task_id)
    if input.get("nan"):  # an output JSON cannot hold as it is
        return {"ratio": float("nan"), "limit": float("inf")}
    return {
        "echo": input,
        "settings": _settings,
        "pid": os.getpid(),
        "cpu_threads": ctx.cpu_threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
