"""The worker process for a Python plugin, started by umi-host.

    python3 -m umi._worker --describe FILE     print the plugin's descriptor (msgpack) on stdout
    python3 -m umi._worker --fd N --file FILE   serve tasks on socket N

It speaks the host's worker protocol (host/src/runtime/process_pool.cc):
frames of [type:u8][length:u32 little-endian][payload] on a socketpair.
The host sends INIT (settings, msgpack), then TASK and CANCEL frames; the
worker answers READY or INIT_FAILED, then STARTED, PROGRESS, LOG and DONE
per task. One task at a time: the GIL never serialises two tasks, the
host's pool runs them in separate processes.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import queue
import re
import resource
import signal
import socket
import struct
import sys
import threading
import traceback
import types
from typing import Any

import msgpack

from umi import _sandbox
from umi.plugin import REQUIREMENT_KEYS, Context, PluginError

INIT, READY, INIT_FAILED, TASK, CANCEL, PROGRESS, DONE, STARTED, LOG, SANDBOX = range(1, 11)
_HEADER = struct.Struct("<BI")
_NAME = re.compile(r"[a-z0-9_]{1,64}")
_LEVELS = {logging.DEBUG: 0, logging.INFO: 1, logging.WARNING: 2, logging.ERROR: 3}


def _fail_reason(error: BaseException) -> str:
    """One line: the exception type and message, with file and line for a syntax error."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({os.path.basename(error.filename or '?')}, line {error.lineno})"
    return f"{type(error).__name__}: {error}"


