"""The manager's side of the node launcher agents (see ``agent.py`` for the agent).

::

    Executor --launch(ProcessSpec node=n2)--> AgentLauncher --launch msg--> agent on n2
        ^                                        |  ROUTER (CURVE + ZAP off loopback,
        |                                        |  a token always)
        '-- on_started / on_exit / on_error <----'  <-- started / exited / error
                                                 |
    starters: one `srun --overlap -w NODE` (or `ssh NODE`) process per node, watched with a
    pidfd: its end means the agent is gone. Agents also beat every second; silence for
    ``heartbeat_timeout`` seconds counts as lost too.

Guarantees: every ``launch`` ends in exactly one ``on_error`` or one ``on_started`` followed
by one ``on_exit``, also when the node's agent is lost (then ``ExitInfo.failure`` says
"agent on NODE lost: why"). ``on_node_up(node)`` is called when a node's agent is ready
(registered, welcomed, and has told which variables its node gives values of its own),
``on_node_lost(node, why)`` once when it is lost; a lost node takes no new work until its
agent registers again. All callbacks run in the event loop's thread.
"""

import json
import logging
import os
import secrets as _secrets
import shlex
import signal as _signal
import socket as _socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import zmq

from ..errors import InvalidRequest
from ..limits import check_depth
from ..security import ZapHandler, is_loopback, make_curve_server, write_keys
from .agent import HEARTBEAT, PROTOCOL_VERSION
from .local import ExitInfo, ProcessSpec, last_line

_log = logging.getLogger(__name__)

# "local" starts the agent as a child of the manager on this host: for tests and for
# running agent mode without Slurm.
START_METHODS = ("slurm", "ssh", "local")
# Sent with every launch even when equal to the manager's value: the agent's Slurm step may
# carry a node-local value of its own, which would otherwise win on that node.
_ALWAYS_SENT = ("CUDA_VISIBLE_DEVICES", "QCG_PM_GPUS")


@dataclass
class _Remote:
    """One launched task as the manager sees it."""

    task_id: int
    node: str
    on_started: Callable[[int], None]
    on_exit: Callable[[ExitInfo], None]
    on_error: Callable[[str], None]
    pid: Optional[int] = None
    started: float = 0.0


@dataclass
class _AgentState:
    node: str
    starter: Optional[subprocess.Popen] = None
    starter_fd: int = -1
    identity: Optional[bytes] = None      # ROUTER identity once registered
    last_seen: float = 0.0
    lost: bool = False
    ready: bool = False                   # welcomed and answered 'ready'
    terminating: Optional[int] = None     # the signal its node's step got (allocation end)
    pid: Optional[int] = None             # the agent's pid on its node
    tasks: Dict[int, _Remote] = field(default_factory=dict)


