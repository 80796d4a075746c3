"""binance_uds for asyncio.

Example::

    import asyncio
    from binance_uds import aio

    async def main() -> None:
        async with aio.Client(api_key="...") as client:
            key = await client.listen_key_start()
            async with client.user_stream() as stream:
                async for event in stream:       # dicts, in order, until closed
                    print(event["e"], event["E"])

    asyncio.run(main())

How it works: the listenKey calls and the account snapshot are
request/response; each runs in the
loop's default executor (a thread for the duration of the call, the GIL
released while it waits). A stream is read on the loop itself: the library
hands out a descriptor readable exactly while events are queued
(``binance_user_stream_fd``), the loop watches it with ``add_reader``, and
the reader callback takes the events with ``binance_user_stream_try_next``
without blocking and wakes a waiting coroutine for each. An event costs one
wake-up of the loop. No thread waits on behalf of a waiting coroutine, and
nothing polls.

On a loop without ``add_reader`` (Windows' ProactorEventLoop) the stream is
opened in callback form instead (``binance_user_stream_open_callback``): the
library calls back on the one thread it owns for the stream, the event is
copied there and handed to the loop with ``call_soon_threadsafe``.

Memory stays bounded: at most ``max_pending`` events wait in the loop;
beyond that the loop stops taking them and the library's queue fills, and
what it cannot hold is dropped and reported by a ``binance.stream_gap`` (reason
``queue_overflow``), as for the blocking stream.

Closing (``await stream.close()``, leaving ``async with``, or cancelling
the task that uses the stream) ends every ``async for`` and
:meth:`UserStream.next_event` on the stream at once, on any task; the
stream's connection, timers and thread are gone when ``close()`` returns.
Use a client and its streams from one event loop.
"""

import asyncio
import collections
import ctypes
import socket
import threading
from typing import Any, AsyncIterator, Callable, Deque, Dict, Optional, Set, TypeVar

from . import (
    OK,
    STREAM_CLOSED,
    TIMEOUT,
    Config,
    RequestBudget,
    StreamClosed,
    StreamHealth,
    _call,
    _error,
    _EventCallback,
    _health_of,
    _lib,
    _parse_event,
    _take_error,
    _text,
)
from . import Client as _BlockingClient
from .events import AccountSnapshot, AnyEvent

__all__ = ["Client", "Event", "UserStream"]

_T = TypeVar("_T")


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Runs a blocking call in the loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class Client:
    """One WebSocket API connection for one API key (see
    :class:`binance_uds.Client`), for asyncio. An async context manager:
    closed on exit, with its streams.

    ``Client(config)``, or ``Client(api_key=..., ...)`` with
    :class:`binance_uds.Config`'s keyword arguments. Creating it does no I/O.
    """

    def __init__(self, config: Optional[Config] = None, **settings: Any) -> None:
        self._client = _BlockingClient(config, **settings)
        self._streams: Set["UserStream"] = set()

    async def listen_key_start(self) -> str:
        """``userDataStream.start``: the account's listenKey."""
        return await _in_thread(self._client.listen_key_start)

    async def listen_key_keepalive(self) -> str:
        """``userDataStream.ping``: extends the key and returns it. Raises
        :class:`binance_uds.ApiError` with ``code`` -1125 when the account
        has no valid key."""
        return await _in_thread(self._client.listen_key_keepalive)

    async def listen_key_stop(self) -> None:
        """``userDataStream.stop``: invalidates the account's key, for every
        connection and process using this API key."""
        await _in_thread(self._client.listen_key_stop)

    async def account_snapshot(self) -> AccountSnapshot:
        """The account's state over signed REST (see
        :meth:`binance_uds.Client.account_snapshot`), awaited in the
        executor. Needs a signing key on the config."""
        return await _in_thread(self._client.account_snapshot)

    def rate_limits(self) -> Any:
        """The ``rateLimits`` of the latest answer (does not block)."""
        return self._client.rate_limits()

    def request_budget(self) -> RequestBudget:
        """The request budget this client draws on (see
        :meth:`binance_uds.Client.request_budget`; does not block)."""
        return self._client.request_budget()

    def user_stream(self, max_pending: int = 1024) -> "UserStream":
        """The account's user data stream, opened by ``async with`` or
        ``await``: ``async with client.user_stream() as stream: ...`` or
        ``stream = await client.user_stream()``."""
        return UserStream(self, max_pending)

    async def close(self) -> None:
        """Closes the client's streams, then the client."""
        for stream in list(self._streams):
            await stream.close()
        await _in_thread(self._client.close)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<binance_uds.aio.Client {'open' if self._client._handle else 'closed'}>"


