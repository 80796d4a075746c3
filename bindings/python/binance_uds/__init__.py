"""Binance USD-M Futures listenKeys and the user data stream, from Python.

A thin ctypes layer over the ``binance-uds`` C library (``libbinance_uds``):
no dependencies, no compiled extension. Every blocking call releases the
GIL while it waits.

The shared library is the one ``pip install`` built and put next to this
file (``libbinance_uds.so``, ``.dylib``, ``.dll``). The environment
variable ``BINANCE_UDS_LIBRARY``, when set, overrides it with a path (a
debug build, say); without either, the system loader is asked
(``ctypes.util.find_library``, e.g. after ``scripts/install.sh``).

Example::

    import binance_uds

    config = binance_uds.Config(api_key="...", endpoint=binance_uds.WS_API_URL_TESTNET,
                                stream_endpoint=binance_uds.STREAM_URL_TESTNET)
    with binance_uds.Client(config) as client, client.user_stream() as stream:
        for event in stream:          # dicts, in order, until the stream is closed
            print(event["e"], event["E"])

Threads: a :class:`Client` may be used from several threads at once. A
:class:`UserStream` may be read from several threads, and :meth:`UserStream.close`
from any thread ends the readers' waits at once. Close a client only
when no other thread is using it.

asyncio: :mod:`binance_uds.aio`. Event dicts are typed for editors and
type checkers: :mod:`binance_uds.events`.

The API key and the signing keys (secret key, private key PEM) are never
put in an exception, a log or a ``repr``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json as _json
import os
import threading
import time
import weakref
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_char, c_char_p, c_int32, c_int64, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Literal, Optional, Tuple, Type, TypedDict, cast

from . import _library

if TYPE_CHECKING:
    from .events import AccountSnapshot, AnyEvent

__all__ = [
    "ApiError",
    "BinanceError",
    "Client",
    "Config",
    "ConnectFailed",
    "ConnectionClosed",
    "Event",
    "InternalError",
    "InvalidArgument",
    "ProtocolError",
    "RateLimited",
    "StreamClosed",
    "RequestBudget",
    "StreamHealth",
    "Timeout",
    "TlsFailed",
    "UserStream",
    "status_str",
    "version",
]


def __getattr__(name: str) -> Any:
    # ``__version__`` is the library's own (the crate's, from Cargo.toml),
    # asked for only when wanted: importing never loads the library.
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")



# Endpoints (binance_uds.h).
WS_API_URL_PRODUCTION = "wss://ws-fapi.binance.com/ws-fapi/v1"
WS_API_URL_TESTNET = "wss://testnet.binancefuture.com/ws-fapi/v1"
STREAM_URL_PRODUCTION = "wss://fstream.binance.com/private"
STREAM_URL_TESTNET = "wss://fstream.binancefuture.com/private"
REST_URL_PRODUCTION = "https://fapi.binance.com"
REST_URL_TESTNET = "https://demo-fapi.binance.com"

# COIN-M Futures and Portfolio Margin endpoints (binance_config_set_product).
COINM_WS_API_URL_PRODUCTION = "wss://ws-dapi.binance.com/ws-dapi/v1"
COINM_WS_API_URL_TESTNET = "wss://testnet.binancefuture.com/ws-dapi/v1"
COINM_STREAM_URL_PRODUCTION = "wss://dstream.binance.com"
COINM_STREAM_URL_TESTNET = "wss://dstream.binancefuture.com"
COINM_REST_URL_PRODUCTION = "https://dapi.binance.com"
COINM_REST_URL_TESTNET = "https://testnet.binancefuture.com"
PM_STREAM_URL_PRODUCTION = "wss://fstream.binance.com/pm"
PM_REST_URL_PRODUCTION = "https://papi.binance.com"

# Products (binance_config_set_product), and the names Config(product=...) takes.
PRODUCT_USDM = 0
PRODUCT_COINM = 1
PRODUCT_PORTFOLIO_MARGIN = 2
PRODUCTS = {"usdm": PRODUCT_USDM, "coinm": PRODUCT_COINM, "pm": PRODUCT_PORTFOLIO_MARGIN}
Product = Literal["usdm", "coinm", "pm"]

# How streams subscribe (binance_config_set_stream_form).
STREAM_FORM_SUBSCRIBE = 0
STREAM_FORM_QUERY = 1

# Status values (fixed ABI: binance_uds.h).
OK = 0
INVALID_ARGUMENT = 1
CONNECT_FAILED = 2
TLS_FAILED = 3
TIMEOUT = 4
CONNECTION_CLOSED = 5
PROTOCOL_ERROR = 6
API_ERROR = 7
RATE_LIMITED = 8
INTERNAL_ERROR = 9
STREAM_CLOSED = 10

# The type the library gives a stream message that is not a JSON object.
UNPARSED = "binance.unparsed"

# ---------------------------------------------------------------------------
# The shared library


def _library_path() -> str:
    """Where the shared library is: see the module documentation."""
    from_env = os.environ.get("BINANCE_UDS_LIBRARY")
    if from_env:
        return from_env
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), _library.file_name())
    if os.path.exists(bundled):
        return bundled
    found = ctypes.util.find_library("binance_uds")
    if found:
        return found
    raise OSError(
        "the binance-uds shared library was not found: install the package with pip (it builds "
        f"and bundles the library), set BINANCE_UDS_LIBRARY to its path (e.g. target/release/{_library.file_name()}), "
        "or install it where the system loader looks"
    )


def _c_field(c_type: Any) -> Any:
    """A :class:`StreamHealth` field: its C type is the metadata the ctypes
    structure is built from."""
    return field(metadata={"c_type": c_type})


@dataclass(frozen=True)
class StreamHealth:
    """A snapshot of a stream's health (``binance_stream_health``, in the
    header's order: the ctypes structure is built from these fields)."""

    connected: bool = _c_field(c_int32)
    """True while the stream connection is up, False while reconnecting."""
    last_keepalive_status: int = _c_field(c_int32)
    """The latest keepalive's status (0, or the error it got); -1 before the first."""
    reconnects: int = _c_field(c_uint64)
    """Connections opened after the first (reconnects and rotations)."""
    events_delivered: int = _c_field(c_uint64)
    """Events handed to the application (stream and library events)."""
    events_dropped: int = _c_field(c_uint64)
    """Stream events dropped because the queue was full."""
    events_queued: int = _c_field(c_uint64)
    """Events waiting in the queue now."""
    gaps: int = _c_field(c_uint64)
    """``binance.stream_gap`` events caused by lost connections or keys."""
    key_renewals: int = _c_field(c_uint64)
    """Times the listenKey changed."""
    last_event_ms: int = _c_field(c_int64)
    """When the last stream event arrived, ms since the Unix epoch; 0 if none yet."""
    key_age_ms: int = _c_field(c_int64)
    """How long the current listenKey has been in use, in ms."""
    last_keepalive_ms: int = _c_field(c_int64)
    """When the latest keepalive finished, ms since the Unix epoch; 0 if none yet."""
    last_server_ping_ms: int = _c_field(c_int64)
    """When the server last pinged the stream's connection, ms since the Unix epoch; 0 if not yet."""
    connection_id: int = _c_field(c_uint64)
    """The stream connection this stream is on (shared by every stream on it); 0 while none."""
    connection_streams: int = _c_field(c_uint64)
    """Streams on that connection, this one included; 0 while none."""
    subscribed: bool = _c_field(c_int32)
    """True once the server acknowledged the current listenKey's subscription."""
    snapshot_waiting: bool = _c_field(c_int32)
    """True while the stream's account snapshot (account resync) waits for its
    turn in the request budget's queue."""
    snapshot_eta_ms: int = _c_field(c_int64)
    """Roughly when that snapshot runs, ms since the Unix epoch; 0 when none waits."""

    @classmethod
    def _from_c(cls, h: "_Health") -> "StreamHealth":
        values = {f.name: getattr(h, f.name) for f in fields(cls)}
        values["connected"] = bool(values["connected"])
        values["subscribed"] = bool(values["subscribed"])
        values["snapshot_waiting"] = bool(values["snapshot_waiting"])
        return cls(**values)


