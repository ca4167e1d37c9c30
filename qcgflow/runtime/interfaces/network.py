"""The network interface: a ZeroMQ ROUTER socket answering the same JSON requests as files.

::

    client REQ ──[id, "", JSON request]──> ROUTER socket (EventLoop reader)
                                             └─> RequestHandler.handle
           <──[id, "", JSON reply]───────────────────┘

Guarantees (issue 17, "one peer stalls everyone"):

* **Per-peer framing.** A ROUTER socket keeps one queue per connection and delivers a
  message only once all its frames arrived, so a peer that sends half a message (or
  garbage that parses as one) and stays connected holds up nobody but itself. (A REP
  socket has one request/reply state for all peers: such a peer froze it.) REQ clients,
  upstream's included, see no difference: the envelope (routing id + empty delimiter) is
  sent back unchanged. DEALER clients that send ``[body]`` without a delimiter are served
  too.
* **One request, one reply.** A message whose body is not exactly one frame is answered
  once with ``Invalid request: ...`` (it used to be run as several requests with one
  reply and a ZMQ state error).
* **Every failure path replies.** Undecodable JSON, JSON nested deeper than
  ``limits.MAX_DEPTH``, a handler bug, a reply that cannot be serialized: each gets a
  one-line error reply; the loop never stops serving. Replies are sent without blocking:
  a peer that does not read its replies loses them (``ROUTER`` drops at the high-water
  mark) instead of stalling the service.
* A message over ``protocol.MAX_REQUEST_BYTES`` (32 MiB) drops the sender's connection
  before it is buffered (ZMQ_MAXMSGSIZE); the sender gets no reply, our clients refuse to
  send one, and the others go on being served.

Where the socket binds is decided by the service (``endpoints.py``): by default an
``ipc://`` socket in an owner-only directory; TCP always with CURVE (``security.py``).
"""

import json
import logging
from typing import Callable, List, Optional

import zmq

from ..limits import RequestTooDeep, check_depth
from ..protocol import MAX_REQUEST_BYTES

_log = logging.getLogger(__name__)

DEFAULT_PORT_MIN = 2222   # upstream's default range for a port picked at random
DEFAULT_PORT_MAX = 9999
_BATCH = 64  # messages handled per wake-up before other loop work gets a turn


def bind(socket: "zmq.Socket", host: str, port: Optional[int], port_min: Optional[int],
         port_max: Optional[int]) -> str:
    """Bind to ``host`` on ``port`` or a free port of the range; returns the endpoint.

    Raises:
        zmq.ZMQError: the port is taken or the address is not local.
    """
    if port:
        socket.bind("tcp://%s:%d" % (host, port))
    else:
        socket.bind_to_random_port("tcp://%s" % host, min_port=port_min or DEFAULT_PORT_MIN,
                                   max_port=(port_max or DEFAULT_PORT_MAX) + 1, max_tries=200)
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def split_envelope(frames: List[bytes]):
    """``(envelope, body frames)`` of a message received on a ROUTER socket.

    A REQ peer (directly or through proxies) sends ``[id..., b"", body]``: the envelope is
    everything up to and including the first empty frame. A DEALER peer without a
    delimiter sends ``[id, body...]``: the envelope is the routing id alone.
    """
    for index in range(1, len(frames)):
        if not frames[index]:
            return frames[:index + 1], frames[index + 1:]
    return frames[:1], frames[1:]


def decode_request(body: List[bytes]):
    """The decoded request of a message body, or an error reply (a dict with ``code``).

    Returns ``(request, None)`` or ``(None, reply)``.
    """
    if len(body) != 1:
        return None, {"code": -1, "message": "Invalid request: one message part expected, "
                                             "got %d" % len(body)}
    try:
        request = json.loads(body[0])
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the decoder's recursion limit
        return None, {"code": -1, "message": "Invalid request"}
    try:
        check_depth(request)
    except RequestTooDeep as exc:
        return None, {"code": -1, "message": str(exc)}
    return request, None


class NetworkInterface:
    """Serves requests from a ROUTER socket inside the service's event loop."""

    def __init__(self, loop, context: "zmq.Context", handle: Callable[[object], dict]):
        self._loop = loop
        self._handle = handle
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self.address: Optional[str] = None
        self.served = 0

    def start(self, host: str, port, port_min, port_max) -> str:
        """Bind TCP (``host``, a port) and start serving; returns the endpoint."""
        return self.start_endpoint(None, lambda: bind(self.socket, host, port, port_min,
                                                      port_max))

    def start_endpoint(self, endpoint: Optional[str], binder=None) -> str:
        """Bind ``endpoint`` (e.g. ``ipc://...``) or call ``binder``; start serving."""
        if binder is None:
            self.socket.bind(endpoint)
            self.address = endpoint
        else:
            self.address = binder()
        self._loop.add_reader(self.socket, self._on_readable)
        _log.info("network interface listening on %s", self.address)
        return self.address

    def _on_readable(self) -> None:
        for _ in range(_BATCH):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._serve(frames)
        # More may be waiting: the loop's poller is level-triggered for ZeroMQ sockets and
        # comes back here after its other work (timers, finished tasks) had a turn.

    def _serve(self, frames: List[bytes]) -> None:
        envelope, body = split_envelope(frames)
        request, reply = decode_request(body)
        if reply is not None:
            _log.warning("malformed request on the network interface: %s (%d bytes)",
                         reply["message"], sum(len(f) for f in body))
        else:
            reply = self._answer(request)
        try:
            payload = json.dumps(reply).encode()
        except (TypeError, ValueError, RecursionError):
            _log.error("cannot serialize the reply to a %s request",
                       _request_name(request))
            payload = b'{"code": -1, "message": "Internal error: the reply cannot be sent"}'
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("request %r -> %r", body[0][:200] if body else b"", payload[:200])
        try:
            self.socket.send_multipart(envelope + [payload], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or not reading: its loss only
            _log.debug("reply dropped: %s", exc)
        self.served += 1

    def _answer(self, request) -> dict:
        try:
            return self._handle(request)
        except Exception as exc:  # noqa: BLE001 -- the handler's own guard failed
            _log.error("internal error while handling a %s request: %s",
                       _request_name(request), type(exc).__name__)
            return {"code": -1, "message": "Internal error while handling the request "
                                           "(see service.log)"}

    def close(self) -> None:
        self._loop.remove_reader(self.socket)
        self.socket.close(linger=0)


def _request_name(request) -> str:
    if isinstance(request, dict) and isinstance(request.get("request"), str):
        return "%.40r" % request["request"]
    return "malformed"
