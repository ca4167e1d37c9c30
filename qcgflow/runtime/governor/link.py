"""A manager's link to its governor (``qcgflow service --parent ADDRESS``).

::

    ParentLink DEALER --register--> governor ROUTER
        <-- welcome: beat every ``heartbeat`` s from now on
        <-- submit jobs --> Manager.submit (one job at a time: a refused job fails alone)
        registry listener: EXECUTING / final of those jobs --> ``states`` (one per loop turn)
        <-- cancel names --> Manager.cancel;   <-- finish --> the service finishes
    silence of the governor for ``timeout`` s, or a refusal -> the service stops with the reason

The secrets directory (``--parent-secrets``, the governor's ``<aux>/governor-secrets``)
holds the token and, when the governor is not on loopback, its CURVE keys. Without it,
``directory.resolve`` finds it (and the endpoint, when ADDRESS is the governor's client
address, as upstream's managers are given) in the user's own governor entries.
"""

import logging
import os
import socket as _socket
import time
from typing import Callable, List, Optional

import zmq

from ..errors import RuntimeLayerError
from ..jobs import FINAL_STATES, JobState
from .directory import resolve
from .messages import PROTOCOL_VERSION, decode, encode

_log = logging.getLogger(__name__)

REGISTER_TIMEOUT = 60.0  # seconds to wait for the governor's welcome


def read_secret(secrets_dir: str, name: str) -> bytes:
    """A secret file's content, or a one-line error naming the file."""
    path = os.path.join(secrets_dir, name)
    try:
        with open(path, "rb") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise RuntimeLayerError("--parent-secrets: cannot read %s: %s"
                                % (path, exc.strerror or exc)) from exc