class RequestBudget(TypedDict):
    """:meth:`Client.request_budget`: the process's request budget for a
    source address and server (``binance_client_request_budget_json``)."""

    source_address: Optional[str]
    """The local address connections leave from; ``None``: the system's choice."""
    site: str
    """The server it counts for (``binance.com`` for all of Binance's hosts)."""
    limit: int
    """Request weight allowed per window, as the server last reported it (2400)."""
    window_ms: int
    """The window's length, as the server last reported it (60000)."""
    used: int
    """Weight used in the current window (sent, or as the server reported if more)."""
    snapshot_used: int
    """Of which account resync snapshots."""
    snapshots_waiting: int
    """Resync snapshots of any stream waiting for their turn."""
    paused_until_ms: int
    """After a 429/418, nothing is sent before this (ms since the epoch); 0 if not paused."""
    refused: int
    """Requests not sent because the budget had no room (:class:`RateLimited`)."""
    rate_limited: int
    """429 and 418 answers received."""


class _Health(Structure):
    """binance_stream_health: ``size`` (the caller sets it to the struct's
    size), then the fields of :class:`StreamHealth`."""

    _fields_ = [("size", c_uint32)] + [(f.name, f.metadata["c_type"]) for f in fields(StreamHealth)]


# void (*binance_event_callback)(const binance_event *ev, void *user_data)
_EventCallback = CFUNCTYPE(None, c_void_p, c_void_p)


_status = c_int32
_handle = c_void_p  # every library object is opaque
_out_handle = POINTER(c_void_p)
_owned_str = POINTER(c_char)  # a char * the caller frees with binance_string_free
_out_str = POINTER(_owned_str)
_out_err = POINTER(c_void_p)

