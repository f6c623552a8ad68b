"""Enters the sandbox umi-host prepared for this worker (host/src/runtime/sandbox.h).

The host builds both halves: a Landlock ruleset (on descriptor 5) and a
seccomp-bpf program (in the SANDBOX frame). The worker adds one rule only
it can name, its own /proc entry, and applies them before it imports the
plugin. A system call the program denies kills the worker with SIGSYS.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

RULESET_FD = 5
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SYS_LANDLOCK_ADD_RULE = 445  # the same number on every architecture
_SYS_LANDLOCK_RESTRICT_SELF = 446
_RULE_PATH_BENEATH = 1
_READ_FILE, _READ_DIR = 1 << 2, 1 << 3


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def enter(frame: dict[str, Any]) -> bool:
    """Applies the frame; True when this worker is pid 1 of its own
    namespace and must kill what each task leaves running."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if frame["landlock"]:
        own = os.open("/proc/self", os.O_PATH)
        rule = _PathBeneath(_READ_FILE | _READ_DIR, own)
        _check(libc.syscall(ctypes.c_long(_SYS_LANDLOCK_ADD_RULE), ctypes.c_long(RULESET_FD),
                            ctypes.c_long(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_long(0)),
               "landlock_add_rule(/proc/self)")
        os.close(own)
        _check(libc.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_long(RULESET_FD), ctypes.c_long(0)),
               "landlock_restrict_self")
        os.close(RULESET_FD)
    program = frame["seccomp"]
    if program:
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
        _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")
    return bool(frame["reap"])


def kill_leftover_processes() -> None:
    """Pid 1 of its namespace: every other process there, killed and reaped."""
    try:
        os.kill(-1, 9)
    except ProcessLookupError:
        return
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
