"""Fails in the ways a plugin can: raises, crashes, hangs, eats memory."""
import ctypes
import os
import time

from umi.plugin import PluginError

REQUIREMENT = {"cpu_cores": 0.5, "memory_mb": 64}


def execute(ctx, input):
    mode = input.get("mode")
    if mode == "raise":
        raise KeyError("no such thing")
    if mode == "code":
        raise PluginError("bad_input", "mode 'code' asks for a custom code")
    if mode == "abort":
        os.abort()
    if mode == "segfault":
        ctypes.string_at(0)
    if mode == "hang":  # ignores cancellation
        while True:
            time.sleep(0.05)
    if mode == "memory":
        blocks = [bytearray(16 << 20) for _ in range(64)]  # 1 GiB against 64 MB
        return {"allocated": len(blocks)}
    if mode == "not_a_dict":
        return [1, 2, 3]
    return {"mode": mode}