class AgentLauncher:
    """Starts tasks through per-node agents.

    Args:
        loop: the service's EventLoop.
        nodes: node names (Slurm node names) to start agents on.
        secrets_dir: directory (created 0700) for the token and, off loopback, CURVE keys.
        wd: the service's working directory (agents start there).
        base_env: the task environment every task starts from (sent once per agent).
        start_method: ``slurm`` (srun --overlap, default), ``ssh`` or ``local``.
        log_dir: where each agent's starter writes ``agent-NODE.log``.
        bind_host: address to listen on; default: the address of this host's name.
        heartbeat_timeout: seconds of silence after which a registered agent is lost.
    """

    def __init__(self, loop, nodes: Sequence[str], secrets_dir: str, wd: str,
                 base_env: Dict[str, str], *, start_method: str = "slurm",
                 log_dir: Optional[str] = None, bind_host: Optional[str] = None,
                 heartbeat_timeout: float = 10.0, python: str = sys.executable,
                 on_node_up: Callable[[str], None] = lambda node: None,
                 on_node_lost: Callable[[str, str], None] = lambda node, why: None,
                 on_node_terminating: Callable[[str, Optional[int]], None] =
                 lambda node, signum: None):
        if start_method not in START_METHODS:
            raise ValueError("unknown node launcher start method '%s' (use slurm or ssh)"
                             % start_method)
        self._loop = loop
        self._nodes = {node: _AgentState(node) for node in nodes}
        self._by_identity: Dict[bytes, _AgentState] = {}
        self._secrets_dir = secrets_dir
        self._wd = wd
        self._base_env = dict(base_env)
        self._start_method = start_method
        self._log_dir = log_dir or secrets_dir
        self._bind_host = bind_host or _host_address()
        self._heartbeat_timeout = heartbeat_timeout
        self._python = python
        self.on_node_up = on_node_up
        self.on_node_lost = on_node_lost
        self.on_node_terminating = on_node_terminating
        self._next_id = 0
        self._closing = False
        self._node_local_keys: set = set()  # variables some node's step gives its own value
        self._context = zmq.Context()
        self._zap: Optional[ZapHandler] = None
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.address: Optional[str] = None
        self._monitor_timer = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Listen, write the secrets and start one agent per node (returns at once)."""
        os.makedirs(self._secrets_dir, mode=0o700, exist_ok=True)
        os.chmod(self._secrets_dir, 0o700)
        token_path = os.path.join(self._secrets_dir, "token")
        self._token = _secrets.token_hex(16)
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self._token + "\n")
        if not is_loopback(self._bind_host):
            _, secret, client_public = write_keys(self._secrets_dir)
            self._zap = ZapHandler(self._loop, self._context, client_public)
            make_curve_server(self._socket, secret)
        port = self._socket.bind_to_random_port("tcp://%s" % self._bind_host)
        self.address = "tcp://%s:%d" % (self._bind_host, port)
        self._loop.add_reader(self._socket, self._receive)
        for state in self._nodes.values():
            self._start_agent(state)
        self._monitor_timer = self._loop.call_later(HEARTBEAT, self._monitor)
        _log.info("node launcher agents: listening on %s, starting %d agents with %s",
                  self.address, len(self._nodes), self._start_method)

    def starter_command(self, node: str) -> list:
        """The command that starts the agent of ``node``."""
        agent = [self._python, "-m", "qcgflow.runtime.launch.agent", "--manager", self.address,
                 "--node", node, "--secrets", self._secrets_dir]
        if self._start_method == "slurm":
            # srun gives the agent its node's environment (SLURMD_NODENAME, TaskProlog
            # exports): tasks there keep those values (agent.py _node_local).
            agent += ["--node-local-env", "1"]
            # --overlap: the agent step must not hold the node's CPUs, or every task step
            # (srunmpi) would wait for it; --cpu-bind=none: the agent binds each task itself.
            return ["srun", "--overlap", "-N1", "-n1", "-w", node, "--cpu-bind=none",
                    "--job-name=qcgflow-agent", "--kill-on-bad-exit=1", "--quiet"] + agent
        if self._start_method == "local":
            return agent
        remote = "cd %s && exec %s" % (shlex.quote(self._wd), shlex.join(agent))
        return ["ssh", "-o", "BatchMode=yes", node, remote]

    def _start_agent(self, state: _AgentState) -> None:
        log_path = os.path.join(self._log_dir, "agent-%s.log" % state.node)
        try:
            with open(log_path, "ab") as log:
                state.starter = subprocess.Popen(
                    self.starter_command(state.node), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=self._wd, start_new_session=True)
        except OSError as exc:
            # the message now: ``exc`` is unbound when the except block ends
            why = "cannot start its agent (%s): %s" % (self._start_method, exc)
            self._loop.call_soon(lambda: self._lost(state, why))
            return
        state.starter_fd = os.pidfd_open(state.starter.pid)
        self._loop.add_reader(state.starter_fd, lambda: self._starter_ended(state))

    def close(self, timeout: float = 3.0) -> None:
        """Stop every agent (their tasks are killed) and wait for the starters to end."""
        self._closing = True
        if self._monitor_timer is not None:
            self._monitor_timer.cancel()
        for state in self._nodes.values():
            if state.identity is not None and not state.lost:
                self._send(state, {"op": "stop"})
        deadline = time.monotonic() + timeout
        for state in self._nodes.values():
            if state.starter is None:
                continue
            try:
                state.starter.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(state.starter.pid, _signal.SIGTERM)
                try:
                    state.starter.wait(1.0)
                except subprocess.TimeoutExpired:
                    _kill_group(state.starter.pid, _signal.SIGKILL)
                    state.starter.wait()
            if state.starter_fd >= 0:
                self._loop.remove_reader(state.starter_fd)
                os.close(state.starter_fd)
                state.starter_fd = -1
        self._loop.remove_reader(self._socket)
        if self._zap is not None:
            self._zap.close()
        self._socket.close(linger=0)
        self._context.term()

    # ------------------------------------------------------------------ queries
    @property
    def ready_nodes(self) -> list:
        """Nodes whose agent is registered and not lost."""
        return [s.node for s in self._nodes.values() if s.ready and not s.lost]

    def __len__(self) -> int:
        return sum(len(state.tasks) for state in self._nodes.values())

    # ------------------------------------------------------------------ launcher API
    def launch(self, spec: ProcessSpec, on_started, on_exit, on_error) -> None:
        """Start ``spec`` on ``spec.node`` through its agent (see the module guarantees)."""
        state = self._nodes.get(spec.node)
        if state is None or not state.ready or state.lost:
            why = ("no node launcher agent on node %s" % spec.node if state is None or not
                   state.lost else "agent on %s lost" % spec.node)
            self._loop.call_soon(lambda: on_error(why))
            return
        self._next_id += 1
        remote = _Remote(self._next_id, state.node, on_started, on_exit, on_error)
        state.tasks[remote.task_id] = remote
        env = spec.env
        base = self._base_env
        changes = {k: v for k, v in env.items() if base.get(k) != v}
        for key in _ALWAYS_SENT:  # the task's GPU ids beat the agent's own step's value
            if key in env:
                changes[key] = env[key]
        unset = [k for k in base if k not in env]
        # A bound task runs on this node only: it gets the node's own values of node-local
        # variables. A launcher (mpirun, srun: no cpus) starts processes on other nodes
        # too, and would hand its values to them: it gets none, so each node's Slurm step
        # supplies its own (unless the job sets them).
        bound = bool(spec.cpus)
        if not bound:
            unset.extend(k for k in self._node_local_keys if k not in changes and k in base)
        message = {
            "op": "launch", "id": remote.task_id, "argv": list(spec.argv), "env": changes,
            "unset": unset, "cwd": spec.cwd, "stdin": spec.stdin, "stdout": spec.stdout,
            "stderr": spec.stderr, "cpus": list(spec.cpus) if spec.cpus else None,
            "node_env": bound}
        if spec.when_written:  # outputs the agent creates only when written (streams.py)
            message["when_written"] = list(spec.when_written)
        self._send(state, message)

    def signal(self, pid: int, signum: int, node: Optional[str] = None) -> bool:
        """Send ``signum`` to the process group of task ``pid`` on ``node``."""
        states = [self._nodes[node]] if node in self._nodes else self._nodes.values()
        for state in states:
            for remote in state.tasks.values():
                if remote.pid == pid and not state.lost:
                    self._send(state, {"op": "signal", "id": remote.task_id, "signum": signum})
                    return True
        return False

    def kill_all(self) -> None:
        for state in self._nodes.values():
            for remote in list(state.tasks.values()):
                if remote.pid is not None and not state.lost:
                    self._send(state, {"op": "signal", "id": remote.task_id,
                                       "signum": int(_signal.SIGKILL)})

    # ------------------------------------------------------------------ messages
    def _send(self, state: _AgentState, message: dict) -> None:
        try:
            self._socket.send_multipart([state.identity, json.dumps(message).encode()])
        except zmq.ZMQError as exc:  # the peer is gone (ROUTER_MANDATORY)
            why = "cannot reach it: %s" % exc  # now: ``exc`` is unbound after the block
            self._loop.call_soon(lambda: self._lost(state, why))

    def _receive(self) -> None:
        while True:
            try:
                identity, frame = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue  # not two frames: not one of our agents
            try:
                message = json.loads(frame)
                check_depth(message)
                op = message["op"]
            except (ValueError, KeyError, TypeError, RecursionError, InvalidRequest):
                # any local user can connect (the token is checked on register)
                _log.warning("agents: dropped a malformed message")
                continue
            state = self._by_identity.get(identity)
            if op == "register":
                self._register(identity, message)
            elif state is None or state.lost:
                continue
            else:
                state.last_seen = time.monotonic()
                self._dispatch(state, op, message)

    def _register(self, identity: bytes, message: dict) -> None:
        node = message.get("node")
        state = self._nodes.get(node)
        reason = None
        if message.get("token") != self._token:
            reason = "wrong token"
        elif message.get("version") != PROTOCOL_VERSION:
            reason = ("protocol version %s, the manager speaks %d (install the same qcgflow "
                      "on every node)" % (message.get("version"), PROTOCOL_VERSION))
        elif state is None:
            reason = "node %s is not part of this manager's resources" % node
        elif state.identity is not None and not state.lost:
            reason = "node %s already has an agent" % node
        if reason is not None:
            _log.error("agents: refused an agent (%s): %s", node, reason)
            self._socket.send_multipart([identity, json.dumps(
                {"op": "refused", "reason": reason}).encode()])
            return
        state.identity, state.lost, state.last_seen = identity, False, time.monotonic()
        state.ready = False
        self._by_identity[identity] = state
        self._socket.send_multipart([identity, json.dumps(
            {"op": "welcome", "env": self._base_env}).encode()])
        state.pid = message.get("pid")

    def _dispatch(self, state: _AgentState, op: str, message: dict) -> None:
        if op == "heartbeat" or op == "bye":
            return
        if op == "terminating":
            state.terminating = message.get("signal")
            _log.warning("agents: %s", _interruption(state))
            self.on_node_terminating(state.node, state.terminating)
            return
        if op == "ready":
            # The agent knows the manager's environment now and has told which variables
            # its node gives values of its own: only now may tasks go there.
            keys = message.get("node_local", ())
            self._node_local_keys.update(keys)
            state.ready = True
            _log.info("agents: node %s ready (agent pid %s)%s", state.node, state.pid,
                      "; own values of " + ", ".join(keys) if keys else "")
            self.on_node_up(state.node)
            return
        remote = state.tasks.get(message.get("id"))
        if remote is None:
            return
        if op == "started":
            remote.pid = message["pid"]
            remote.started = time.monotonic()
            remote.on_started(remote.pid)
        elif op == "exited":
            del state.tasks[remote.task_id]
            ended = time.monotonic()
            runtime = float(message.get("runtime", 0.0))
            interrupted = None
            if state.terminating is not None and message["code"] != 0:
                interrupted = _interruption(state)
            remote.on_exit(ExitInfo(remote.pid, message["code"], message.get("signal"),
                                    ended - runtime, ended, message.get("utime", 0.0),
                                    message.get("stime", 0.0), message.get("maxrss", 0),
                                    interrupted=interrupted))
        elif op == "error":
            del state.tasks[remote.task_id]
            remote.on_error(message.get("message", "cannot start the process"))

    # ------------------------------------------------------------------ losing agents
    def _monitor(self) -> None:
        now = time.monotonic()
        for state in self._nodes.values():
            if state.identity is None or state.lost:
                continue
            if now - state.last_seen > self._heartbeat_timeout:
                self._lost(state, "no heartbeat for %gs" % self._heartbeat_timeout)
            else:
                self._send(state, {"op": "ping"})
        self._monitor_timer = self._loop.call_later(HEARTBEAT, self._monitor)

    def _starter_ended(self, state: _AgentState) -> None:
        self._loop.remove_reader(state.starter_fd)
        os.close(state.starter_fd)
        state.starter_fd = -1
        code = state.starter.wait()
        if self._closing:
            return
        self._receive()  # what the agent said before it ended (e.g. 'terminating') first
        signum = _TERMINATION_STATUSES.get(code)
        if signum is not None and state.terminating is None:
            # srun (or ssh) itself was signalled like every step at the allocation's end;
            # its exit may beat the agent's own 'terminating' message here
            state.terminating = signum
            self.on_node_terminating(state.node, signum)
        tail = last_line(os.path.join(self._log_dir, "agent-%s.log" % state.node))
        detail = "its %s process ended with status %s%s" % (
            {"slurm": "srun", "ssh": "ssh"}.get(self._start_method, "agent"), code,
            (": " + tail) if tail else "")
        self._lost(state, detail)

    def _lost(self, state: _AgentState, why: str) -> None:
        if state.lost or self._closing:
            return
        state.lost = True
        state.ready = False
        registered = state.identity is not None
        if state.identity is not None:
            self._by_identity.pop(state.identity, None)
        state.identity = None
        message = "agent on %s lost: %s" % (state.node, why) if registered else \
            "agent on %s failed to start: %s" % (state.node, why)
        _log.error("agents: %s", message)
        ended = time.monotonic()
        interrupted = _interruption(state) if state.terminating is not None else None
        for remote in list(state.tasks.values()):
            del state.tasks[remote.task_id]
            if remote.pid is None:
                remote.on_error(message)
            else:
                remote.on_exit(ExitInfo(remote.pid, -1, None, remote.started, ended,
                                        failure=message, interrupted=interrupted))
        self.on_node_lost(state.node, message)


# exit statuses of a starter (srun/ssh) ended by SIGTERM, SIGINT or SIGHUP, as Popen or as
# the shell convention 128 + signal reports them -> the signal
_TERMINATION_STATUSES = {status: int(sig) for sig in (_signal.SIGTERM, _signal.SIGINT,
                                                       _signal.SIGHUP)
                         for status in (-int(sig), 128 + int(sig))}


def _interruption(state: "_AgentState") -> str:
    try:
        name = _signal.Signals(state.terminating).name
    except (ValueError, TypeError):
        name = "signal %s" % state.terminating
    return ("interrupted: the agent on %s got %s (the allocation is ending or was canceled)"
            % (state.node, name))


def _host_address() -> str:
    """This host's address as the other nodes see it (its name resolved)."""
    try:
        return _socket.gethostbyname(_socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