class Event:
    """One event, copied out of the library: ``type``, ``time_ms``,
    ``json`` (as received), ``is_library``, and ``data`` (parsed)."""

    __slots__ = ("type", "time_ms", "json", "is_library", "_data")

    def __init__(self, type: str, time_ms: int, json: str, is_library: bool) -> None:
        self.type = type
        self.time_ms = time_ms
        self.json = json
        self.is_library = is_library
        self._data: Optional[AnyEvent] = None

    @property
    def data(self) -> AnyEvent:
        """The event parsed (see :mod:`binance_uds.events`)."""
        if self._data is None:
            self._data = _parse_event(self.type, self.json)
        return self._data

    def __repr__(self) -> str:
        return f"<binance_uds.aio.Event {self.type} E={self.time_ms}>"


# Put in the loop's queue when the stream closes: wakes every waiting reader.
_CLOSED = object()


class UserStream:
    """The account's user data stream, for asyncio: ``async for event in
    stream`` yields each event as a dict (library events included) until
    the stream is closed. Open it with :meth:`Client.user_stream`."""

    def __init__(self, client: Client, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._client = client
        self._max_pending = max_pending
        self._handle: Optional[int] = None
        self._closed = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: "Optional[asyncio.Queue[Any]]" = None
        # Events handed to the loop and not yet taken: the library's thread
        # waits while there are max_pending of them.
        self._cond = threading.Condition()
        self._pending = 0
        # Kept for as long as the library may call it: until close returned.
        self._callback = _EventCallback(self._on_event)
        # The pollable form (the loop has add_reader): the stream's
        # descriptor, and the readers waiting for it to become readable.
        self._fd: Optional[int] = None
        # Events the loop took from the library, not yet read (at most
        # max_pending), the readers waiting for one, whether the loop
        # watches the descriptor, and the library's last word (closed).
        self._ready: "Deque[Event]" = collections.deque()
        self._waiters: "Deque[asyncio.Future[None]]" = collections.deque()
        self._reading = False
        self._ended: Optional[BaseException] = None

    # -- the library's thread ------------------------------------------------

    def _on_event(self, ev: int, _user_data: Any) -> None:
        """Called by the library, on its thread, with a borrowed event:
        copies it and hands it to the loop. Never raises into C."""
        try:
            item = _copy_event(ev)
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._pending < self._max_pending)
                if self._closed:
                    return
                self._pending += 1
            assert self._loop is not None and self._queue is not None
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except BaseException:  # noqa: B036 (e.g. the loop is already closed: nobody is listening)
            pass

    # -- opening ---------------------------------------------------------------

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> "UserStream":
        return await self._open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _open_in_thread(self, client_handle: int, pollable: bool) -> int:
        lib = _lib()
        out = ctypes.c_void_p()
        if pollable:
            _call(lib.binance_user_stream_open, client_handle, ctypes.byref(out))
        else:
            _call(lib.binance_user_stream_open_callback, client_handle, self._callback, None, ctypes.byref(out))
        assert out.value is not None
        return out.value

    async def _open(self) -> "UserStream":
        if self._handle is not None or self._closed:
            raise RuntimeError("a stream is opened once")
        loop = asyncio.get_running_loop()
        self._loop = loop
        pollable = _has_add_reader(loop)
        if not pollable:
            self._queue = asyncio.Queue()
        future = loop.run_in_executor(None, self._open_in_thread, self._client._client._live(), pollable)
        try:
            handle = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The open goes on in its thread: close what it opens.
            self._closed = True
            future.add_done_callback(lambda f: _close_later(loop, f))
            raise
        if self._closed:  # closed by another task while it opened
            await _in_thread(_shutdown_and_close, handle)
            raise _error(STREAM_CLOSED, "the stream was closed while it opened")
        if pollable:
            try:
                self._fd = _stream_fd(handle)
            except BaseException:
                await _in_thread(_shutdown_and_close, handle)
                raise
        self._handle = handle
        self._client._streams.add(self)
        self._resume_reading()
        return self

    # -- reading ---------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event. Raises :class:`binance_uds.StreamClosed` once the
        stream is closed. Wrap it in ``asyncio.wait_for`` for a timeout."""
        if self._fd is None:
            return await self._next_from_callback()
        while True:
            if self._closed or self._handle is None:
                raise _error(STREAM_CLOSED, "the stream is closed")
            if self._ready:
                event = self._ready.popleft()
                self._resume_reading()
                return event
            if self._ended is not None:
                raise self._ended
            assert self._loop is not None
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled
                    self._waiters.remove(waiter)

    def _on_readable(self) -> None:
        """The descriptor is readable: takes the queued events (until the
        library has none, which lowers the descriptor, or max_pending wait
        here) and wakes a waiting reader for each. An event costs this one
        wake-up of the loop."""
        handle = self._handle
        while handle is not None and len(self._ready) < self._max_pending:
            try:
                event = _try_next(handle)
            except BaseException as e:  # noqa: B036 (StreamClosed: the client was freed)
                self._ended = e
                self._stop_reading()
                self._wake_waiters()
                return
            if event is None:
                return
            self._ready.append(event)
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break
        # Full: the library's queue holds the rest until a reader makes room.
        self._stop_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._loop is not None and self._fd is not None and self._handle is not None:
            if len(self._ready) < self._max_pending:
                self._loop.add_reader(self._fd, self._on_readable)
                self._reading = True

    def _stop_reading(self) -> None:
        if self._reading and self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._reading = False

    def _wake_waiters(self) -> None:
        """Every waiting reader looks again (the stream closed)."""
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _next_from_callback(self) -> Event:
        queue = self._queue
        if self._closed or queue is None:
            raise _error(STREAM_CLOSED, "the stream is closed")
        item = await queue.get()
        if item is _CLOSED or self._closed:
            queue.put_nowait(_CLOSED)  # for the next reader
            raise _error(STREAM_CLOSED, "the stream is closed")
        with self._cond:
            self._pending -= 1
            self._cond.notify()
        assert isinstance(item, Event)
        return item

    async def events(self) -> AsyncIterator[Event]:
        """Yields :class:`Event` objects until the stream is closed."""
        while True:
            try:
                event = await self.next_event()
            except StreamClosed:
                return
            yield event

    def __aiter__(self) -> "UserStream":
        return self

    async def __anext__(self) -> AnyEvent:
        try:
            event = await self.next_event()
        except StreamClosed:
            raise StopAsyncIteration from None
        return event.data

    def health(self) -> StreamHealth:
        """A snapshot of the stream's health. Does not block."""
        if self._handle is None:
            raise _error(STREAM_CLOSED, "the stream is closed")
        return _health_of(self._handle)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Closes the stream; every reader on it stops at once (``async for``
        ends, :meth:`next_event` raises ``StreamClosed``). Queued events are
        discarded; the listenKey is not stopped. Safe to call more than once
        and from any task; the stream is closed even if this is cancelled."""
        handle, self._handle = self._handle, None
        self._closed = True
        # Off the loop before the stream closes its descriptor.
        self._stop_reading()
        self._ready.clear()
        self._wake_waiters()
        with self._cond:
            self._cond.notify_all()  # the library's thread, if it waits for room
        if self._queue is not None:
            self._queue.put_nowait(_CLOSED)
        self._client._streams.discard(self)
        if handle is not None:
            _lib().binance_user_stream_shutdown(handle)  # does not block
            # Close joins the library's thread: off the loop, and to the end
            # even if the caller is cancelled meanwhile.
            await asyncio.shield(_in_thread(_shutdown_and_close, handle))

    def __del__(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                self._closed = True
                with self._cond:
                    self._cond.notify_all()
                _shutdown_and_close(handle)
            except Exception:  # interpreter shutdown
                pass

    def __repr__(self) -> str:
        return f"<binance_uds.aio.UserStream {'closed' if self._closed else 'open'}>"


# Whether a loop type has add_reader (not Windows' ProactorEventLoop).
_ADD_READER: Dict[type, bool] = {}


def _has_add_reader(loop: asyncio.AbstractEventLoop) -> bool:
    known = _ADD_READER.get(type(loop))
    if known is not None:
        return known
    a, b = socket.socketpair()
    try:
        loop.add_reader(a.fileno(), lambda: None)
        loop.remove_reader(a.fileno())
        known = True
    except NotImplementedError:
        known = False
    finally:
        a.close()
        b.close()
    _ADD_READER[type(loop)] = known
    return known


def _copy_event(ev: Any) -> Event:
    """An event the library lends, copied out."""
    lib = _lib()
    return Event(
        _text(lib.binance_event_type(ev)),
        lib.binance_event_time_ms(ev),
        _text(lib.binance_event_json(ev)),
        bool(lib.binance_event_is_library(ev)),
    )


def _try_next(handle: int) -> Optional[Event]:
    """The next queued event, or None; never blocks."""
    lib = _lib()
    out = ctypes.c_void_p()
    # No error object for the common "nothing queued" answer.
    status = lib.binance_user_stream_try_next(handle, ctypes.byref(out), None)
    if status == TIMEOUT:
        return None
    if status != OK:
        err = ctypes.c_void_p()
        status = lib.binance_user_stream_try_next(handle, ctypes.byref(out), ctypes.byref(err))
        if status == OK:  # one came meanwhile
            return _take_event(out)
        if status == TIMEOUT:
            lib.binance_error_free(err)
            return None
        raise _take_error(status, err)
    return _take_event(out)


def _take_event(out: ctypes.c_void_p) -> Event:
    """Copies an event the caller owns, and frees it."""
    lib = _lib()
    try:
        return _copy_event(out)
    finally:
        lib.binance_event_free(out)


def _stream_fd(handle: int) -> int:
    """The stream's descriptor (owned by the stream)."""
    fd = ctypes.c_int64(-1)
    _call(_lib().binance_user_stream_fd, handle, ctypes.byref(fd))
    return fd.value


def _shutdown_and_close(handle: int) -> None:
    lib = _lib()
    lib.binance_user_stream_shutdown(handle)
    lib.binance_user_stream_close(handle)


def _close_later(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[int]") -> None:
    """Closes the stream an abandoned open produced (on the executor)."""
    if not future.cancelled() and future.exception() is None:
        loop.run_in_executor(None, _shutdown_and_close, future.result())
