"""Authentication of the network sockets (ZeroMQ CURVE) off loopback.

Model: a service bound to 127.0.0.1 (the default) is reachable only from this host and
uses no authentication, like any local process. When it binds another address, both the
request and the publisher sockets become CURVE servers:

* at start the service generates a server key pair and one client key pair, and writes
  them to ``<aux_dir>/keys/`` (directory 0700, secret files 0600):
  ``server.key`` (public), ``client.key`` and ``client.key_secret``;
* only a client presenting that client public key is accepted; anybody else is refused by
  the ZAP handler, and the refusal is logged with the peer address;
* so whoever can read the service's working directory (its owner) can connect, and
  nobody else can, even on the same network. Traffic is encrypted.

The keys are new for every service start and never leave the working directory.
"""

import logging
import os
import ipaddress
import struct
from typing import Optional, Tuple

import zmq
import zmq.utils.z85

_log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def is_loopback(where: str) -> bool:
    """Whether ``where`` stays on this host: a host (127.0.0.0/8, ::1, ``localhost``,
    ``ip6-localhost``) or an endpoint (``tcp://`` on such a host, ``ipc://``, ``inproc://``).
    The one test of it, for the service's binds and the client's need of CURVE keys."""
    proto, sep, rest = where.partition("://")
    if sep:
        if proto in ("ipc", "inproc"):
            return True
        # tcp://host:port, tcp://[v6]:port; a bare v6 host has several colons
        host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 or rest.startswith("[") \
            else rest
    else:
        host = where
    host = host.strip("[]")
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_keys(keys_dir: str) -> Tuple[bytes, bytes, bytes]:
    """Create the key files; returns (server public, server secret, client public)."""
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    _write(os.path.join(keys_dir, "server.key"), server_public, 0o644)
    _write(os.path.join(keys_dir, "client.key"), client_public, 0o600)
    _write(os.path.join(keys_dir, "client.key_secret"), client_secret, 0o600)
    return server_public, server_secret, client_public


def _write(path: str, key: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    os.chmod(path, mode)


def make_curve_server(socket: "zmq.Socket", server_secret: bytes) -> None:
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_SECRETKEY, server_secret)
    socket.setsockopt(zmq.ZAP_DOMAIN, b"qcgflow")


class ZapHandler:
    """Answers ZeroMQ's authentication requests inside the service's event loop."""

    def __init__(self, loop, context: "zmq.Context", allowed_client: bytes):
        self._loop = loop
        self._allowed = zmq.utils.z85.decode(allowed_client)
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        loop.add_reader(self.socket, self._on_request)
        self.refused = 0

    def _on_request(self) -> None:
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.socket.send_multipart(self._answer(frames))

    def _answer(self, frames) -> list:
        version, request_id = frames[0], frames[1]
        address = frames[3].decode(errors="replace") if len(frames) > 3 else "?"
        mechanism = frames[5] if len(frames) > 5 else b""
        key: Optional[bytes] = frames[6] if len(frames) > 6 else None
        if mechanism == b"CURVE" and key == self._allowed:
            return [version, request_id, b"200", b"OK", b"client", b""]
        self.refused += 1
        _log.warning("refused an unauthenticated connection from %s (mechanism %s)", address,
                     mechanism.decode(errors="replace") or "none")
        return [version, request_id, b"400", b"not authorized", b"", b""]

    def close(self) -> None:
        self._loop.remove_reader(self.socket)
        self.socket.close(linger=0)


_HANDSHAKE_FAILURES = (getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0)
                       | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
                       | getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0))


def monitor_event(monitor: "zmq.Socket", flags: int = 0) -> Tuple[int, int]:
    """``(event, value)`` of the next message of a ZeroMQ monitor socket (``flags``:
    ``zmq.NOBLOCK`` raises ``zmq.Again`` when there is none). Its first frame packs the
    event as a 16-bit and the value as a 32-bit native integer (zmq_socket_monitor(3));
    not ``zmq.utils.monitor``, which imports asyncio (~25 ms of every program's start)."""
    frames = monitor.recv_multipart(flags)
    return struct.unpack("=hi", frames[0][:6])


class HandshakeWatcher:
    """Logs failed handshakes on a CURVE socket: a peer without CURVE (or with the wrong
    server key) never reaches the ZAP handler, so its refusal is seen here."""

    def __init__(self, loop, socket: "zmq.Socket", name: str):
        self._loop = loop
        self._name = name
        self.monitor = socket.get_monitor_socket(events=_HANDSHAKE_FAILURES)
        loop.add_reader(self.monitor, self._on_event)

    def _on_event(self) -> None:
        while True:
            try:
                _, value = monitor_event(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            _log.warning("refused an unauthenticated connection on the %s socket (handshake "
                         "failed, code %s)", self._name, value)

    def close(self) -> None:
        self._loop.remove_reader(self.monitor)
        self.monitor.close(linger=0)