# name: (restype, argtypes), for every function of binance_uds.h.
_SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    "binance_version": (c_char_p, []),
    "binance_status_str": (c_char_p, [_status]),
    "binance_string_free": (None, [_owned_str]),
    "binance_config_new": (_handle, []),
    "binance_config_free": (None, [_handle]),
    "binance_config_set_api_key": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_endpoint": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_stream_endpoint": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_timeouts_ms": (_status, [_handle, c_uint32, c_uint32, _out_err]),
    "binance_config_add_root_certificate_pem": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_keepalive_interval_ms": (_status, [_handle, c_uint32, _out_err]),
    "binance_config_set_stream_form": (_status, [_handle, c_int32, _out_err]),
    "binance_config_set_product": (_status, [_handle, c_int32, _out_err]),
    "binance_config_set_connection_sharing": (_status, [_handle, c_int32, _out_err]),
    "binance_config_set_stream_subscriptions_per_connection": (_status, [_handle, c_uint32, _out_err]),
    "binance_config_set_proxy": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_event_queue_capacity": (_status, [_handle, c_uint32, _out_err]),
    "binance_config_set_silence_timeout_ms": (_status, [_handle, c_uint32, _out_err]),
    "binance_config_set_stream_rotation_ms": (_status, [_handle, c_uint32, _out_err]),
    "binance_config_set_reconnect_backoff_ms": (_status, [_handle, c_uint32, c_uint32, _out_err]),
    "binance_config_set_secret_key": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_private_key_pem": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_rest_endpoint": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_recv_window_ms": (_status, [_handle, c_uint32, _out_err]),
    "binance_config_set_account_resync": (_status, [_handle, c_int32, _out_err]),
    "binance_config_set_open_waits_for_subscription": (_status, [_handle, c_int32, _out_err]),
    "binance_config_set_source_address": (_status, [_handle, c_char_p, _out_err]),
    "binance_config_set_snapshot_budget_percent": (_status, [_handle, c_uint32, _out_err]),
    "binance_client_new": (_status, [_handle, _out_handle, _out_err]),
    "binance_client_free": (None, [_handle]),
    "binance_client_rate_limits_json": (_status, [_handle, _out_str, _out_err]),
    "binance_client_request_budget_json": (_status, [_handle, _out_str, _out_err]),
    "binance_client_account_snapshot": (_status, [_handle, _out_str, _out_err]),
    "binance_listen_key_start": (_status, [_handle, _out_str, _out_err]),
    "binance_listen_key_keepalive": (_status, [_handle, _out_str, _out_err]),
    "binance_listen_key_stop": (_status, [_handle, _out_err]),
    "binance_error_status": (_status, [_handle]),
    "binance_error_api_code": (c_int64, [_handle]),
    "binance_error_http_status": (c_int32, [_handle]),
    "binance_error_retry_after_ms": (c_int64, [_handle]),
    "binance_error_message": (c_char_p, [_handle]),
    "binance_error_free": (None, [_handle]),
    "binance_event_type": (c_char_p, [_handle]),
    "binance_event_is_library": (c_int32, [_handle]),
    "binance_event_time_ms": (c_int64, [_handle]),
    "binance_event_json": (c_char_p, [_handle]),
    "binance_event_get": (_status, [_handle, c_char_p, _out_str, _out_err]),
    "binance_event_free": (None, [_handle]),
    "binance_user_stream_open": (_status, [_handle, _out_handle, _out_err]),
    "binance_user_stream_open_callback": (_status, [_handle, _EventCallback, c_void_p, _out_handle, _out_err]),
    "binance_user_stream_next": (_status, [_handle, c_uint32, _out_handle, _out_err]),
    "binance_user_stream_try_next": (_status, [_handle, _out_handle, _out_err]),
    "binance_user_stream_fd": (_status, [_handle, POINTER(c_int64), _out_err]),
    "binance_user_stream_health": (_status, [_handle, POINTER(_Health), _out_err]),
    "binance_user_stream_shutdown": (None, [_handle]),
    "binance_user_stream_close": (None, [_handle]),
}

_lib_lock = threading.Lock()
_lib_loaded: Optional[ctypes.CDLL] = None


def _lib() -> ctypes.CDLL:
    """The shared library, loaded on first use (importing never fails)."""
    global _lib_loaded
    lib = _lib_loaded
    if lib is not None:
        return lib
    with _lib_lock:
        if _lib_loaded is None:
            loaded = ctypes.CDLL(_library_path())
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(loaded, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _lib_loaded = loaded
        return _lib_loaded


def _text(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    return _text(_lib().binance_version())


def status_str(status: int) -> str:
    """The name of a status, e.g. ``"BINANCE_TIMEOUT"``."""
    return _text(_lib().binance_status_str(status))


# ---------------------------------------------------------------------------
# Errors


class BinanceError(Exception):
    """A failed call. Raised as the subclass for its status.

    Attributes: ``status`` (the ``binance_status`` value), ``status_name``
    (e.g. ``"BINANCE_API_ERROR"``), ``code`` (Binance's error code, e.g.
    -1125; 0 when none), ``http_status`` (e.g. 400; 0 when there was no
    answer), ``retry_after_ms`` (for :class:`RateLimited`: when to retry, ms
    since the Unix epoch; 0 when the server did not say) and ``message``.
    """

    def __init__(self, status: int, message: str, code: int = 0, http_status: int = 0, retry_after_ms: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retry_after_ms = retry_after_ms

    @property
    def status_name(self) -> str:
        return status_str(self.status)

    def __str__(self) -> str:
        details = f" (code {self.code}, HTTP status {self.http_status})" if self.code or self.http_status else ""
        return f"{self.status_name}{details}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, message={self.message!r}, code={self.code}, "
            f"http_status={self.http_status}, retry_after_ms={self.retry_after_ms})"
        )

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.status, self.message, self.code, self.http_status, self.retry_after_ms))


class InvalidArgument(BinanceError):
    """An argument was invalid (bad URL, empty API key, out of range, ...); the message names it."""


class ConnectFailed(BinanceError):
    """DNS, TCP, the proxy, or the WebSocket upgrade failed or was refused."""


class TlsFailed(BinanceError):
    """The TLS handshake or certificate verification failed."""


