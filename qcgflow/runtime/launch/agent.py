"""The node launcher agent: one small process per node that starts the node's tasks.

Started by the manager on every node of the allocation (``srun --overlap -w NODE`` or
``ssh NODE``) as ``python -m qcgflow.runtime.launch.agent --manager ADDR --node NAME
--secrets DIR``. It imports only the standard library and zmq: it starts on every node.

::

    manager (agents.AgentLauncher, ROUTER)          agent (this module, DEALER)
      <── register {node, version, pid, token} ───  connect (CURVE when not loopback)
      ──> welcome {env} | refused {reason} ──────>
      <── ready {node_local} ─────────────────────  variables with this node's own values
      ──> launch {id, argv, env+, env-, cwd, ──────>  chdir, bind to cpus, posix_spawn
                  stdin, stdout, stderr, cpus,        (own session), restore, pidfd
                  node_env}
      <── started {id, pid} | error {id, message}
      <── exited {id, code, signal, runtime,  ─────  pidfd readable -> wait4
                  utime, stime, maxrss}
      ──> signal {id, signum} ─────────────────────>  killpg
      <── heartbeat (every HEARTBEAT s) ──────────
      ──> stop ──> (SIGKILL every task) <── bye ──  exit
      <── terminating {signal} ───────────────────  SIGTERM/SIGINT/SIGHUP: report the
                                                      exits that follow, then end

Messages are one JSON object per ZeroMQ frame. Guarantees: every ``launch`` is answered by
exactly one ``started`` (then one ``exited``) or one ``error``; tasks run in their own
sessions, bound to the requested CPUs before they execute their first instruction (the
agent binds itself, spawns, and restores its own mask); when the manager goes silent for
``--orphan-timeout`` seconds, or the agent is told to stop or is terminated, it kills its
tasks' process groups and exits, so no task outlives a lost manager.
"""

import json
import os
import signal
import sys
import time

import zmq

from . import streams  # standard library only

PROTOCOL_VERSION = 1
HEARTBEAT = 1.0          # seconds between heartbeats to the manager
ORPHAN_TIMEOUT = 30.0    # seconds without any message from the manager before giving up
TERMINATE_GRACE = 5.0    # seconds a terminated agent keeps reporting exits before it ends

EXIT_REFUSED = 3
EXIT_ORPHANED = 4


