"""Low-level client of a running service: one request at a time, and status events.

::

    ServiceClient(address) ──REQ──> service REP      request(dict) -> reply "data"
          │                                          (code != 0 -> ServiceError(message))
          └── subscribe(topics) ──SUB──> service PUB  EventStream.next(timeout) -> Event

Every call is bounded: a request that gets no reply within its timeout raises
``ServiceTimeout`` and the REQ socket is replaced (a REQ socket whose request went
unanswered can neither send nor receive again). A client owns its ZeroMQ context; ``close``
(or leaving a ``with`` block) releases everything at once (LINGER 0 everywhere).

Security: on loopback there is no authentication. A service that binds another interface
requires ZeroMQ CURVE; its keys live in ``<aux_dir>/keys`` (``server.key``, ``client.key``,
``client.key_secret``). Pass that directory as ``keys_dir`` (or set ``QCGFLOW_KEYS_DIR``,
which is used for non-loopback addresses only).

Exceptions (all ``ClientError``)::

    ClientError
     +-- ServiceError        the service answered with an error (str = the service's message)
     +-- ServiceTimeout      no reply within the timeout (service dead, stopped or unreachable)
     +-- ServiceUnavailable  the client cannot talk to the service at all (closed client,
     |                       missing keys, service process gone)
     +-- ProtocolError       the reply is not a valid service reply

A request over ``protocol.MAX_REQUEST_BYTES`` (32 MiB) is refused with a plain
``ClientError`` before it is sent: the service would drop it without a reply.
"""

import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Union

import zmq

from ..security import is_loopback, monitor_event  # noqa: F401 (is_loopback: public)

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
KEYS_DIR_ENV = "QCGFLOW_KEYS_DIR"

TOPIC_ITERATION_STATUS = "IST"
TOPIC_ITERATION_FINISHED = "IFI"
TOPIC_JOB_STATUS = "JST"
TOPIC_JOB_FINISHED = "JFI"
TOPIC_NO_JOBS = "NOJ"
TOPICS = (TOPIC_ITERATION_STATUS, TOPIC_ITERATION_FINISHED, TOPIC_JOB_STATUS,
          TOPIC_JOB_FINISHED, TOPIC_NO_JOBS)
FINISH_TOPICS = (TOPIC_JOB_FINISHED, TOPIC_ITERATION_FINISHED)

_LIVENESS_SLICE = 0.05  # how often a pending request checks that the service still lives


# --------------------------------------------------------------------------- errors

class ClientError(Exception):
    """Base of everything the client raises."""


class ServiceError(ClientError):
    """The service replied with a non-zero code; ``str(exc)`` is the service's message."""

    def __init__(self, message: str, code: int = -1, request: Optional[dict] = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.request = request


class ServiceTimeout(ClientError):
    """No reply (or no connection) within the timeout."""


class ServiceUnavailable(ClientError):
    """The service cannot be reached: client closed, keys missing, service process gone."""


class ProtocolError(ClientError):
    """The service sent something that is not a valid reply."""


# --------------------------------------------------------------------------- events

@dataclass(frozen=True)
class Event:
    """One published status change: ``topic`` (IST, IFI, JST, JFI, NOJ) and its data."""

    topic: str
    data: dict = field(default_factory=dict)

    @property
    def job(self) -> Optional[str]:
        return self.data.get("job")

    @property
    def iteration(self) -> Optional[int]:
        return self.data.get("it")

    @property
    def state(self) -> Optional[str]:
        return self.data.get("state")

    @property
    def name(self) -> Optional[str]:
        """``job`` or ``job:it`` for iteration events (the name jobStatus accepts)."""
        if self.job is None:
            return None
        return self.job if self.iteration is None else "%s:%s" % (self.job, self.iteration)

    @property
    def finished(self) -> bool:
        """A job or an iteration reached a final state."""
        return self.topic in FINISH_TOPICS

    @staticmethod
    def decode(message: str) -> "Event":
        topic, _, payload = message.partition(" ")
        if topic not in TOPICS:
            raise ProtocolError("unknown event topic %r" % topic[:20])
        try:
            data = json.loads(payload) if payload else {}
        except ValueError as exc:
            raise ProtocolError("malformed %s event: %s" % (topic, exc)) from None
        if not isinstance(data, dict):
            raise ProtocolError("malformed %s event: data is not an object" % topic)
        return Event(topic, data)


# --------------------------------------------------------------------------- security

@dataclass(frozen=True)
class CurveKeys:
    """The keys a client needs to talk to a CURVE-protected service (z85 text, bytes)."""

    server_public: bytes
    client_public: bytes
    client_secret: bytes

    def apply(self, socket: "zmq.Socket") -> None:
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.client_public
        socket.curve_secretkey = self.client_secret


_CERT_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]+)"', re.MULTILINE)


