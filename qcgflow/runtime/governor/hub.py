"""The governor's ROUTER socket: manager registration, heartbeats and loss detection.

::

    manager DEALER --register--> Hub._register: token, version, unique id -> welcome | refused
                   --beat/states--> last_seen updated; states -> on_events(record, events)
    Hub._tick (every ``heartbeat`` s): beat to every manager; silence > ``timeout`` -> lost

Guarantees: ``on_up(record)`` once per accepted registration, ``on_lost(record, why)`` at most
once per registration (silence, or the manager said goodbye); messages from a peer that is
not registered are answered with ``refused`` and otherwise ignored. A refusal is logged
with its reason on both sides.
"""

import logging
import os
import secrets as _secrets
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import zmq

from ..interfaces.network import bind
from ..security import HandshakeWatcher, ZapHandler, is_loopback, make_curve_server, write_keys
from .messages import PROTOCOL_VERSION, decode, encode

_log = logging.getLogger(__name__)

TOKEN_FILE = "token"


@dataclass
class ManagerRecord:
    """One registered manager as the governor sees it."""

    manager_id: str
    identity: bytes
    tags: Tuple[str, ...]
    nodes: Tuple[Tuple[str, int], ...]
    host: str
    pid: int
    aux_dir: Optional[str]
    address: Optional[str]
    registered_at: float
    last_seen: float
    state: str = "up"          # up | lost | finished
    lost_reason: Optional[str] = None
    dispatched: int = 0
    ended: int = 0
    reserved: int = 0          # cores kept for the manager itself (--system-core)

    @property
    def cores(self) -> int:
        return sum(count for _, count in self.nodes)

    def describe(self) -> dict:
        """The entry of the ``status`` reply's ``Managers`` list."""
        return {"Id": self.manager_id, "Tags": list(self.tags), "State": self.state.upper(),
                "Host": self.host, "Pid": self.pid, "AuxDir": self.aux_dir,
                "Zmqaddress": self.address, "Nodes": len(self.nodes), "Cores": self.cores,
                "DispatchedUnits": self.dispatched, "EndedUnits": self.ended,
                **({"LostReason": self.lost_reason} if self.lost_reason else {})}