class Timeout(BinanceError):
    """No answer (or no connection) within the configured time."""


class ConnectionClosed(BinanceError):
    """The connection closed while the request waited, or the client is closed."""


class ProtocolError(BinanceError):
    """The server's message was not what the API documents."""


class ApiError(BinanceError):
    """The server answered with an error: see ``code`` and ``http_status``."""


class RateLimited(BinanceError):
    """The server answered 429 or 418: see ``retry_after_ms``."""


class InternalError(BinanceError):
    """A bug in the library. Please report it."""


class StreamClosed(BinanceError):
    """The user data stream is closed."""


_ERRORS: Dict[int, Type[BinanceError]] = {
    INVALID_ARGUMENT: InvalidArgument,
    CONNECT_FAILED: ConnectFailed,
    TLS_FAILED: TlsFailed,
    TIMEOUT: Timeout,
    CONNECTION_CLOSED: ConnectionClosed,
    PROTOCOL_ERROR: ProtocolError,
    API_ERROR: ApiError,
    RATE_LIMITED: RateLimited,
    INTERNAL_ERROR: InternalError,
    STREAM_CLOSED: StreamClosed,
}


def _error(status: int, message: str, code: int = 0, http_status: int = 0, retry_after_ms: int = 0) -> BinanceError:
    return _ERRORS.get(status, BinanceError)(status, message, code, http_status, retry_after_ms)


def _take_error(status: int, err: c_void_p) -> BinanceError:
    """The exception for a failed call; frees the library's error."""
    lib = _lib()
    try:
        return _error(
            status,
            _text(lib.binance_error_message(err)),
            lib.binance_error_api_code(err),
            lib.binance_error_http_status(err),
            lib.binance_error_retry_after_ms(err),
        )
    finally:
        lib.binance_error_free(err)


def _call(fn: Callable[..., int], *args: Any) -> int:
    """Calls a fallible library function (the error out-argument added);
    raises the exception for its status."""
    err = c_void_p()
    status = fn(*args, byref(err))
    if status != OK:
        raise _take_error(status, err)
    return status


def _take_string(s: Any) -> str:
    """Copies out a string the library handed over, and frees it."""
    if not s:
        return ""
    try:
        return _text(ctypes.string_at(s))
    finally:
        _lib().binance_string_free(s)


def _c_string(value: str, name: str) -> bytes:
    """A str argument as NUL-terminated UTF-8. Never shows the value."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise _error(INVALID_ARGUMENT, f"{name}: contains a NUL character")
    return value.encode("utf-8")


def _c_uint32(value: int, name: str) -> int:
    """An int argument for a uint32_t; the library checks the documented range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFFFFFFFF:
        raise _error(INVALID_ARGUMENT, f"{name}: {value} is out of range")
    return value


# ---------------------------------------------------------------------------
# Configuration