def _read_key(path: str, kind: str) -> bytes:
    """A z85 key from ``path``: plain text, or a ZeroMQ certificate (``kind-key = "..."``)."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read()
    except OSError as exc:
        raise ServiceUnavailable("cannot read the %s key %s: %s" % (kind, path, exc.strerror)) \
            from None
    except UnicodeDecodeError:
        raise ServiceUnavailable("the %s key %s is not z85 text" % (kind, path)) from None
    found = {k: v for k, v in _CERT_LINE.findall(text)}
    key = found.get(kind) or (text.strip() if not found else "")
    if len(key) != 40:
        raise ServiceUnavailable("the %s key %s is not a 40-character z85 key" % (kind, path))
    return key.encode("ascii")


def load_curve_keys(keys_dir: str) -> CurveKeys:
    """Read ``server.key``, ``client.key`` and ``client.key_secret`` from ``keys_dir``."""
    if not zmq.has("curve"):
        raise ServiceUnavailable("this ZeroMQ library has no CURVE support: cannot talk to a "
                                 "service that requires authentication")
    return CurveKeys(server_public=_read_key(os.path.join(keys_dir, "server.key"), "public"),
                     client_public=_read_key(os.path.join(keys_dir, "client.key"), "public"),
                     client_secret=_read_key(os.path.join(keys_dir, "client.key_secret"),
                                             "secret"))


def resolve_keys(address: str, keys_dir: Optional[str]) -> Optional[CurveKeys]:
    """The CURVE keys to use for ``address``: explicit ``keys_dir`` always wins; otherwise
    a non-loopback address needs ``$QCGFLOW_KEYS_DIR``, a TCP loopback one uses it when it
    is set (our service makes every TCP endpoint CURVE and gives its tasks that variable),
    and ipc/inproc use none."""
    if keys_dir:
        return load_curve_keys(keys_dir)
    env_dir = os.environ.get(KEYS_DIR_ENV)
    if is_loopback(address):
        tcp = address.startswith("tcp://")
        return load_curve_keys(env_dir) if (tcp and env_dir) else None
    if env_dir:
        return load_curve_keys(env_dir)
    raise ServiceUnavailable(
        "%s is not a loopback address: the service authenticates clients there with ZeroMQ "
        "CURVE. The client keys are expected in the service's <wd>/.qcgpjm-service-<id>/keys "
        "directory (server.key, client.key, client.key_secret): pass it as keys_dir "
        "(Manager(address, cfg={'keys_dir': DIR})) or set %s." % (address, KEYS_DIR_ENV))


# --------------------------------------------------------------------------- requests

_SMALL_REQUEST = 1 << 20  # below this no size check (and no import of protocol) is needed


def _check_size(payload: bytes, name) -> None:
    """Refuse what the service would drop unanswered (its ZMQ_MAXMSGSIZE)."""
    from ..protocol import MAX_REQUEST_BYTES
    if len(payload) > MAX_REQUEST_BYTES:
        raise ClientError("the %r request is %d bytes, over the service's limit of %d bytes: "
                          "send it in smaller parts (e.g. fewer jobs per submit)"
                          % (name, len(payload), MAX_REQUEST_BYTES))


def _decode_reply(raw: bytes) -> dict:
    try:
        reply = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("the service sent a reply that is not JSON: %.100r" % raw) from None
    if not isinstance(reply, dict) or not isinstance(reply.get("code"), int):
        raise ProtocolError("the service sent a reply without a code: %.100r" % raw)
    return reply


class ServiceClient:
    """A connection to one service (REQ socket) plus any number of event streams.

    ``liveness`` (optional) is called while waiting for a reply; when it returns a
    message the wait ends at once with ``ServiceUnavailable(message)`` (used by a local
    manager that knows its service process has exited). Safe to share between threads:
    requests are serialised.
    """

    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT,
                 keys_dir: Optional[str] = None,
                 liveness: Optional[Callable[[], Optional[str]]] = None):
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.address = address
        self.timeout = float(timeout)
        self.keys_dir = keys_dir
        self._keys = resolve_keys(address, keys_dir)
        self._liveness = liveness
        self._context: Optional[zmq.Context] = zmq.Context()
        self._socket: Optional[zmq.Socket] = None
        self._lock = threading.Lock()
        self._streams: List["EventStream"] = []

    @property
    def secure(self) -> bool:
        return self._keys is not None

    @property
    def closed(self) -> bool:
        return self._context is None

    # ------------------------------------------------------------------ requests
    def request(self, message: dict, timeout: Optional[float] = None) -> Optional[dict]:
        """Send ``message``; return the reply's ``data`` (None when it has none).

        Raises:
            ServiceError: the service answered with a non-zero code.
            ServiceTimeout: no reply within ``timeout`` (default: the client's timeout).
            ServiceUnavailable, ProtocolError: see the module docstring.
        """
        reply = self.request_reply(message, timeout)
        return reply.get("data")

    def request_reply(self, message: dict, timeout: Optional[float] = None) -> dict:
        """Like ``request`` but return the whole reply (code, message, data)."""
        reply = self.exchange(message, timeout)
        if reply["code"] != 0:
            text = reply.get("message") or "request %r failed (code %s)" % (
                message.get("request"), reply["code"])
            raise ServiceError(str(text), reply["code"], message)
        return reply

    def exchange(self, message: dict, timeout: Optional[float] = None) -> dict:
        """Send ``message`` and return the reply as it is (no check of its code)."""
        payload = json.dumps(message).encode()
        if len(payload) > _SMALL_REQUEST:
            _check_size(payload, message.get("request"))
        wait = self.timeout if timeout is None else float(timeout)
        with self._lock:
            if self._context is None:
                raise ServiceUnavailable("the client of %s is closed" % self.address)
            return _decode_reply(self._send_recv(payload, wait, message.get("request")))

    def _req_socket(self) -> "zmq.Socket":
        if self._socket is None:
            sock = self._context.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            if self._keys is not None:
                self._keys.apply(sock)
            sock.connect(self.address)
            self._socket = sock
        return self._socket

    def _drop_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _send_recv(self, payload: bytes, timeout: float, name) -> bytes:
        deadline = time.monotonic() + timeout
        sock = self._req_socket()
        millis = max(1, int(timeout * 1000))
        sock.setsockopt(zmq.SNDTIMEO, millis)
        sock.setsockopt(zmq.RCVTIMEO, millis)
        completed = False
        try:
            try:
                sock.send(payload)
            except zmq.Again:
                raise self._timeout(name, timeout) from None
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout(name, timeout)
                step = min(left, _LIVENESS_SLICE) if self._liveness else left
                if sock.poll(max(1, int(step * 1000)), zmq.POLLIN):
                    raw = sock.recv()
                    completed = True
                    return raw
                if self._liveness is not None:
                    dead = self._liveness()
                    if dead:
                        raise ServiceUnavailable(dead)
        finally:
            if not completed:  # the REQ socket is stuck without its reply: start afresh
                self._drop_socket()

    def _timeout(self, name, timeout: float) -> ServiceTimeout:
        hint = (" (or the CURVE keys in %s are not the ones it accepts)" % self.keys_dir
                if self._keys is not None else "")
        return ServiceTimeout("no reply from the service at %s to the %r request within %.3g s: "
                              "it is not running or not reachable%s"
                              % (self.address, name, timeout, hint))

    # ------------------------------------------------------------------ events
    def subscribe(self, topics: Union[str, Iterable[str]] = ("",),
                  address: Optional[str] = None, wait: Optional[float] = 1.0) -> "EventStream":
        """A stream of status events whose topic starts with one of ``topics``.

        ``address`` is the publisher's address (default: asked with a ``status`` request).
        The call waits up to ``wait`` seconds for the connection to be established, so that
        events published after it returns reach the stream.
        """
        if self._context is None:
            raise ServiceUnavailable("the client of %s is closed" % self.address)
        if address is None:
            system = (self.request({"request": "status"}) or {}).get("System", {})
            address = system.get("StatusPublisher")
            if not address:
                raise ServiceUnavailable("the service at %s publishes no status events "
                                         "(started with --disable-pub?)" % self.address)
        if isinstance(topics, str):
            topics = (topics,)
        keys = self._keys if self._keys is not None else (
            None if is_loopback(address) else resolve_keys(address, None))
        stream = EventStream(self._context, address, tuple(topics), keys, wait)
        with self._lock:
            self._streams = [s for s in self._streams if not s.closed] + [stream]
        return stream

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close every socket and the context; later calls raise ServiceUnavailable."""
        with self._lock:
            if self._context is None:
                return
            self._drop_socket()
            for stream in self._streams:
                stream.close()
            self._streams.clear()
            self._context.term()
            self._context = None

    def __enter__(self) -> "ServiceClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return "ServiceClient(%r%s%s)" % (self.address, ", secure" if self.secure else "",
                                          ", closed" if self.closed else "")


