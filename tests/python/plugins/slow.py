"""Sleeps input.ms (default 60 s), reporting progress, stopping early when cancelled."""
import os
import time

REQUIREMENT = {"cpu_cores": 1, "memory_mb": 32}


def execute(ctx, input):
    started = time.time()
    total = input.get("ms", 60000) / 1000.0
    steps = max(1, int(input.get("steps", 4)))
    for step in range(steps):
        if ctx.wait_cancelled(total / steps):
            return {"cancelled_at_step": step}
        ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return {"pid": os.getpid(), "started": started, "ended": time.time()}