class _HelperFinder(importlib.abc.MetaPathFinder):
    """A plugin's _helper modules, from its directory, and nothing else there:
    the directory is not on sys.path, so a plugin named csv.py is no `csv`
    for the others, nor is any plugin a module of the others. Last on
    sys.meta_path: a name Python finds elsewhere (_csv, _json) stays its."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if path is not None or not fullname.startswith("_"):
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.directory])


def load_module(path: str, source: bytes | None = None) -> types.ModuleType:
    """The plugin at `path`, run from `source` when given: the code the host
    read when it loaded the plugin (a file changed on disk since is not run
    before a restart); tracebacks still name `path`."""
    name = os.path.splitext(os.path.basename(path))[0]
    directory = os.path.dirname(os.path.abspath(path))
    if not any(isinstance(finder, _HelperFinder) and finder.directory == directory for finder in sys.meta_path):
        sys.meta_path.append(_HelperFinder(directory))
    if source is None:
        spec = importlib.util.spec_from_file_location(f"umi_plugin_{name}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    module = types.ModuleType(f"umi_plugin_{name}")
    module.__file__ = path
    sys.modules[module.__name__] = module
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def _read_source(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def describe(path: str, source: bytes | None = None) -> dict[str, Any]:
    """The descriptor the host registers, or {ok: False, reason}."""
    name = os.path.splitext(os.path.basename(path))[0]
    if not _NAME.fullmatch(name):
        return {"ok": False, "reason": f"plugin name '{name}' (the file name) is not 1-64 characters of [a-z0-9_]"}
    try:
        module = load_module(path, source)
    except BaseException as error:  # SystemExit too: a module that exits at import is broken
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "reason": "cannot import: " + _fail_reason(error)}
    if not callable(getattr(module, "execute", None)):
        return {"ok": False, "reason": "it defines no execute(ctx, input) function"}
    requirement = getattr(module, "REQUIREMENT", {})
    if not isinstance(requirement, dict):
        return {"ok": False, "reason": "REQUIREMENT must be a dict"}
    unknown = sorted(set(requirement) - set(REQUIREMENT_KEYS))
    if unknown:
        hint = " (did you mean 'cpu_threads'?)" if "threads" in unknown else ""
        return {"ok": False, "reason": f"REQUIREMENT has unknown key(s) {', '.join(unknown)}{hint}; "
                                       f"known: {', '.join(REQUIREMENT_KEYS)}"}
    try:
        declared = {
            "cpu_cores": float(requirement.get("cpu_cores", 1.0)),
            "cpu_threads": int(requirement.get("cpu_threads", 1)),
            "gpu_count": float(requirement.get("gpu_count", 0.0)),
            "memory_mb": int(requirement.get("memory_mb", 512)),
            "exclusive_gpu": bool(requirement.get("exclusive_gpu", False)),
        }
    except (TypeError, ValueError) as error:
        return {"ok": False, "reason": f"REQUIREMENT has a value of the wrong type: {error}"}
    settings = getattr(module, "SETTINGS", {})
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        return {"ok": False, "reason": "SETTINGS must be a dict: name -> description, or name -> (type, description)"}
    declared_settings = []
    for key, value in settings.items():
        kind, text = value if isinstance(value, tuple) and len(value) == 2 else ("", value)
        declared_settings.append({"name": key, "type": str(kind), "description": str(text)})
    sandbox = getattr(module, "SANDBOX", {})
    if not isinstance(sandbox, dict) or set(sandbox) - {"exec", "network", "read", "required"}:
        return {"ok": False, "reason": "SANDBOX must be a dict of exec (bool), network (bool), read (a list of paths), "
                                       "required (bool)"}
    read = sandbox.get("read", [])
    if not isinstance(read, (list, tuple)) or not all(isinstance(path, str) for path in read):
        return {"ok": False, "reason": "SANDBOX['read'] must be a list of paths"}
    doc = (module.__doc__ or "").strip().splitlines()
    return {
        "ok": True,
        "name": name,
        "version": str(getattr(module, "VERSION", "0.0.0")),
        "description": doc[0] if doc else "",
        "license": str(getattr(module, "LICENSE", "")),
        "task_group": str(getattr(module, "TASK_GROUP", "")),
        "requirement": declared,
        "settings": declared_settings,
        "sandbox": {"exec": bool(sandbox.get("exec", False)), "network": bool(sandbox.get("network", False)),
                    "read": list(read), "required": bool(sandbox.get("required", False))},
    }


class _Channel:
    """The socket to the host; writes may come from the plugin's threads."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.lock = threading.Lock()

    def write(self, kind: int, payload: bytes = b"") -> bool:
        try:
            with self.lock:
                self.sock.sendall(_HEADER.pack(kind, len(payload)) + payload)
            return True
        except OSError:
            return False

    def read(self) -> tuple[int, bytes] | None:
        header = self._read_exactly(_HEADER.size)
        if header is None:
            return None
        kind, length = _HEADER.unpack(header)
        payload = self._read_exactly(length)
        return None if payload is None else (kind, payload)

    def _read_exactly(self, size: int) -> bytes | None:
        chunks, left = [], size
        while left > 0:
            try:
                chunk = self.sock.recv(min(left, 1 << 20))
            except OSError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _HostLogHandler(logging.Handler):
    """Sends log records to the host's log while a task runs (with plugin
    and task); between tasks they go to stderr, because the host reads an
    idle worker's socket only to see that it died."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__(logging.DEBUG)
        self.channel = channel
        self.task_id: str | None = None
        self.fallback = logging.StreamHandler(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if self.task_id is None:
            self.fallback.emit(record)
            return
        level = _LEVELS.get(record.levelno, 3 if record.levelno > logging.WARNING else 1)
        text = self.format(record)
        # A line from a task's own logger (ctx.log) names that task, even from a thread that outlived it.
        task = getattr(record, "umi_task", self.task_id)
        self.channel.write(LOG, msgpack.packb({"level": level, "message": text, "task": task}))


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (anything with item()/tolist()) become plain values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as msgpack")


_STATM: list[int] = []  # /proc/self/statm, opened once


def _address_space_bytes() -> int:
    """VmSize: statm's first field, in pages, with one pread of a descriptor
    kept open (parsing /proc/self/status cost more than a no-op task)."""
    if not _STATM:
        _STATM.append(os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
    return int(os.pread(_STATM[0], 64, 0).split(maxsplit=1)[0]) * os.sysconf("SC_PAGE_SIZE")


def serve(fd: int, path: str, source: bytes | None = None, sandboxed: bool = False) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the host
    if os.getppid() == 1:
        return 1
    os.set_inheritable(fd, False)  # a program the plugin runs gets no end of the host's socket
    channel = _Channel(fd)
    worker_pid = os.getpid()

    def forked_child() -> None:
        # A process the plugin forks (multiprocessing, os.fork) is not this
        # worker: it never writes to the host, and it dies with the worker.
        channel.sock.close()
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != worker_pid:  # the worker died before that was armed
            os._exit(0)

    os.register_at_fork(after_in_child=forked_child)
    reap = False
    if sandboxed:  # before any of the plugin's code runs
        frame = channel.read()
        if frame is None or frame[0] != SANDBOX:
            return 1
        try:
            reap = _sandbox.enter(msgpack.unpackb(frame[1], raw=False))
        except OSError as error:
            channel.write(INIT_FAILED, f"cannot enter the sandbox: {error}".encode())
            return 1
    first = channel.read()
    if first is None or first[0] != INIT:
        return 1
    settings = msgpack.unpackb(first[1], raw=False) if first[1] else {}

    handler = _HostLogHandler(channel)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    name = os.path.splitext(os.path.basename(path))[0]
    logger = logging.getLogger(name)
    handler.task_id = ""  # setup's lines go to the host, which is waiting for READY
    try:
        module = load_module(path, source)
        execute = module.execute
        if callable(getattr(module, "setup", None)):
            module.setup(settings)
    except BaseException as error:
        logger.error("setup failed:\n%s", traceback.format_exc())
        channel.write(INIT_FAILED, ("setup failed: " + _fail_reason(error)).encode())
        return 1
    handler.task_id = None
    if not channel.write(READY):
        return 1

    tasks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    lock = threading.Lock()
    running: dict[str, Any] = {"id": None, "cancel": None}
    early_cancels: set[str] = set()

    def read_frames() -> None:
        while (frame := channel.read()) is not None:
            kind, payload = frame
            if kind == TASK:
                tasks.put(payload)
            elif kind == CANCEL:
                task_id = payload.decode(errors="replace")
                with lock:
                    if running["id"] == task_id:
                        running["cancel"].set()
                    else:
                        early_cancels.add(task_id)
        with lock:
            if running["cancel"] is not None:
                running["cancel"].set()
        tasks.put(None)

    threading.Thread(target=read_frames, name="umi-reader", daemon=True).start()
    all_cpus = os.sched_getaffinity(0)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    thread_vars = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

    while (payload := tasks.get()) is not None:
        task = msgpack.unpackb(payload, raw=False)
        task_id = task["id"]
        cpu_ids, gpu_ids = task.get("cpu_ids", []), task.get("gpu_ids", [])
        if cpu_ids:
            os.sched_setaffinity(0, cpu_ids)
        # Set only when they change: each assignment is a putenv.
        visible = ",".join(map(str, gpu_ids))
        if os.environ.get("CUDA_VISIBLE_DEVICES") != visible:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
        threads = str(task.get("cpu_threads", 0))
        if threads != "0" and os.environ.get(thread_vars[0]) != threads:
            for var in thread_vars:
                os.environ[var] = threads
        memory_mb = int(task.get("memory_mb", 0))
        limit_memory = memory_mb > 0 and not gpu_ids
        if limit_memory:
            limit = _address_space_bytes() + (memory_mb << 20)
            resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
        cancel = threading.Event()
        with lock:
            running["id"], running["cancel"] = task_id, cancel
            if task_id in early_cancels:
                cancel.set()
            early_cancels.clear()
        handler.task_id = task_id

        def report_progress(fraction: float, message: str, task_id: str = task_id) -> None:
            channel.write(PROGRESS, msgpack.packb({"task": task_id, "fraction": fraction, "message": message}))

        context = Context(task_id, name, task, cancel, report_progress,
                          logging.LoggerAdapter(logger, {"umi_task": task_id}))
        channel.write(STARTED)
        try:
            output = execute(context, msgpack.unpackb(task["input"], raw=False))
            if output is None:
                output = {}
            if not isinstance(output, dict):
                raise TypeError(f"execute returned {type(output).__name__}, not a dict")
            done = {"ok": True, "output": msgpack.packb(output, default=_plain, use_bin_type=True)}
        except MemoryError:
            done = {"ok": False, "code": "out_of_memory",
                    "message": f"the plugin ran out of its memory_mb={memory_mb} limit"}
        except PluginError as error:
            done = {"ok": False, "code": error.code, "message": error.message}
        except BaseException as error:  # SystemExit and KeyboardInterrupt end the task, not the worker
            frames = error.__traceback__.tb_next if error.__traceback__ else None  # from the plugin's frame on
            trace = "".join(traceback.format_exception(type(error), error, frames)).rstrip()
            logger.error("task '%s' raised:\n%s", task_id, trace)
            # The traceback's end says most: kept when it must be cut (the host allows 4096 bytes).
            detail = trace.encode()[-4000:].decode(errors="ignore")
            done = {"ok": False, "code": "plugin_error", "message": _fail_reason(error), "detail": detail}
        if os.getpid() != worker_pid:  # a forked child returned from execute: it has no task to answer
            os._exit(0)
        if reap:
            _sandbox.kill_leftover_processes()
        done["task"] = task_id
        handler.task_id = None
        with lock:
            running["id"], running["cancel"] = None, None
        if limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        if cpu_ids:
            os.sched_setaffinity(0, all_cpus)
        if not channel.write(DONE, msgpack.packb(done, use_bin_type=True)):
            break

    # The host closed the socket: it is stopping or gave up on this worker.
    teardown = getattr(module, "teardown", None)
    if callable(teardown):
        try:
            teardown()
        except Exception:
            traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
    os._exit(0)  # the plugin's threads are not ours to join


def main(argv: list[str]) -> int:
    # print() in a plugin must not reach the host's stdout (its ready line).
    stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    source = None
    sandboxed = bool(argv) and argv[-1] == "--sandbox"
    if sandboxed:
        argv = argv[:-1]
    if len(argv) in (4, 6) and argv[-2] == "--source-fd":  # the code the host read, not the file's
        source = _read_source(int(argv[-1]))
        argv = argv[:-2]
    if len(argv) == 2 and argv[0] == "--describe":
        descriptor = describe(argv[1], source)
        os.write(stdout, msgpack.packb(descriptor, use_bin_type=True))
        sys.stderr.flush()
        os._exit(0)  # a module's own threads must not keep the describe step alive
    if len(argv) == 4 and argv[0] == "--fd" and argv[2] == "--file":
        return serve(int(argv[1]), argv[3], source, sandboxed)
    print("usage: python3 -m umi._worker --describe FILE | --fd N --file FILE [--source-fd N] [--sandbox]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