class Config:
    """A client configuration: keyword arguments, or a builder.

    ``Config(api_key=..., endpoint=...)`` and
    ``Config().api_key(...).endpoint(...)`` are the same. Each setting is
    checked at once: a bad value raises :class:`InvalidArgument` naming it.
    Durations are in milliseconds, as in the C API. Unset settings keep the
    library's defaults: the production endpoints, 10 s timeouts, keepalive
    every 30 minutes, the system's trusted roots.

    Keyword arguments (each is also a method of the same name):
    ``product`` (``"usdm"``, the default, ``"coinm"`` or ``"pm"``: USDⓈ-M
    Futures, COIN-M Futures or Portfolio Margin; chooses the default
    endpoints, how the listenKey is kept and the resync snapshot's shape),
    ``api_key`` (required before creating a client), ``endpoint`` (the
    WebSocket API URL), ``stream_endpoint`` (the user data stream base
    URL), ``timeouts_ms`` (a ``(connect_ms, request_ms)`` pair),
    ``root_certificate_pem`` (PEM text of extra CAs to trust),
    ``keepalive_interval_ms``, ``proxy`` (``http://[user:pass@]host:port``),
    ``event_queue_capacity``, ``silence_timeout_ms``, ``stream_rotation_ms``,
    ``reconnect_backoff_ms`` (an ``(initial_ms, max_ms)`` pair),
    ``stream_form``, ``connection_sharing``,
    ``stream_subscriptions_per_connection``; for signed REST (the account
    snapshot): ``secret_key`` (HMAC-SHA256) or ``private_key_pem``
    (Ed25519, PKCS#8 PEM), ``rest_endpoint``, ``recv_window_ms``, and
    ``account_resync`` (streams deliver the snapshot when they open and
    after every gap), ``snapshot_budget_percent`` (the share of the
    request budget resync snapshots may draw); ``source_address`` (the
    local address every connection leaves from: each has its own request
    budget); ``open_waits_for_subscription`` (False: opening a stream
    returns once its subscription is sent, and ``binance.stream_subscribed``
    says when it is live). The API key, the signing keys and proxy credentials
    are never shown in a ``repr`` or an exception.
    """

    def __init__(
        self,
        *,
        product: Optional[Product] = None,
        api_key: Optional[str] = None,
        endpoint: Optional[str] = None,
        stream_endpoint: Optional[str] = None,
        timeouts_ms: Optional[Tuple[int, int]] = None,
        root_certificate_pem: Optional[str] = None,
        keepalive_interval_ms: Optional[int] = None,
        proxy: Optional[str] = None,
        event_queue_capacity: Optional[int] = None,
        silence_timeout_ms: Optional[int] = None,
        stream_rotation_ms: Optional[int] = None,
        reconnect_backoff_ms: Optional[Tuple[int, int]] = None,
        stream_form: Optional[int] = None,
        connection_sharing: Optional[bool] = None,
        stream_subscriptions_per_connection: Optional[int] = None,
        secret_key: Optional[str] = None,
        private_key_pem: Optional[str] = None,
        rest_endpoint: Optional[str] = None,
        recv_window_ms: Optional[int] = None,
        account_resync: Optional[bool] = None,
        snapshot_budget_percent: Optional[int] = None,
        source_address: Optional[str] = None,
        open_waits_for_subscription: Optional[bool] = None,
    ) -> None:
        self._handle: Optional[int] = None
        handle = _lib().binance_config_new()
        if not handle:
            raise MemoryError("binance_config_new")
        self._handle = handle
        if product is not None:
            self.product(product)
        if api_key is not None:
            self.api_key(api_key)
        if endpoint is not None:
            self.endpoint(endpoint)
        if stream_endpoint is not None:
            self.stream_endpoint(stream_endpoint)
        if timeouts_ms is not None:
            self.timeouts_ms(*timeouts_ms)
        if root_certificate_pem is not None:
            self.root_certificate_pem(root_certificate_pem)
        if keepalive_interval_ms is not None:
            self.keepalive_interval_ms(keepalive_interval_ms)
        if proxy is not None:
            self.proxy(proxy)
        if event_queue_capacity is not None:
            self.event_queue_capacity(event_queue_capacity)
        if silence_timeout_ms is not None:
            self.silence_timeout_ms(silence_timeout_ms)
        if stream_rotation_ms is not None:
            self.stream_rotation_ms(stream_rotation_ms)
        if reconnect_backoff_ms is not None:
            self.reconnect_backoff_ms(*reconnect_backoff_ms)
        if stream_form is not None:
            self.stream_form(stream_form)
        if connection_sharing is not None:
            self.connection_sharing(connection_sharing)
        if stream_subscriptions_per_connection is not None:
            self.stream_subscriptions_per_connection(stream_subscriptions_per_connection)
        if secret_key is not None:
            self.secret_key(secret_key)
        if private_key_pem is not None:
            self.private_key_pem(private_key_pem)
        if rest_endpoint is not None:
            self.rest_endpoint(rest_endpoint)
        if recv_window_ms is not None:
            self.recv_window_ms(recv_window_ms)
        if account_resync is not None:
            self.account_resync(account_resync)
        if snapshot_budget_percent is not None:
            self.snapshot_budget_percent(snapshot_budget_percent)
        if source_address is not None:
            self.source_address(source_address)
        if open_waits_for_subscription is not None:
            self.open_waits_for_subscription(open_waits_for_subscription)

    def _set(self, setter: Callable[..., int], *args: Any) -> "Config":
        """Calls one ``binance_config_set_*`` function on this config."""
        _call(setter, self._handle, *args)
        return self

    def product(self, product: Product) -> "Config":
        """Chooses the product: ``"usdm"`` (USDⓈ-M Futures, the default),
        ``"coinm"`` (COIN-M Futures) or ``"pm"`` (Portfolio Margin). The
        endpoints not set explicitly become the product's production ones."""
        if not isinstance(product, str):
            raise TypeError(f"product must be a str, not {type(product).__name__}")
        if product not in PRODUCTS:
            raise _error(
                INVALID_ARGUMENT, f"product: {product!r} is not 'usdm', 'coinm' or 'pm'"
            )
        return self._set(_lib().binance_config_set_product, PRODUCTS[product])

    def api_key(self, key: str) -> "Config":
        """Sets the API key (sent with each request; never logged or shown)."""
        return self._set(_lib().binance_config_set_api_key, _c_string(key, "api_key"))

    def endpoint(self, url: str) -> "Config":
        """Sets the WebSocket API URL, ``wss://host[:port]/path``."""
        return self._set(_lib().binance_config_set_endpoint, _c_string(url, "url"))

    def stream_endpoint(self, url: str) -> "Config":
        """Sets the user data stream base URL; streams subscribe on ``<url>/stream``."""
        return self._set(_lib().binance_config_set_stream_endpoint, _c_string(url, "url"))

    def stream_form(self, form: int) -> "Config":
        """How streams subscribe: :data:`STREAM_FORM_SUBSCRIBE` (the default,
        ``SUBSCRIBE`` on ``<url>/stream``) or :data:`STREAM_FORM_QUERY`
        (``<url>/ws?listenKey=<key>``)."""
        if isinstance(form, bool) or not isinstance(form, int):
            raise TypeError(f"form must be an int, not {type(form).__name__}")
        if not -(2**31) <= form < 2**31:
            raise _error(INVALID_ARGUMENT, f"form: {form} is out of range")
        return self._set(_lib().binance_config_set_stream_form, form)

    def connection_sharing(self, enabled: bool) -> "Config":
        """Whether streams of clients configured alike share stream
        connections (default True; a lost shared connection is a gap in
        every stream on it)."""
        return self._set(_lib().binance_config_set_connection_sharing, 1 if enabled else 0)

    def stream_subscriptions_per_connection(self, n: int) -> "Config":
        """The most streams one shared connection carries: 1 to 1024 (default 200)."""
        return self._set(
            _lib().binance_config_set_stream_subscriptions_per_connection, _c_uint32(n, "n")
        )

    def secret_key(self, secret: str) -> "Config":
        """Sets the HMAC-SHA256 secret key that signs REST requests (the
        account snapshot). Never sent, logged or shown; replaces a private key."""
        return self._set(_lib().binance_config_set_secret_key, _c_string(secret, "secret"))

    def private_key_pem(self, pem: str) -> "Config":
        """Sets the Ed25519 private key (PKCS#8 PEM, ``BEGIN PRIVATE KEY``)
        that signs REST requests. Never logged or shown; replaces a secret key."""
        return self._set(_lib().binance_config_set_private_key_pem, _c_string(pem, "pem"))

    def rest_endpoint(self, url: str) -> "Config":
        """Sets the REST base URL, ``https://host[:port][/path]``
        (default :data:`REST_URL_PRODUCTION`)."""
        return self._set(_lib().binance_config_set_rest_endpoint, _c_string(url, "url"))

    def recv_window_ms(self, ms: int) -> "Config":
        """Sets ``recvWindow`` of signed requests: 1 to 60000 ms (default 5000)."""
        return self._set(_lib().binance_config_set_recv_window_ms, _c_uint32(ms, "ms"))

    def account_resync(self, enabled: bool) -> "Config":
        """Whether streams deliver the account snapshot
        (``binance.account_snapshot``) when they open and after every
        ``binance.stream_gap`` (default False). Needs a signing key: opening
        the stream raises :class:`InvalidArgument` without one."""
        return self._set(_lib().binance_config_set_account_resync, 1 if enabled else 0)

    def open_waits_for_subscription(self, wait: bool) -> "Config":
        """Whether opening a stream waits for the server to acknowledge its
        subscription (default True). False: the open returns once the
        subscription is sent, so a loop opening many accounts is not paced
        by the answers; the stream delivers ``binance.stream_subscribed``
        when it is live."""
        return self._set(_lib().binance_config_set_open_waits_for_subscription, 1 if wait else 0)

    def snapshot_budget_percent(self, percent: int) -> "Config":
        """The share of the request budget account resync snapshots may draw,
        1 to 100 percent (default 50: of Binance's 2400 a minute, 1200, about
        13 snapshots of weight 90). Snapshots of every stream wait in one
        queue, oldest gap first; listenKey requests go first."""
        return self._set(
            _lib().binance_config_set_snapshot_budget_percent, _c_uint32(percent, "percent")
        )

    def source_address(self, address: Optional[str]) -> "Config":
        """Binds every connection (WebSocket API, streams, REST) to the local
        address ``address``, an IPv4 or IPv6 literal the host has (``None``
        clears it). Binance counts request weight per IP: each address has
        its own request budget."""
        arg = None if address is None else _c_string(address, "address")
        return self._set(_lib().binance_config_set_source_address, arg)

    def timeouts_ms(self, connect_ms: int, request_ms: int) -> "Config":
        """Sets the connect and request timeouts, each 1 to 3600000 ms."""
        return self._set(
            _lib().binance_config_set_timeouts_ms,
            _c_uint32(connect_ms, "connect_ms"),
            _c_uint32(request_ms, "request_ms"),
        )

    def root_certificate_pem(self, pem: str) -> "Config":
        """Trusts the PEM certificate(s) in addition to the system's roots."""
        return self._set(_lib().binance_config_add_root_certificate_pem, _c_string(pem, "pem"))

    def keepalive_interval_ms(self, ms: int) -> "Config":
        """Sets how often a stream keeps its listenKey alive: 100 to 3300000 ms."""
        return self._set(_lib().binance_config_set_keepalive_interval_ms, _c_uint32(ms, "ms"))

    def proxy(self, url: str) -> "Config":
        """Sends every connection through an HTTP CONNECT proxy."""
        return self._set(_lib().binance_config_set_proxy, _c_string(url, "url"))

    def event_queue_capacity(self, capacity: int) -> "Config":
        """Sets how many stream events a stream queues: 1 to 1000000."""
        return self._set(_lib().binance_config_set_event_queue_capacity, _c_uint32(capacity, "capacity"))

    def silence_timeout_ms(self, ms: int) -> "Config":
        """Sets how long a stream connection may stay silent before it is replaced."""
        return self._set(_lib().binance_config_set_silence_timeout_ms, _c_uint32(ms, "ms"))

    def stream_rotation_ms(self, ms: int) -> "Config":
        """Sets how long a stream connection is used before it is rotated."""
        return self._set(_lib().binance_config_set_stream_rotation_ms, _c_uint32(ms, "ms"))

    def reconnect_backoff_ms(self, initial_ms: int, max_ms: int) -> "Config":
        """Sets the stream's reconnection backoff."""
        return self._set(
            _lib().binance_config_set_reconnect_backoff_ms,
            _c_uint32(initial_ms, "initial_ms"),
            _c_uint32(max_ms, "max_ms"),
        )

    def close(self) -> None:
        """Frees the configuration now (clients made from it are not affected)."""
        handle, self._handle = self._handle, None
        if handle:
            _lib().binance_config_free(handle)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


