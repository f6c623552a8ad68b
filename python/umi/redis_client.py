"""umi.RedisClient: a producer for a farm of hosts on Redis Streams
(docs/scale-out.md). Needs python3-redis; the rest of the package does not.

    with umi.RedisClient("redis://cache:6379/0") as client:
        result = client.run("probe", {"path": "/media/a.mp4"}, wait=60)
        for result in client.map("checksum", inputs):
            ...

A task is XADDed to ``umi:tasks:<plugin>`` with ``reply_to`` this client's
stream; one background thread reads that stream (blocking XREAD), hands out
the first result per id, trims what it read (XTRIM MINID) and, at close,
deletes a stream it named itself. Redis keeps the tasks: a host that dies
mid-task has its entries claimed by a live one, so there are no resends
here, and a task whose plugin no host runs waits in its stream: give
``wait`` to run(), or a timeout to ``future.result``. A producer that must
survive its own restart names its stream (``reply_to``) and calls
``expect(id)`` for what it had sent. Every method may be called from any thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import msgpack

from umi import _core
from umi.errors import ClientClosed, UsageError
from umi.result import Lookup, Result

__all__ = ["RedisClient"]

_MAX_UNCLAIMED = 100_000



def task_stream(plugin: str, priority: int = 0) -> str:
    """The stream a task of ``plugin`` with ``priority`` goes to: one per
    priority level, as hosts take from the highest level first
    (umi/redis_streams.hpp; docs/scale-out.md)."""
    level = 9 if priority >= 7 else 6 if priority >= 4 else 3 if priority >= 1 else 0
    return f"umi:tasks:{plugin}" + (f":p{level}" if level else "")


def _connect(url: str, password: str | None) -> Any:
    """A redis-py client for ``url``; redis+sentinel://[[user]:pw@]h1[:port],h2[:port]/<master>[/db]
    asks the sentinels for the master (redis-py's Sentinel follows a failover)."""
    import redis
    import redis.sentinel
    from urllib.parse import unquote, urlsplit
    if not url.startswith("redis+sentinel://"):
        return redis.Redis.from_url(url, **({"password": password} if password else {}))
    parts = urlsplit("redis://" + url[len("redis+sentinel://"):].split("/", 1)[0].rsplit("@", 1)[-1])
    credentials = url[len("redis+sentinel://"):].split("/", 1)[0]
    user, secret = None, password
    if "@" in credentials:
        login = credentials.rsplit("@", 1)[0]
        user, _, given = login.partition(":") if ":" in login else ("", "", login)
        secret = secret or unquote(given)
    path = url[len("redis+sentinel://"):].split("/")[1:]
    if not path or not path[0]:
        raise ValueError("no master name after the sentinels")
    nodes = []
    for node in (parts.netloc or "").split(","):
        host, _, port = node.rpartition(":") if ":" in node else (node, "", "26379")
        nodes.append((host, int(port)))
    db = int(path[1]) if len(path) > 1 and path[1] else 0
    sentinel = redis.sentinel.Sentinel(nodes, socket_timeout=5)
    return sentinel.master_for(path[0], db=db, username=user or None, password=secret, socket_timeout=30)


class RedisClient:
    """url: redis://[[user]:password@]host:port/db, unix:///path, or
    redis+sentinel://[[user]:password@]h1[:port],h2[:port]/<master>[/db]. password_file: a
    file holding the password (a mounted secret). reply_to: the results stream (default: one
    of its own, deleted at close)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, reply_to: str | None = None,
                 password_file: str | os.PathLike[str] | None = None) -> None:
        try:
            import redis
        except ImportError:
            raise UsageError("umi.RedisClient needs the redis package (Debian: python3-redis)") from None
        password = None
        if password_file is not None:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as error:
                raise UsageError(f"cannot read the password file {password_file}: {error.strerror}") from None
        try:
            self._redis = _connect(url, password)
            self._reader = _connect(url, password)
            self._redis.ping()
        except ValueError as error:
            raise UsageError(f"'{url}' is not a Redis URL: {error}") from None
        except redis.RedisError as error:
            raise UsageError(f"cannot reach Redis at {url}: {error}") from None
        self._own_stream = reply_to is None
        self.reply_to = reply_to or f"umi:results:{_core.new_id()}"
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, Any]] = {}  # id -> (plugin, future)
        # Results read before anyone asked for their id (expect() after a restart; a second
        # result of a task run twice), oldest first, at most _MAX_UNCLAIMED.
        self._unclaimed: dict[str, Result] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="umi-redis-client", daemon=True)
        self._thread.start()

    def submit(self, plugin: str, input: dict[str, Any] | None = None, *, id: str | None = None, priority: int = 0,
               timeout_ms: int = 0, resources: dict[str, Any] | None = None,
               retry: dict[str, Any] | None = None) -> Future[Result]:
        """XADDs the task; the future resolves to the first Result for its id."""
        request = _core.make_request(plugin, input, id, priority, timeout_ms, resources, retry)
        future: Future[Result] = Future()
        self._add([request], [future])
        return future

    def run(self, plugin: str, input: dict[str, Any] | None = None, *, id: str | None = None, priority: int = 0,
            timeout_ms: int = 0, resources: dict[str, Any] | None = None,
            retry: dict[str, Any] | None = None, wait: float | None = None) -> Result:
        """submit and wait, at most `wait` seconds (None: forever): then error/no_result."""
        future = self.submit(plugin, input, id=id, priority=priority, timeout_ms=timeout_ms, resources=resources, retry=retry)
        try:
            return future.result(wait)
        except FutureTimeout:
            task_id = self._forget(future)
            return Result(id=task_id, plugin=plugin, status="error", error_code="no_result",
                          error_message=f"no result within {wait} s", attempts=1)

    def map(self, plugin: str, inputs: Iterable[dict[str, Any]], *, max_in_flight: int = 256, priority: int = 0,
            timeout_ms: int = 0, resources: dict[str, Any] | None = None,
            retry: dict[str, Any] | None = None) -> Iterator[Result]:
        """One task per input, added in pipelined batches, at most max_in_flight unanswered."""
        if max_in_flight < 1:
            raise UsageError("max_in_flight must be >= 1")
        import queue
        done: queue.SimpleQueue[Future[Result]] = queue.SimpleQueue()
        source = iter(inputs)
        in_flight = 0
        exhausted = False
        while True:
            requests: list[dict[str, Any]] = []
            futures: list[Future[Result]] = []
            while not exhausted and in_flight + len(requests) < max_in_flight:
                try:
                    task_input = next(source)
                except StopIteration:
                    exhausted = True
                    break
                requests.append(_core.make_request(plugin, task_input, None, priority, timeout_ms, resources, retry))
                futures.append(Future())
            if requests:
                for future in futures:
                    future.add_done_callback(done.put)
                self._add(requests, futures)
                in_flight += len(requests)
            if in_flight == 0:
                return
            finished = done.get()
            in_flight -= 1
            yield finished.result()

    def expect(self, task_id: str, plugin: str = "") -> Future[Result]:
        """A future for a task sent earlier (by this process or an earlier run with the same reply_to)."""
        future: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise ClientClosed("the client is closed")
            result = self._unclaimed.pop(task_id, None)
            if result is None:
                self._pending[task_id] = (plugin, future)
        if result is not None:
            future.set_result(result)
        return future

    def result(self, task_id: str) -> Lookup:
        """A finished task's result as its host kept it in Redis (umi:result:<id>, for the
        hosts' dedup.window_s): Lookup("finished", Result), or Lookup("unknown") when no
        host has answered that id within the window. Sends nothing to run."""
        kept = self._redis.get(f"umi:result:{task_id}")
        if kept is None:
            return Lookup("unknown")
        message = msgpack.unpackb(kept, raw=False)
        message.pop("fingerprint", None)  # the farm's, for duplicate ids: not part of the result
        return Lookup("finished", Result.from_message(message))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Stops reading; unfinished futures fail with ClientClosed; deletes a stream of its own."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending.values())
            self._pending.clear()
        self._thread.join()
        closed = ClientClosed("the client was closed before the result came")
        for _, future in pending:
            if not future.done():
                future.set_exception(closed)
        if self._own_stream:
            self._redis.delete(self.reply_to)
        self._redis.close()
        self._reader.close()

    def __enter__(self) -> RedisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add(self, requests: list[dict[str, Any]], futures: list[Future[Result]]) -> None:
        with self._lock:
            if self._closed:
                raise ClientClosed("the client is closed")
            for request, future in zip(requests, futures):
                if request["id"] in self._pending:
                    raise UsageError(f"a task with id '{request['id']}' is already pending on this client")
                self._pending[request["id"]] = (request["plugin"], future)
        pipe = self._redis.pipeline(transaction=False)
        for request in requests:
            request["reply_to"] = self.reply_to
            pipe.xadd(task_stream(request["plugin"], request.get("priority", 0)),
                      {"m": msgpack.packb(request, use_bin_type=True)})
        pipe.execute()

    def _forget(self, future: Future[Result]) -> str:
        with self._lock:
            for task_id, (_, pending) in list(self._pending.items()):
                if pending is future:
                    del self._pending[task_id]
                    return task_id
        return ""

    def _read(self) -> None:
        last = "0"
        while not self._closed:
            reply = self._reader.xread({self.reply_to: last}, count=1000, block=200)
            if not reply:
                continue
            entries = reply[0][1]
            for entry_id, fields in entries:
                last = entry_id
                try:
                    message = msgpack.unpackb(fields[b"m"], raw=False)
                except Exception:
                    continue
                if not isinstance(message, dict):
                    continue
                result = Result.from_message(message, attempts=1)
                with self._lock:
                    found = self._pending.pop(result.id, None)
                    if found is None and result.id not in self._unclaimed:
                        self._unclaimed[result.id] = result
                        if len(self._unclaimed) > _MAX_UNCLAIMED:
                            del self._unclaimed[next(iter(self._unclaimed))]
                if found is not None and not found[1].done():
                    found[1].set_result(result)
            # What was read is ours alone: trim it, so Redis memory stays flat.
            self._reader.xtrim(self.reply_to, minid=_next_id(last), approximate=False)


def _next_id(entry_id: bytes | str) -> str:
    """The smallest stream id after entry_id (XTRIM MINID keeps ids >= it)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    milliseconds, sequence = text.split("-")
    return f"{milliseconds}-{int(sequence) + 1}"
