"""The asyncio client: umi.aio.Client, with the surface of umi.Client.

    async with umi.aio.Client("tcp://127.0.0.1:5557") as client:
        result = await client.run("sleep", {"ms": 100})
        future = client.submit("noop")                  # an asyncio.Future
        async for result in client.map("probe", inputs):
            ...

It runs on the event loop of its first use: no thread. The sockets are
plain ZeroMQ sockets watched through their file descriptor (edge-triggered:
every wake-up drains the socket), so a result costs one recv and no extra
future. Use a client from the loop it started on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import zmq
import zmq.asyncio

from umi import _core
from umi.errors import ClientClosed, ControlError, UsageError
from umi.result import Event, Lookup, Result

__all__ = ["Client", "EventStream"]

_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)


class _Collector:
    """Where map's results go: quacks like the futures the tracker resolves."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: deque[Any] = deque()
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        self.items.append(value)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def set_exception(self, error: BaseException) -> None:
        self.set_result(error)

    async def wait(self) -> None:
        self._waiter = self._loop.create_future()
        await self._waiter
        self._waiter = None


class EventStream:
    """Events from one host's events socket, on the event loop."""

    def __init__(self, options: _core.Options, topics: Iterable[str], timeout: float | None) -> None:
        self.timeout = timeout
        self._socket = zmq.asyncio.Context.instance().socket(zmq.SUB)
        self._socket.linger = 0
        _core.secure(self._socket, options)
        for topic in topics:
            self._socket.subscribe(topic.encode())
        _core.attach(self._socket, options.events)

    async def get(self, timeout: float | None = None) -> Event | None:
        while await self._socket.poll(None if timeout is None else int(timeout * 1000)):
            event = _core.decode_event(await self._socket.recv_multipart())
            if event is not None:
                return event
        return None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        event = await self.get(self.timeout)
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        self._socket.close(0)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Client:
    """See umi.Client for the options; every method that waits is a coroutine,
    submit() returns an asyncio.Future."""

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
        self._tracker = _core.Tracker(self._options, self._send)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drain_scheduled = False
        self._closed = False

    # ---- the surface ---------------------------------------------------------------------

    def submit(self, plugin: str, input: dict[str, Any] | None = None, *, id: str | None = None, priority: int = 0,
               timeout_ms: int = 0, resources: dict[str, Any] | None = None,
               retry: dict[str, Any] | None = None) -> asyncio.Future[Result]:
        """Sends a task now; the future resolves to its Result. Call it on the event loop."""
        loop = self._start()
        request = _core.make_request(plugin, input, id, priority, timeout_ms, resources, retry)
        future: asyncio.Future[Result] = loop.create_future()
        self._tracker.submit(request, future)
        self._schedule_drain()
        return future

    def submit_flow(self, steps: dict[str, dict[str, Any]], *, id: str | None = None) -> asyncio.Future[Result]:
        """As umi.Client.submit_flow; call it on the event loop."""
        loop = self._start()
        future: asyncio.Future[Result] = loop.create_future()
        self._tracker.submit(_core.make_flow_request(steps, id), future)
        self._schedule_drain()
        return future

    async def run(self, plugin: str, input: dict[str, Any] | None = None, *, id: str | None = None,
                  priority: int = 0, timeout_ms: int = 0, resources: dict[str, Any] | None = None,
                  retry: dict[str, Any] | None = None) -> Result:
        return await self.submit(plugin, input, id=id, priority=priority, timeout_ms=timeout_ms, resources=resources, retry=retry)

    async def map(self, plugin: str, inputs: Iterable[dict[str, Any]], *, max_in_flight: int = 64, priority: int = 0,
                  timeout_ms: int = 0, resources: dict[str, Any] | None = None,
                  retry: dict[str, Any] | None = None) -> AsyncIterator[Result]:
        """One task per input, at most max_in_flight at a time; Results as they complete."""
        if max_in_flight < 1:
            raise UsageError("max_in_flight must be >= 1")
        loop = self._start()
        collector = _Collector(loop)  # one sink for every task of the map: no future per task
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
                self._tracker.submit(_core.make_request(plugin, task_input, None, priority, timeout_ms, resources, retry),
                                     collector)
                in_flight += 1
            self._schedule_drain()
            if in_flight == 0:
                return
            while not collector.items:
                await collector.wait()
            in_flight -= 1
            item = collector.items.popleft()
            if isinstance(item, BaseException):
                raise item
            yield item

    def events(self, topics: Iterable[str] = ("task.",), timeout: float | None = None) -> EventStream:
        """As umi.Client.events: `async for event in stream`, or `await stream.get(timeout)`."""
        if not self._options.events:
            raise UsageError("events() needs the host's events endpoint: Client(..., events='tcp://host:5558')")
        if self._closed:
            raise ClientClosed("the client is closed")
        return EventStream(self._options, topics, timeout)

    async def health(self, timeout: float = 10.0) -> dict[str, Any]:
        return await self._control("health", timeout)

    async def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        return await self._control("stats", timeout)

    async def cancel(self, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self._control("cancel", timeout, task_id)

    async def result(self, task_id: str, timeout: float = 10.0) -> Lookup:
        """As umi.Client.result: the task by id, queued, running, finished (with its Result) or unknown."""
        return Lookup.from_reply(await self._control("result", timeout, task_id))

    async def drain(self, timeout: float = 10.0) -> dict[str, Any]:
        return await self._control("drain", timeout)

    async def reload(self, timeout: float = 60.0) -> dict[str, Any]:
        return await self._control("reload", timeout)

    @property
    def pending(self) -> int:
        return len(self._tracker.pending)

    @property
    def tasks_endpoint(self) -> str:
        return self._send_socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def results_endpoint(self) -> str:
        return self._receive_socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def close(self) -> None:
        """Stops the client; unfinished futures fail with ClientClosed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(cast(int, self._receive_socket.getsockopt(zmq.FD)))
        if self._timer is not None:
            self._timer.cancel()
        closed = ClientClosed("the client was closed before the result came")
        for entry in self._tracker.pending.values():
            if not entry.future.done():
                entry.future.set_exception(closed)
        for _, future in self._tracker.controls:
            if not future.done():
                future.set_exception(closed)
        self._send_socket.close(0)
        self._receive_socket.close(0)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ---- the loop side -------------------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(cast(int, self._receive_socket.getsockopt(zmq.FD)), self._drain)
            self._arm_timer()
        return self._loop

    async def _control(self, op: str, timeout: float, task_id: str | None = None) -> dict[str, Any]:
        if not self._options.rpc:
            raise UsageError(f"{op} is a control request: it needs an rpc endpoint")
        loop = self._start()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._tracker.control(op, future, task_id)
        self._schedule_drain()
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
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

    def _schedule_drain(self) -> None:
        # A send can consume the FD's edge: look at the socket once after a batch of sends.
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        socket, tracker = self._receive_socket, self._tracker
        while True:
            try:
                data = socket.recv(_NOBLOCK)
            except zmq.Again:
                # Reading EVENTS re-arms the edge-triggered FD; a message may have come meanwhile.
                if not cast(int, socket.getsockopt(_EVENTS)) & _POLLIN:
                    return
                continue
            for future, value in tracker.receive(data):
                if not future.done():
                    future.set_result(value)

    def _arm_timer(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self._tracker.seconds_to_next_deadline(0.25) + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        if self._closed:
            return
        for future, value in self._tracker.due():
            if not future.done():
                future.set_result(value)
        self._schedule_drain()
        self._arm_timer()