# ---------------------------------------------------------------------------
# Client


class Client:
    """One WebSocket API connection for one API key, opened on first use and
    reopened when dropped. A context manager: closed on exit.

    ``Client(config)``, or ``Client(api_key=..., ...)`` with :class:`Config`'s
    keyword arguments. Safe to use from several threads at once. Calls block
    (up to the connect plus the request timeout) with the GIL released.
    """

    def __init__(self, config: Optional[Config] = None, **settings: Any) -> None:
        self._handle: Optional[int] = None
        self._streams: "weakref.WeakSet[UserStream]" = weakref.WeakSet()
        if config is None:
            config = Config(**settings)
        elif settings:
            raise TypeError("pass a Config or keyword settings, not both")
        out = c_void_p()
        _call(_lib().binance_client_new, config._handle, byref(out))
        self._handle = out.value

    def _live(self) -> int:
        handle = self._handle
        if not handle:
            raise _error(CONNECTION_CLOSED, "the client is closed")
        return handle

    def listen_key_start(self) -> str:
        """``userDataStream.start``: the account's listenKey (an existing valid
        key is returned and extended)."""
        out = _owned_str()
        _call(_lib().binance_listen_key_start, self._live(), byref(out))
        return _take_string(out)

    def listen_key_keepalive(self) -> str:
        """``userDataStream.ping``: extends the key for 60 minutes and returns
        the key the server extended (use it if it differs from yours). Raises
        :class:`ApiError` with ``code`` -1125 when the account has no valid key."""
        out = _owned_str()
        _call(_lib().binance_listen_key_keepalive, self._live(), byref(out))
        return _take_string(out)

    def listen_key_stop(self) -> None:
        """``userDataStream.stop``: invalidates the account's key, for every
        connection and process using this API key."""
        _call(_lib().binance_listen_key_stop, self._live())

    def rate_limits(self) -> List[Dict[str, Any]]:
        """The ``rateLimits`` of the latest answer that carried them; ``[]`` before any."""
        out = _owned_str()
        _call(_lib().binance_client_rate_limits_json, self._live(), byref(out))
        limits: List[Dict[str, Any]] = _json.loads(_take_string(out))
        return limits

    def request_budget(self) -> "RequestBudget":
        """The request budget this client draws on, shared by every client of
        the process on the same source address and server: weight ``used``
        in the server's current window of ``window_ms``, its ``limit``,
        ``snapshots_waiting``, ``paused_until_ms`` (after a 429/418; 0 when
        not paused), ``refused`` (requests not sent for want of room) and
        ``rate_limited`` (429/418 answers). Does not block."""
        out = _owned_str()
        _call(_lib().binance_client_request_budget_json, self._live(), byref(out))
        budget: RequestBudget = _json.loads(_take_string(out))
        return budget

    def account_snapshot(self) -> "AccountSnapshot":
        """The account's balances, positions, open orders and open algo
        orders, fetched over signed REST, as the dict the
        ``binance.account_snapshot`` event carries (apply it by the README's
        merge rule, "Resynchronising after a gap"). Needs a signing key on
        the config (:class:`InvalidArgument` without one). Blocks until the
        snapshot is complete (up to the connect timeout plus 7 request
        timeouts), the GIL released."""
        out = _owned_str()
        _call(_lib().binance_client_account_snapshot, self._live(), byref(out))
        snapshot: "AccountSnapshot" = _json.loads(_take_string(out))
        return snapshot

    def user_stream(self) -> "UserStream":
        """Opens the account's user data stream (see :class:`UserStream`)."""
        return UserStream(self)

    def close(self) -> None:
        """Closes the streams opened from this client, then the client.
        Another thread's request in flight fails with :class:`ConnectionClosed`;
        do not start new calls on other threads meanwhile."""
        for stream in list(self._streams):
            stream.close()
        handle, self._handle = self._handle, None
        if handle:
            _lib().binance_client_free(handle)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<binance_uds.Client {'open' if self._handle else 'closed'}>"


