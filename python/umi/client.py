"""The blocking client: umi.Client.

    with umi.Client("tcp://127.0.0.1:5557") as client:
        result = client.run("sleep", {"ms": 100})
        future = client.submit("noop")              # a concurrent.futures.Future
        for result in client.map("probe", inputs):  # as they complete
            ...

One background thread owns the ZeroMQ sockets (they are not thread-safe)
and resolves futures; every method may be called from any thread.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any, cast

import zmq

from umi import _core
from umi.errors import ClientClosed, ControlError, UsageError
from umi.result import Event, Lookup, Result

__all__ = ["Client", "EventStream"]

_CLOSE = object()


class _Collector:
    """Where map's results go: quacks like the futures the I/O thread resolves."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        self.items.put(value)

    def set_exception(self, error: BaseException) -> None:
        self.items.put(error)


class EventStream:
    """Events from one host's events socket (a SUB socket of its own). Used from one thread."""

    def __init__(self, context: zmq.Context, options: _core.Options, topics: Iterable[str],
                 timeout: float | None) -> None:
        self.timeout = timeout
        self._socket = context.socket(zmq.SUB)
        self._socket.linger = 0
        _core.secure(self._socket, options)
        for topic in topics:
            self._socket.subscribe(topic.encode())
        _core.attach(self._socket, options.events)

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds (None: wait forever)."""
        while self._socket.poll(None if timeout is None else int(timeout * 1000)):
            event = _core.decode_event(self._socket.recv_multipart())
            if event is not None:
                return event
        return None

    def __iter__(self) -> Iterator[Event]:
        while (event := self.get(self.timeout)) is not None:
            yield event

    def close(self) -> None:
        self._socket.close(0)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A producer connected to one or more hosts.

    rpc: a host's rpc endpoint (or a list: tasks go round-robin); results
    come back on the same socket and control requests work. Or tasks= and
    results= (a '@' prefix binds, for many hosts connecting to this
    producer; '>' or nothing connects). events=: the host's events endpoint,
    for events(). retry_after (seconds, default 30) and max_attempts
    (default 3: sends in a row that nobody answers; a host answering
    "still queued or running" starts the count again): at-least-once
    delivery. curve_*: Z85 keys for a host with
    security.curve.

    submit and run take ``input`` and ``id``, the protocol's own field names
    (docs/protocol.md), although they shadow Python builtins inside these
    methods: a producer reading the protocol finds the same words here, and
    neither method needs the builtins.
    """

    def __init__(
        self,
        rpc: str | list[str] | None = None,
        *,
        tasks: str | None = None,
        results: str | None = None,
        events: str | None = None,
        retry_after: float = 30.0,
        max_attempts: int = 3,
        curve_server_key: str | None = None,
        curve_public_key: str | None = None,
        curve_secret_key: str | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self._options = _core.Options.make(rpc, tasks, results, events, retry_after, max_attempts,
                                           curve_server_key, curve_public_key, curve_secret_key)
        self._context = context or zmq.Context.instance()
        self._send_socket, self._receive_socket = _core.make_sockets(self._context, self._options)
        self._monitor = self._send_socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self._connected = 0
        self._connected_changed = threading.Condition()
        self._tracker = _core.Tracker(self._options, self._send)
        self._inbox: collections.deque[tuple[Any, ...]] = collections.deque()
        # Debian 12's mypy (1.0) has typeshed from before os.eventfd (Python 3.10): its calls are ignored.
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # type: ignore[attr-defined]
        self._sleeping = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="umi-client", daemon=True)
        self._thread.start()

    # ---- the surface ---------------------------------------------------------------------

    def submit(self, plugin: str, input: dict[str, Any] | None = None, *, id: str | None = None, priority: int = 0,
               timeout_ms: int = 0, resources: dict[str, Any] | None = None,
               retry: dict[str, Any] | None = None) -> Future[Result]:
        """Sends a task; the future resolves to its Result (never raises for a failed task)."""
        request = _core.make_request(plugin, input, id, priority, timeout_ms, resources, retry)
        future: Future[Result] = Future()
        self._post(("task", request, future))
        return future

    def run(self, plugin: str, input: dict[str, Any] | None = None, *, id: str | None = None, priority: int = 0,
            timeout_ms: int = 0, resources: dict[str, Any] | None = None,
            retry: dict[str, Any] | None = None) -> Result:
        """submit and wait for the Result."""
        return self.submit(plugin, input, id=id, priority=priority, timeout_ms=timeout_ms,
                           resources=resources, retry=retry).result()

    def submit_flow(self, steps: dict[str, dict[str, Any]], *, id: str | None = None) -> Future[Result]:
        """Sends a flow (docs/flows.md): {name: {plugin, input, after, ...}}. Its one Result has
        status ok, error (step_failed) or cancelled, and every step's result in output["steps"]."""
        future: Future[Result] = Future()
        self._post(("task", _core.make_flow_request(steps, id), future))
        return future

    def run_flow(self, steps: dict[str, dict[str, Any]], *, id: str | None = None) -> Result:
        """submit_flow and wait for the flow's Result."""
        return self.submit_flow(steps, id=id).result()

    def map(self, plugin: str, inputs: Iterable[dict[str, Any]], *, max_in_flight: int = 64, priority: int = 0,
            timeout_ms: int = 0, resources: dict[str, Any] | None = None,
            retry: dict[str, Any] | None = None) -> Iterator[Result]:
        """One task per input, at most max_in_flight at a time; Results as they complete."""
        if max_in_flight < 1:
            raise UsageError("max_in_flight must be >= 1")
        collector = _Collector()  # one sink for every task of the map: no future per task
        source = iter(inputs)
        in_flight = 0
        exhausted = False
        while True:
            while not exhausted and in_flight < max_in_flight:
                try:
                    task_input = next(source)
                except StopIteration:
                    exhausted = True
                    break
                self._post(("task", _core.make_request(plugin, task_input, None, priority, timeout_ms, resources, retry),
                            collector))
                in_flight += 1
            if in_flight == 0:
                return
            item = collector.items.get()
            in_flight -= 1
            if isinstance(item, BaseException):
                raise item
            yield item

    def events(self, topics: Iterable[str] = ("task.",), timeout: float | None = None) -> EventStream:
        """A subscription to the events of the host given as events=: iterate it (it ends
        after `timeout` seconds without an event; None: never) or call get(timeout).
        PUB/SUB: events published before the subscription took hold are missed."""
        if not self._options.events:
            raise UsageError("events() needs the host's events endpoint: Client(..., events='tcp://host:5558')")
        if self._closed:
            raise ClientClosed("the client is closed")
        return EventStream(self._context, self._options, topics, timeout)

    def health(self, timeout: float = 10.0) -> dict[str, Any]:
        return self._control("health", timeout)

    def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        return self._control("stats", timeout)

    def cancel(self, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Cancels a queued or running task: {ok, state}; its own result (cancelled) follows.
        ControlError with code not_found when the host does not have it."""
        return self._control("cancel", timeout, task_id)

    def result(self, task_id: str, timeout: float = 10.0) -> Lookup:
        """Looks a task up by id on the host: queued, running, finished (with its
        Result, within the host's dedup window) or unknown. Sends nothing to run."""
        return Lookup.from_reply(self._control("result", timeout, task_id))

    def drain(self, timeout: float = 10.0) -> dict[str, Any]:
        return self._control("drain", timeout)

    def reload(self, timeout: float = 60.0) -> dict[str, Any]:
        return self._control("reload", timeout)

    def wait_for_hosts(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Waits until `count` peers completed the ZeroMQ handshake with the sending socket
        (a bound tasks socket deals only to hosts already connected)."""
        with self._connected_changed:
            return self._connected_changed.wait_for(lambda: self._connected >= count, timeout)

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet resolved."""
        return len(self._tracker.pending) + sum(1 for item in list(self._inbox) if item[0] == "task")

    @property
    def tasks_endpoint(self) -> str:
        """The endpoint the sending socket got (for tasks='@tcp://127.0.0.1:*')."""
        return self._send_socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def results_endpoint(self) -> str:
        return self._receive_socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def close(self) -> None:
        """Stops the client; unfinished futures fail with ClientClosed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._inbox.append((_CLOSE,))
        os.eventfd_write(self._wake, 1)  # type: ignore[attr-defined]
        self._thread.join()
        # A submit racing this close from another thread may have posted after the I/O thread's last look.
        closed = ClientClosed("the client was closed before the task was sent")
        while self._inbox:
            item = self._inbox.popleft()
            if item[0] != _CLOSE and not item[-1].done():
                item[-1].set_exception(closed)

    def __enter__(self) -> Client:
        return self

    def __del__(self) -> None:
        # Not in close(): a submit racing it may still write to the eventfd, which must not be a reused fd.
        wake = getattr(self, "_wake", None)
        if wake is not None and getattr(self, "_closed", False):
            os.close(wake)

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the I/O thread ------------------------------------------------------------------

    def _post(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            raise ClientClosed("the client is closed")
        self._inbox.append(item)
        if self._sleeping:
            os.eventfd_write(self._wake, 1)  # type: ignore[attr-defined]

    def _control(self, op: str, timeout: float, task_id: str | None = None) -> dict[str, Any]:
        if not self._options.rpc:
            raise UsageError(f"{op} is a control request: it needs an rpc endpoint")
        future: Future[dict[str, Any]] = Future()
        self._post(("control", op, task_id, future))
        try:
            reply = future.result(timeout)
        except TimeoutError:
            raise ControlError(op, "no_reply", f"no reply within {timeout} s") from None
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise ControlError(op, str(error.get("code", "failed")), str(error.get("message", "")))
        return reply

    def _send(self, data: bytes) -> bool:
        try:
            self._send_socket.send(data, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._receive_socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        tracker = self._tracker
        try:
            while True:
                if self._take_inbox():
                    break
                self._sleeping = True
                if self._inbox:
                    self._sleeping = False
                    continue
                ready = dict(poller.poll(int(tracker.seconds_to_next_deadline(1.0) * 1000) + 1))
                self._sleeping = False
                if self._wake in ready:
                    os.eventfd_read(self._wake)  # type: ignore[attr-defined]
                if self._receive_socket in ready:
                    self._receive()
                if self._monitor in ready:
                    self._watch_connections()
                for future, value in tracker.due():
                    self._resolve(future, value)
        finally:
            self._shut()

    def _take_inbox(self) -> bool:
        """Sends what callers posted; True when the client is closing."""
        while self._inbox:
            item = self._inbox.popleft()
            if item[0] == "task":
                try:
                    self._tracker.submit(item[1], item[2])
                except UsageError as error:
                    item[2].set_exception(error)
            elif item[0] == "control":
                self._tracker.control(item[1], item[3], item[2])
            else:
                return True
        return False

    def _receive(self) -> None:
        socket = self._receive_socket
        while True:
            try:
                data = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            for future, value in self._tracker.receive(data):
                self._resolve(future, value)

    @staticmethod
    def _resolve(future: Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def _watch_connections(self) -> None:
        while True:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(frames[0][:2], "little")
            with self._connected_changed:
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._connected += 1
                elif event == zmq.EVENT_DISCONNECTED and self._connected > 0:
                    self._connected -= 1
                self._connected_changed.notify_all()

    def _shut(self) -> None:
        closed = ClientClosed("the client was closed before the result came")
        for entry in self._tracker.pending.values():
            if not entry.future.done():
                entry.future.set_exception(closed)
        for _, future in self._tracker.controls:
            if not future.done():
                future.set_exception(closed)
        for item in self._inbox:
            if item[0] != _CLOSE and not item[-1].done():
                item[-1].set_exception(closed)
        self._send_socket.disable_monitor()
        self._monitor.close(0)
        self._send_socket.close(0)
        self._receive_socket.close(0)
