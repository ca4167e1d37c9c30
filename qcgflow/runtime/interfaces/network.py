"""The network interface: a ZeroMQ REP socket answering the same JSON requests as files.

::

    client REQ ──JSON request──> REP socket (EventLoop reader) ──> RequestHandler.handle
           <──JSON reply──────────────────────────────────────────────┘

Sockets bind to 127.0.0.1 unless another address is given; off loopback they require
CURVE authentication (see ``security.py``). A malformed message gets an error reply
(``Invalid request``), never a dropped connection, so a REQ client is never left waiting.
The exception is a message over ``protocol.MAX_REQUEST_BYTES`` (32 MiB): ZeroMQ drops
that connection before the message is buffered (the sender gets no reply; our clients
refuse to send such a message) and the service goes on serving the others.
"""

import json
import logging
from typing import Callable, Optional

import zmq

from ..protocol import MAX_REQUEST_BYTES

_log = logging.getLogger(__name__)

DEFAULT_PORT_MIN = 2222   # upstream's default range for a port picked at random
DEFAULT_PORT_MAX = 9999


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


class NetworkInterface:
    """Serves requests from a REP socket inside the service's event loop."""

    def __init__(self, loop, context: "zmq.Context", handle: Callable[[object], dict]):
        self._loop = loop
        self._handle = handle
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self.address: Optional[str] = None

    def start(self, host: str, port, port_min, port_max) -> str:
        self.address = bind(self.socket, host, port, port_min, port_max)
        self._loop.add_reader(self.socket, self._on_readable)
        _log.info("network interface listening on %s", self.address)
        return self.address

    def _on_readable(self) -> None:
        # A REP socket delivers one request at a time; answer all that are waiting.
        while True:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                request = json.loads(message)
            except (ValueError, UnicodeDecodeError, RecursionError):
                # RecursionError: JSON nested deeper than the decoder's recursion limit
                _log.warning("malformed request on the network interface: %.200r", message)
                reply = {"code": -1, "message": "Invalid request"}
            else:
                reply = self._handle(request)
                _log.debug("request %.200s -> %.200s", message, reply)
            self.socket.send(json.dumps(reply).encode())

    def close(self) -> None:
        self._loop.remove_reader(self.socket)
        self.socket.close(linger=0)