# ---------------------------------------------------------------------------
# Events and streams


def _parse_event(kind: str, text: str) -> "AnyEvent":
    """An event's JSON as a dict. A message that is not a JSON object (type
    ``binance.unparsed``) gives ``{"e": "binance.unparsed", "E": 0, "text": <the text>}``."""
    parsed: Any = None
    if kind != UNPARSED:
        parsed = _json.loads(text)
    if not isinstance(parsed, dict):
        parsed = {"e": UNPARSED, "E": 0, "text": text}
    return cast("AnyEvent", parsed)


class Event:
    """One event: a user data event as Binance sent it, or a library event
    (``is_library``; ``binance.stream_gap``: events may have been lost,
    resynchronise over REST; ``binance.listen_key_renewed``;
    ``binance.stream_disconnected``).

    ``type`` (its ``"e"``), ``time_ms`` (its ``"E"``, ms since the Unix epoch;
    0 when absent), ``json`` (the text as received), ``data`` (parsed), and
    :meth:`get` for one value by JSON pointer.
    """

    __slots__ = ("_handle", "type", "time_ms", "json", "is_library", "_data")

    def __init__(self, handle: int) -> None:
        """Takes ownership of a ``binance_event *``."""
        lib = _lib()
        self._handle: Optional[int] = handle
        self.type: str = _text(lib.binance_event_type(handle))
        self.time_ms: int = lib.binance_event_time_ms(handle)
        self.json: str = _text(lib.binance_event_json(handle))
        self.is_library: bool = bool(lib.binance_event_is_library(handle))
        """Whether the library made it (a gap, a renewal, ...), as the
        library recorded it: a server event is never one, whatever its type."""
        self._data: "Optional[AnyEvent]" = None

    @property
    def data(self) -> "AnyEvent":
        """The event parsed (see :mod:`binance_uds.events` for its type). A
        message that is not a JSON object (type ``binance.unparsed``) gives
        ``{"e": "binance.unparsed", "E": 0, "text": <the text>}``."""
        if self._data is None:
            self._data = _parse_event(self.type, self.json)
        return self._data

    def get(self, pointer: str) -> str:
        """The value at an RFC 6901 JSON pointer, e.g. ``"/o/X"``: strings
        unquoted, other values as JSON text. Raises :class:`InvalidArgument`
        when the pointer is malformed or there is no such value."""
        out = _owned_str()
        _call(_lib().binance_event_get, self._handle, _c_string(pointer, "json_pointer"), byref(out))
        return _take_string(out)

    def close(self) -> None:
        """Frees the library's event now (``type``, ``json``, ``data`` stay)."""
        handle, self._handle = self._handle, None
        if handle:
            _lib().binance_event_free(handle)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<binance_uds.Event {self.type} E={self.time_ms}>"