class EventStream:
    """A SUB socket on the status publisher; use from one thread at a time."""

    def __init__(self, context: "zmq.Context", address: str, topics: Sequence[str],
                 keys: Optional[CurveKeys], wait: Optional[float]):
        self.address = address
        self.topics = tuple(topics)
        self._socket: Optional[zmq.Socket] = context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys.apply(self._socket)
        for topic in self.topics:
            self._socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        self.connected = False
        # a pipe lets another thread interrupt a waiting next() (see wakeup)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        if wait:
            self._connect_and_wait(wait)
        else:
            self._socket.connect(address)

    def _connect_and_wait(self, wait: float) -> None:
        """Connect and wait (bounded) for the handshake: the subscription is then sent."""
        monitor = self._socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        try:
            self._socket.connect(self.address)
            deadline = time.monotonic() + wait
            while not self.connected:
                left = deadline - time.monotonic()
                if left <= 0 or not monitor.poll(max(1, int(left * 1000))):
                    _log.debug("publisher %s: no handshake within %.3g s", self.address, wait)
                    break
                event = monitor_event(monitor)[0]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.connected = True
                else:
                    _log.warning("publisher %s refused the handshake (event %s)",
                                 self.address, event)
                    break
        finally:
            self._socket.disable_monitor()
            monitor.close(linger=0)

    @property
    def closed(self) -> bool:
        return self._socket is None

    def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; None when ``timeout`` seconds pass first (None: no limit) or when
        another thread called ``wakeup``. Malformed messages are skipped (and logged)."""
        if self._socket is None:
            raise ServiceUnavailable("the event stream of %s is closed" % self.address)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:  # an event already queued is returned without a poll
                raw = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                if deadline is None:
                    ready = dict(self._poller.poll(None))
                else:
                    left = max(0.0, deadline - time.monotonic())
                    ready = dict(self._poller.poll(int(math.ceil(left * 1000))))
                if self._wake_r in ready:
                    self._clear_wakeups()
                    return None
                if not ready:
                    return None
                continue
            try:
                return Event.decode(raw.decode("utf-8", "replace"))
            except ProtocolError as exc:
                _log.warning("ignored a status event: %s", exc)

    def wakeup(self) -> None:
        """Make a ``next`` waiting in another thread return None now (thread-safe)."""
        if self._socket is None:
            return
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass

    def _clear_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def drain(self) -> List[Event]:
        """Every event already received, without waiting."""
        events = []
        while True:
            event = self.next(0)
            if event is None:
                return events
            events.append(event)

    def close(self) -> None:
        if self._socket is not None:
            self._poller.unregister(self._socket)
            self._socket.close(linger=0)
            self._socket = None
            os.close(self._wake_r)
            os.close(self._wake_w)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