class Hub:
    """Accepts managers and carries messages to and from them (event loop thread only)."""

    def __init__(self, loop, secrets_dir: str, *, heartbeat: float,
                 timeout: float, on_up: Callable, on_events: Callable, on_lost: Callable):
        self._loop = loop
        # a context of its own: its ZAP handler (inproc, one per context) knows the
        # managers' key, not the clients' one
        self._context = zmq.Context()
        self._secrets_dir = secrets_dir
        self.heartbeat = heartbeat
        self.timeout = timeout
        self._on_up, self._on_events, self._on_lost = on_up, on_events, on_lost
        self.records: Dict[str, ManagerRecord] = {}  # every registration, lost ones too
        self._by_identity: Dict[bytes, ManagerRecord] = {}
        self.socket: Optional["zmq.Socket"] = None
        self.address: Optional[str] = None
        self._zap = None
        self._watcher = None
        self._timer = None
        self.token = _secrets.token_hex(16)
        self.refused = 0

    def start(self, host: str, port_min=None, port_max=None) -> str:
        """Write the token (and, off loopback, CURVE keys) and bind; returns the address."""
        os.makedirs(self._secrets_dir, mode=0o700, exist_ok=True)
        os.chmod(self._secrets_dir, 0o700)
        fd = os.open(os.path.join(self._secrets_dir, TOKEN_FILE),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.token + "\n")
        self.socket = self._context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 1000)  # the final ``finish`` must get out
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted manager takes over
        if not is_loopback(host):
            _, secret, client_public = write_keys(self._secrets_dir)
            make_curve_server(self.socket, secret)
            self._zap = ZapHandler(self._loop, self._context, client_public)
            self._watcher = HandshakeWatcher(self._loop, self.socket, "governor")
        self.address = bind(self.socket, host, None, port_min, port_max)
        self._loop.add_reader(self.socket, self._on_readable)
        self._timer = self._loop.call_later(self.heartbeat, self._tick)
        _log.info("governor endpoint for managers on %s (secrets in %s)", self.address,
                  self._secrets_dir)
        return self.address

    # ------------------------------------------------------------------ queries
    def live(self) -> List[ManagerRecord]:
        return [r for r in self.records.values() if r.state == "up"]

    # ------------------------------------------------------------------ sending
    def send(self, record: ManagerRecord, kind: str, **fields) -> None:
        try:
            self.socket.send_multipart([record.identity, encode(kind, **fields)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # a full queue or a peer gone: the heartbeat decides
            _log.warning("cannot send %s to manager %s: %s", kind, record.manager_id, exc)

    def finish_all(self) -> None:
        """Ask every live manager to finish (the governor is finishing)."""
        for record in self.live():
            self.send(record, "finish")
            record.state = "finished"

    # ------------------------------------------------------------------ receiving
    def _on_readable(self) -> None:
        while True:
            try:
                identity, raw = self.socket.recv_multipart(zmq.NOBLOCK)[:2]
            except zmq.Again:
                return
            except ValueError:
                continue  # not [identity, payload]: nothing a manager sends
            message = decode(raw)
            if message is None:
                _log.warning("ignored a malformed message on the governor endpoint")
                continue
            if message["op"] == "register":
                self._register(identity, message)
                continue
            record = self._by_identity.get(identity)
            if record is None or record.state != "up":
                self._refuse(identity, "not registered with this governor (register first)")
                continue
            record.last_seen = time.monotonic()
            if message["op"] == "states":
                events = message.get("events")
                if isinstance(events, list):
                    self._on_events(record, events)
            elif message["op"] == "bye":
                self._lose(record, "it stopped: %s" % message.get("reason", "no reason given"))

    def _register(self, identity: bytes, message: dict) -> None:
        reason = self._check(message)
        if reason is not None:
            _log.warning("refused manager %r: %s", message.get("id"), reason)
            self._refuse(identity, reason)
            return
        now = time.monotonic()
        nodes = tuple((str(name), int(count)) for name, count in message["nodes"])
        record = ManagerRecord(
            manager_id=message["id"], identity=identity, tags=tuple(message.get("tags") or ()),
            nodes=nodes, host=str(message.get("host", "?")), pid=int(message.get("pid", 0)),
            aux_dir=message.get("aux_dir"), address=message.get("address"),
            registered_at=now, last_seen=now, reserved=_count(message.get("reserved")))
        old = self._by_identity.pop(identity, None)
        if old is not None and old.state == "up":
            self._lose(old, "registered again")
        self.records[record.manager_id] = record
        self._by_identity[identity] = record
        self.send(record, "welcome", heartbeat=self.heartbeat, timeout=self.timeout)
        _log.info("manager %s registered from %s (pid %d, tags: %s): %d nodes, %d cores",
                  record.manager_id, record.host, record.pid, ",".join(record.tags) or "-",
                  len(nodes), record.cores)
        self._on_up(record)

    def _check(self, message: dict) -> Optional[str]:
        if message.get("token") != self.token:
            return "wrong token (use the token file of this governor's secrets directory)"
        if message.get("version") != PROTOCOL_VERSION:
            return ("protocol version %s, the governor speaks %d (run the same qcgflow "
                    "version everywhere)" % (message.get("version"), PROTOCOL_VERSION))
        manager_id = message.get("id")
        if not isinstance(manager_id, str) or not manager_id or "/" in manager_id:
            return "bad manager id %r (a non-empty string without '/')" % (manager_id,)
        known = self.records.get(manager_id)
        if known is not None and known.state == "up":
            return "manager id '%s' is already registered (give each manager its own --id)" \
                % manager_id
        nodes = message.get("nodes")
        try:
            if not nodes or any(int(count) < 1 for _, count in nodes):
                return "no resources reported"
        except (TypeError, ValueError):
            return "malformed resources %r" % (nodes,)
        return None

    def _refuse(self, identity: bytes, reason: str) -> None:
        self.refused += 1
        try:
            self.socket.send_multipart([identity, encode("refused", reason=reason)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # ------------------------------------------------------------------ liveness
    def _tick(self) -> None:
        now = time.monotonic()
        for record in self.live():
            silent = now - record.last_seen
            if silent > self.timeout:
                self._lose(record, "no message for %.1f s (heartbeat timeout %.1f s)"
                           % (silent, self.timeout))
            else:
                self.send(record, "beat")
        self._timer = self._loop.call_later(self.heartbeat, self._tick)

    def _lose(self, record: ManagerRecord, why: str) -> None:
        if record.state != "up":
            return
        record.state = "lost"
        record.lost_reason = why
        _log.error("manager %s lost: %s", record.manager_id, why)
        self._on_lost(record, why)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for part in (self._watcher, self._zap):
            if part is not None:
                part.close()
        if self.socket is not None:
            self._loop.remove_reader(self.socket)
            self.socket.close()
        self._context.term()


def _count(value) -> int:
    """A non-negative count from a registration (anything else: 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