class Agent:
    """The agent's state: its socket, its children and the task environment."""

    def __init__(self, socket, node: str, token: str, orphan_timeout: float,
                 node_local_env: bool = False):
        self.socket = socket
        self.node = node
        self.token = token
        self.orphan_timeout = orphan_timeout
        self.poller = zmq.Poller()
        self.poller.register(socket, zmq.POLLIN)
        self.base_env = {}
        self.node_local_env = node_local_env
        self.node_env = {}  # this node's own values of variables its Slurm step set
        self.children = {}   # pidfd -> (task id, pid, started monotonic, pending outputs)
        self.pids = {}       # task id -> pid
        self.own_cpus = os.sched_getaffinity(0)
        self.last_heard = time.monotonic()
        self.running = True
        self.terminating = None  # the signal that asked this agent to end
        self.give_up_at = None   # then: report exits until the tasks are gone or this time

    # ------------------------------------------------------------------ wire
    def send(self, message: dict) -> None:
        self.socket.send(json.dumps(message).encode())

    def register(self, timeout: float) -> None:
        self.send({"op": "register", "node": self.node, "version": PROTOCOL_VERSION,
                   "pid": os.getpid(), "token": self.token})
        if not self.socket.poll(int(timeout * 1000)):
            _die("no answer from the manager within %gs" % timeout, EXIT_ORPHANED)
        reply = json.loads(self.socket.recv())
        if reply.get("op") != "welcome":
            _die("refused by the manager: %s" % reply.get("reason", reply), EXIT_REFUSED)
        self.base_env = reply.get("env", {})
        if self.node_local_env:
            self.node_env = _node_local(os.environ, self.base_env)
        self.send({"op": "ready", "node_local": sorted(self.node_env)})
        self.last_heard = time.monotonic()

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT
        while self.running:
            timeout = max(0.0, next_beat - time.monotonic())
            for source, _ in self.poller.poll(timeout * 1000):
                if source is self.socket:
                    self.receive_all()
                else:
                    self.reap(source)
            now = time.monotonic()
            if self.terminating is not None and (not self.children or now > self.give_up_at):
                self.kill_all()
                self.send({"op": "bye"})
                self.running = False
                return
            if now >= next_beat:
                self.send({"op": "heartbeat"})
                next_beat = now + HEARTBEAT
                if now - self.last_heard > self.orphan_timeout:
                    self.kill_all()
                    _die("the manager has been silent for %gs" % self.orphan_timeout,
                         EXIT_ORPHANED)

    def receive_all(self) -> None:
        while self.running:
            try:
                frame = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_heard = time.monotonic()
            message = json.loads(frame)
            op = message.get("op")
            if op == "launch":
                self.launch(message)
            elif op == "signal":
                self.signal(message["id"], message["signum"])
            elif op == "stop":
                self.kill_all()
                self.send({"op": "bye"})
                self.running = False
            # "ping" and unknown operations only refresh last_heard

    # ------------------------------------------------------------------ tasks
    def launch(self, message: dict) -> None:
        task_id = message["id"]
        env = dict(self.base_env)
        changes = message.get("env", {})
        if message.get("node_env", True):
            for key, value in self.node_env.items():
                if key not in changes:
                    env[key] = value
        env.update(changes)
        for key in message.get("unset", ()):
            env.pop(key, None)
        cpus = message.get("cpus")
        outputs: list = []
        try:
            pid = self.spawn(message["argv"], env, message["cwd"], message.get("stdin"),
                             message.get("stdout"), message.get("stderr"), cpus,
                             message.get("when_written") or (), outputs)
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            self.send({"op": "error", "id": task_id, "message": str(exc)})
            return
        except Exception as exc:  # bad message contents: report, keep serving
            self.send({"op": "error", "id": task_id,
                       "message": "cannot start the process: %r" % (exc,)})
            return
        self.children[pidfd] = (task_id, pid, time.monotonic(), outputs)
        self.pids[task_id] = pid
        self.poller.register(pidfd, zmq.POLLIN)
        self.send({"op": "started", "id": task_id, "pid": pid})

    def spawn(self, argv, env, cwd, stdin, stdout, stderr, cpus, lazy=(), outputs=None) -> int:
        """posix_spawn in ``cwd``, bound to ``cpus``: the agent is single-threaded, so it
        can change its own directory and mask around the call and the child inherits both.
        ``lazy``: the streams created only when written; their pending files are added to
        ``outputs`` (finished when the task is reaped, launch/streams.py)."""
        executable = argv[0]
        if os.sep not in executable:
            executable = _which(executable, env.get("PATH", os.defpath))
        actions = [(os.POSIX_SPAWN_OPEN, 0, stdin or os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, stdout or os.devnull,
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)]
        if stderr and stderr == stdout:
            actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
        else:
            actions.append((os.POSIX_SPAWN_OPEN, 2, stderr or os.devnull,
                            os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666))
        here = os.getcwd()
        os.chdir(cwd)
        opened, pendings = (), []
        try:
            # open the files here first: a failing file action would report only an errno
            if stdin:
                os.close(os.open(stdin, os.O_RDONLY | os.O_CLOEXEC))
            if lazy and (stdout or stderr):
                opened = streams.open_pair(stdout, stderr, lazy, pendings)
                del actions[1:]
                actions += [(os.POSIX_SPAWN_DUP2, fd, target) if fd is not None else
                            (os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_WRONLY, 0)
                            for target, fd in enumerate(opened, 1)]
            for path in ({stdout, stderr} - {None} if not opened else ()):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                 0o666))
            if cpus:
                os.sched_setaffinity(0, cpus)
            try:
                pid = os.posix_spawn(executable, list(argv), env, file_actions=actions,
                                     setsid=True)
            finally:
                if cpus:
                    os.sched_setaffinity(0, self.own_cpus)
        except BaseException:
            for pending in pendings:
                streams.discard(pending)
            raise
        finally:
            held = {pending.fd for pending in pendings}
            for fd in set(opened) - {None} - held:
                os.close(fd)  # the child has its copy; pending ones wait for its end
            os.chdir(here)
        if outputs is not None:
            outputs.extend(pendings)
        return pid

    def reap(self, pidfd: int) -> None:
        task_id, pid, started, outputs = self.children.pop(pidfd)
        self.poller.unregister(pidfd)
        os.close(pidfd)
        self.pids.pop(task_id, None)
        try:
            _, status, usage = os.wait4(pid, 0)
        except ChildProcessError:
            status, usage = 0, None
        runtime = time.monotonic() - started
        for output in outputs:  # at its name before the manager hears of the end
            streams.finish(output)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = -sig if sig else os.WEXITSTATUS(status)
        self.send({"op": "exited", "id": task_id, "pid": pid, "code": code, "signal": sig,
                   "runtime": runtime,
                   "utime": usage.ru_utime if usage else 0.0,
                   "stime": usage.ru_stime if usage else 0.0,
                   "maxrss": usage.ru_maxrss if usage else 0})

    def signal(self, task_id, signum: int) -> None:
        pid = self.pids.get(task_id)
        if pid is None:
            return
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self, reap_within: float = 2.0) -> None:
        """SIGKILL every task's process group, then reap them (no zombies left behind)."""
        for pid in list(self.pids.values()):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + reap_within
        for pid in list(self.pids.values()):
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.005)
        for entry in self.children.values():  # what the killed tasks wrote stays
            while entry[3]:
                streams.finish(entry[3].pop())