class ParentLink:
    """Registers the manager with its governor and serves the governor's requests."""

    def __init__(self, loop, manager, *, address: str, secrets_dir: str, manager_id: str,
                 tags, own_address: Optional[str], aux_dir: str,
                 on_finish: Callable[[], None], on_fail: Callable[[str], None],
                 reserved: int = 0):
        self._loop = loop
        self._manager = manager
        self._address = address
        self._on_finish = on_finish
        self._on_fail = on_fail
        self._id = manager_id
        token = read_secret(secrets_dir, "token").decode()
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.setsockopt(zmq.IDENTITY, manager_id.encode())
        if os.path.exists(os.path.join(secrets_dir, "server.key")):
            self.socket.curve_serverkey = read_secret(secrets_dir, "server.key")
            self.socket.curve_publickey = read_secret(secrets_dir, "client.key")
            self.socket.curve_secretkey = read_secret(secrets_dir, "client.key_secret")
        self._mine = set()  # names of the jobs the governor gave us, until they end
        self._events: List[list] = []
        self._flush_pending = False
        self._welcomed = False
        self._last_heard = time.monotonic()
        self._heartbeat = 1.0
        self._timeout = REGISTER_TIMEOUT
        self._timer = None
        self._closed = False
        self._register = dict(version=PROTOCOL_VERSION, token=token, id=manager_id,
                              tags=list(tags), host=_socket.gethostname(), pid=os.getpid(),
                              aux_dir=aux_dir, address=own_address,
                              nodes=[[name, len(cores)] for name, cores in manager.node_cores()],
                              reserved=reserved)  # --system-core cores (resourcesInfo counts)
        manager.add_listener(self._on_state)

    def start(self) -> None:
        """Connect and register (the answer arrives in the event loop).

        Raises:
            RuntimeLayerError: the address is not a ZeroMQ endpoint (one line, naming it).
        """
        try:
            self.socket.connect(self._address)
        except zmq.ZMQError as exc:
            self.close()
            raise RuntimeLayerError("--parent %s: not a usable address (%s; expected e.g. "
                                    "tcp://HOST:PORT from the governor's governor.address "
                                    "file)" % (self._address, exc)) from exc
        self._loop.add_reader(self.socket, self._on_readable)
        self._send("register", **self._register)
        _log.info("registering with the governor at %s as %s", self._address, self._id)
        self._timer = self._loop.call_later(1.0, self._tick)

    # ------------------------------------------------------------------ governor -> us
    def _on_readable(self) -> None:
        while not self._closed:
            try:
                raw = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            message = decode(raw)
            if message is None:
                _log.warning("ignored a malformed message from the governor")
                continue
            self._last_heard = time.monotonic()
            getattr(self, "_op_" + message["op"], self._op_unknown)(message)

    def _op_welcome(self, message: dict) -> None:
        self._welcomed = True
        self._heartbeat = float(message.get("heartbeat", 1.0))
        self._timeout = float(message.get("timeout", 10.0)) * 2  # the governor judges first
        _log.info("registered with the governor at %s (heartbeat %.1f s)", self._address,
                  self._heartbeat)

    def _op_refused(self, message: dict) -> None:
        self._fail("the governor at %s refused this manager: %s"
                   % (self._address, message.get("reason")))

    def _op_beat(self, message: dict) -> None:
        pass

    def _op_submit(self, message: dict) -> None:
        for raw in message.get("jobs") or ():
            name = raw.get("name") if isinstance(raw, dict) else None
            try:
                self._mine.add(name)
                self._manager.submit([raw])
            except RuntimeLayerError as exc:
                self._mine.discard(name)
                self._queue([name, JobState.FAILED.name, "refused by manager %s: %s"
                             % (self._id, exc), None])

    def _op_cancel(self, message: dict) -> None:
        for name in message.get("names") or ():
            if name in self._mine:
                try:
                    self._manager.cancel([name])
                except RuntimeLayerError as exc:
                    _log.warning("cannot cancel %s for the governor: %s", name, exc)

    def _op_finish(self, message: dict) -> None:
        _log.info("the governor asked this manager to finish")
        self._on_finish()

    def _op_unknown(self, message: dict) -> None:
        _log.warning("ignored an unknown message %r from the governor", message["op"])

    # ------------------------------------------------------------------ us -> governor
    def _on_state(self, job, position, state: JobState) -> None:
        if position is not None or job.name not in self._mine:
            return
        if state is JobState.EXECUTING:
            self._queue([job.name, state.name, None, None])
        elif state in FINAL_STATES:
            self._mine.discard(job.name)
            record = job.records.get(0) if job.iterative else job
            runtime = dict(record.runtime) if record is not None and record.runtime else None
            # a unit's own cause (its iteration's message), not "1 of 1 iterations failed"
            messages = (record.messages if record is not None else None) or job.messages
            self._queue([job.name, state.name, messages, runtime])

    def _queue(self, event: list) -> None:
        self._events.append(event)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        events, self._events = self._events, []
        if events:
            self._send("states", events=events)

    def _tick(self) -> None:
        silent = time.monotonic() - self._last_heard
        if silent > self._timeout:
            what = "heard nothing" if self._welcomed else "got no answer to the registration"
            self._fail("governor at %s lost: %s for %.0f s" % (self._address, what, silent))
            return
        if self._welcomed:
            self._send("beat")
        self._timer = self._loop.call_later(self._heartbeat, self._tick)

    def _send(self, kind: str, **fields) -> None:
        try:
            self.socket.send(encode(kind, **fields), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            _log.warning("cannot send %s to the governor: %s", kind, exc)

    def _fail(self, why: str) -> None:
        _log.error("%s", why)
        self._close_reader()
        self._on_fail(why)

    def _close_reader(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.socket)
            if self._timer is not None:
                self._timer.cancel()

    def close(self, reason: str = "finished") -> None:
        """Say goodbye (so the governor does not wait for a timeout) and close."""
        if not self._closed and self._welcomed:
            self._flush()
            self._send("bye", reason=reason)
        self._close_reader()
        self.socket.close(linger=300)  # the goodbye, not a wait for a governor that is gone
        self._context.term()


def attach_parent(service) -> ParentLink:
    """Create and start the link of a manager ``service`` (set up up to its network)."""
    config = service.config
    # upstream's flow: --parent <the governor's client address>, no secrets given
    address, secrets_dir = resolve(config.parent, config.parent_secrets)
    if address != config.parent:
        _log.info("--parent %s: the governor's endpoint for managers is %s (secrets in %s)",
                  config.parent, address, secrets_dir)
    info = getattr(service, "resources_info", None)
    link = ParentLink(service.loop, service.manager, address=address,
                      secrets_dir=secrets_dir, manager_id=service.service_id,
                      reserved=1 if getattr(info, "reserved_core", None) else 0,
                      tags=service.tags, own_address=service.address, aux_dir=service.aux_dir,
                      on_finish=service.finish, on_fail=service._fail_start)
    link.start()
    return link