def _health_of(handle: int) -> StreamHealth:
    """``binance_user_stream_health`` of an open stream."""
    h = _Health(size=ctypes.sizeof(_Health))
    _call(_lib().binance_user_stream_health, handle, byref(h))
    return StreamHealth._from_c(h)


class UserStream:
    """An open user data stream: the account's events, in order, with the
    listenKey kept alive, renewed and the connection replaced for you.

    Open it with :meth:`Client.user_stream`. A context manager: closed on
    exit (the listenKey is not stopped). Iterating yields each event as a
    dict (parsed JSON, library events included) and ends when the stream is
    closed; :meth:`next_event` gives :class:`Event` objects with a timeout.
    """

    # On the main thread a wait is made of slices this long, so that Ctrl-C
    # (which Python handles between bytecodes of the main thread) gets
    # through; other threads wait in one call. close() does not depend on
    # it: binance_user_stream_shutdown wakes every waiting reader at once.
    _MAIN_THREAD_SLICE_MS = 200
    _MAX_WAIT_MS = 0xFFFFFFFF

    def __init__(self, client: Client) -> None:
        self._handle: Optional[int] = None
        # Readers in binance_user_stream_next, counted: the stream is freed
        # only after they left (the header's "shut down, join, close").
        self._cond = threading.Condition()
        self._readers = 0
        out = c_void_p()
        _call(_lib().binance_user_stream_open, client._live(), byref(out))
        self._handle = out.value
        self._client: Optional[Client] = client  # the client outlives the stream
        client._streams.add(self)

    def _enter(self) -> int:
        with self._cond:
            if not self._handle:
                raise _error(STREAM_CLOSED, "the stream is closed")
            self._readers += 1
            return self._handle

    def _leave(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting up to ``timeout`` seconds (``None``: until
        one comes; 0: just look). ``None`` when nothing came in time. Raises
        :class:`StreamClosed` once the stream is closed (at once, for a
        reader waiting when another thread closes it)."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must not be negative")
        lib = _lib()
        deadline = None if timeout is None else time.monotonic() + timeout
        on_main = threading.current_thread() is threading.main_thread()
        while True:
            wait_ms = self._MAIN_THREAD_SLICE_MS if on_main else self._MAX_WAIT_MS
            if deadline is not None:
                wait_ms = min(wait_ms, max(0, int((deadline - time.monotonic()) * 1000)))
            handle = self._enter()
            out = c_void_p()
            err = c_void_p()
            try:
                status = lib.binance_user_stream_next(handle, wait_ms, byref(out), byref(err))
            finally:
                self._leave()
            if status == OK and out.value is not None:
                return Event(out.value)
            if status != TIMEOUT:
                raise _take_error(status, err)
            lib.binance_error_free(err)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def events(self, idle_timeout: Optional[float] = None) -> Iterator[Event]:
        """Yields :class:`Event` objects until the stream is closed or, with
        ``idle_timeout`` (seconds), until none comes in that time."""
        while True:
            try:
                event = self.next_event(idle_timeout)
            except StreamClosed:
                return
            if event is None:
                return
            yield event

    def __iter__(self) -> "Iterator[AnyEvent]":
        """Yields each event as a dict (see :attr:`Event.data`) until the
        stream is closed."""
        for event in self.events():
            data = event.data
            event.close()
            yield data

    def health(self) -> StreamHealth:
        """A snapshot of the stream's health. Does not block."""
        handle = self._enter()
        try:
            return _health_of(handle)
        finally:
            self._leave()

    @property
    def closed(self) -> bool:
        return not self._handle

    def close(self) -> None:
        """Closes the stream: its connection and timers are gone when this
        returns; queued events are discarded. Any thread may call it:
        threads waiting for events stop at once (their iteration ends,
        :meth:`next_event` raises :class:`StreamClosed`). The listenKey is
        not stopped (see :meth:`Client.listen_key_stop`)."""
        with self._cond:
            handle, self._handle = self._handle, None
            if handle:
                # Wake the readers, let them leave, then free the stream.
                _lib().binance_user_stream_shutdown(handle)
            self._cond.wait_for(lambda: self._readers == 0)
            if handle:
                _lib().binance_user_stream_close(handle)
            self._client = None

    def __enter__(self) -> "UserStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<binance_uds.UserStream {'closed' if self.closed else 'open'}>"