# Differ between an agent and its manager for reasons that say nothing about the node.
_NOT_NODE_LOCAL = frozenset(("_", "PWD", "OLDPWD", "SHLVL"))


def _node_local(own: dict, manager: dict) -> dict:
    """The variables that this node's Slurm step gave the agent a value of its own for
    (SLURMD_NODENAME, a TaskProlog's exports such as a per-node scratch directory), except
    the SLURM_* step and job variables, which the manager sets per task, and srun's own.

    The manager's environment is that of ITS node (a batch step on the first node); tasks
    on this node get this node's values of those variables unless the job sets them.
    """
    return {key: value for key, value in own.items()
            if not key.startswith(("SLURM_", "SRUN_")) and key not in _NOT_NODE_LOCAL
            and manager.get(key) != value}


def _which(name: str, path: str) -> str:
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(2, "No such file or directory", name)


def _die(message: str, code: int) -> None:
    sys.stderr.write("qcgflow agent: %s\n" % message)
    sys.stderr.flush()
    os._exit(code)


def _parse(argv):
    options = {"--manager": None, "--node": None, "--secrets": None,
               "--orphan-timeout": str(ORPHAN_TIMEOUT), "--register-timeout": "60",
               "--node-local-env": "0"}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key not in options or i + 1 >= len(argv):
            _die("usage: python -m qcgflow.runtime.launch.agent --manager ADDRESS "
                 "--secrets DIR [--node NAME] [--orphan-timeout S] [--node-local-env 0|1]", 2)
        options[key] = argv[i + 1]
        i += 2
    if not options["--manager"] or not options["--secrets"]:
        _die("--manager and --secrets are required", 2)
    return options


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read().strip()


def main(argv=None) -> None:
    options = _parse(sys.argv[1:] if argv is None else argv)
    node = options["--node"] or os.environ.get("SLURMD_NODENAME")
    if not node:
        _die("no node name: pass --node NAME (SLURMD_NODENAME is not set)", 2)
    secrets = options["--secrets"]
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 1000)
    server_key = os.path.join(secrets, "server.key")
    if os.path.exists(server_key):  # the manager listens off loopback: CURVE
        socket.curve_serverkey = _read(server_key)
        socket.curve_publickey = _read(os.path.join(secrets, "client.key"))
        socket.curve_secretkey = _read(os.path.join(secrets, "client.key_secret"))
    socket.connect(options["--manager"])
    agent = Agent(socket, node, _read(os.path.join(secrets, "token")).decode(),
                  float(options["--orphan-timeout"]), options["--node-local-env"] == "1")

    def terminate(signum, frame):
        # Slurm signals every step at once when the allocation ends (or is canceled): the
        # tasks get the signal from Slurm too. Telling the manager first (one socket keeps
        # the order) lets it count those deaths as interruptions, not task failures.
        if agent.terminating is None:
            agent.terminating = signum
            agent.send({"op": "terminating", "signal": signum})
            agent.give_up_at = time.monotonic() + TERMINATE_GRACE

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, terminate)
    agent.register(float(options["--register-timeout"]))
    agent.run()
    if agent.terminating is not None:
        os._exit(128 + agent.terminating)
    socket.close()
    context.term()


if __name__ == "__main__":
    main()
