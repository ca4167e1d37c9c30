"""The warm Python worker ("zygote"): forks one child per ``python -m MODULE ARGS`` job.

Started once per service (on the first such job) as ``python -m
qcgflow.runtime.launch.zygote FD SPAWN_FD``; FD is its end of a stream socket pair with the
service, SPAWN_FD its end of the spawn channel (SOCK_SEQPACKET), on which the service asks
for persistent task workers (launch/taskworker.py) for ``qcgflow.runner`` jobs.

::

    service (pyworker.WarmLauncher)            zygote (this module)              child
      ── ("run", id, module, args, env, wd,  ──>  open the task's files,
          stdin, stdout, stderr, cpus)            fork ─────────────────────>  setsid, bind CPUs,
      <── ("started", id, pid, t0) ──────────     (or ("error", id, text))      dup2 0/1/2, chdir,
                                                                                environ, sys.argv,
                                                                                run MODULE as
                                                  SIGCHLD -> wait4 <─────────  __main__, exit
      <── ("exit", id, pid, status, t1, rusage)   learn: import what the child   status as python
                                                  imported (next children start warmer)

Frames are a 4-byte big-endian length and a pickle. The zygote is the parent of every
child, so it reaps them and reports the wait status and rusage; the service signals a
child's process group directly (each child is a session leader, as normal tasks are).

Warmth is learnt: a child reports the modules it imported that the zygote did not have
(outside the task's own directory) and the zygote imports them, so the next child of the
same kind finds them loaded. Nothing is imported before the first job.

Persistent workers::

    service ── ("spawn", wid) + one end of a socket pair (SPAWN_FD) ──> fork a worker that
                                                                        serves that end
            <── ("spawned", wid, pid)
            (tasks and their results go straight between the service and the worker)
            <── ("worker-exit", wid, pid, status, t1, rusage)   the worker was reaped
            ── ("learn", modules) ──> import what a worker imported (later workers: warm)

The zygote ends when the service closes its end of the socket; children still running are
left to the service (which kills its tasks before closing), and so are workers (each ends
when the service closes its socket).
"""

import gc
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time

from . import streams
from .taskworker import (_finalize, _open_files, _rebind_stdio, _reseed, raised_status,
                         serve)

_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


class Zygote:
    """The zygote's loop: requests in, forks, reaps, reports."""

    def __init__(self, fd: int, spawn_fd: int = -1):
        self.sock = socket.socket(fileno=fd)
        self.sock.set_inheritable(False)
        self.spawn = socket.socket(fileno=spawn_fd) if spawn_fd >= 0 else None
        self.buffer = b""
        self.children = {}   # pid -> (request id, learn pipe read end or -1, outputs
                             #         created only when written: named when reaped)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _ignore)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        self.workers = {}    # pid -> worker id (persistent task workers, taskworker.py)
        if self.spawn is not None:
            self.spawn.set_inheritable(False)
            self.poller.register(self.spawn.fileno(), select.POLLIN)

    def serve(self) -> None:
        while True:
            for fd, _ in _retry(self.poller.poll):
                if fd == self.wake_r:
                    _drain(self.wake_r)
                elif self.spawn is not None and fd == self.spawn.fileno():
                    self._spawn_request()
                elif not self._read():
                    return  # the service went away (its workers end with their sockets)
            self._reap()

    def _read(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            return False
        self.buffer += chunk
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            message = pickle.loads(self.buffer[_HEADER.size:_HEADER.size + size])
            self.buffer = self.buffer[_HEADER.size + size:]
            if message[0] == "learn":  # what a worker imported: later workers start warm
                _learn_modules(message[1])
            else:
                self._run(*message[1:])
        return True

    def _run(self, rid, program, module, args, env, wd, stdin, stdout, stderr, cpus,
             lazy=()) -> None:
        outputs: list = []
        try:
            fds = _open_files(wd, stdin, stdout, stderr, lazy, outputs)
        except OSError as exc:
            _send(self.sock, ("error", rid, str(exc)))
            return
        learn_r, learn_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(learn_w, False)
        known = frozenset(sys.modules)
        gc.freeze()  # the child's collections skip the zygote's objects: no copy-on-write
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (*fds, learn_r, learn_w):
                os.close(fd)
            for output in outputs:
                streams.discard(output)
            _send(self.sock, ("error", rid, "cannot fork the warm worker: %s" % exc))
            return
        if pid == 0:
            _child(self, program, module, args, env, wd, fds, cpus, learn_w, known)  # never returns
        started = time.monotonic()
        for fd in (*fds, learn_w):
            os.close(fd)
        self.children[pid] = (rid, learn_r, outputs)
        _send(self.sock, ("started", rid, pid, started))

    def _reap(self) -> None:
        while self.children or self.workers:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ended = time.monotonic()
            if pid in self.workers:  # the service ends the task it ran (if any)
                _send(self.sock, ("worker-exit", self.workers.pop(pid), pid, status, ended,
                                  usage.ru_utime, usage.ru_stime, usage.ru_maxrss))
                continue
            rid, learn_r, outputs = self.children.pop(pid)
            for output in outputs:  # at its name before the service hears of the end
                streams.finish(output)
            _send(self.sock, ("exit", rid, pid, status, ended, usage.ru_utime, usage.ru_stime,
                              usage.ru_maxrss))
            _learn(learn_r)


    # ------------------------------------------------------------ persistent workers
    def _spawn_request(self) -> None:
        """("spawn", worker id) with one end of a socket pair: fork a worker serving it."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.spawn, 4096, 1)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self.poller.unregister(self.spawn.fileno())
            return
        _, wid = pickle.loads(data)
        if not fds:
            return
        sock = socket.socket(fileno=fds[0])
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            sock.close()  # the service sees the worker's socket end: a task there fails
            return
        if pid == 0:
            try:
                self._become_worker(sock)
            finally:
                os._exit(1)
        sock.close()
        self.workers[pid] = wid
        _send(self.sock, ("spawned", wid, pid))

    def _become_worker(self, sock) -> None:
        """In the forked worker: drop the zygote's descriptors, reset what a fresh process
        has, then serve tasks (never returns)."""
        os.setsid()
        signal.set_wakeup_fd(-1)
        keep = sock.fileno()
        for owned in (self.sock, self.spawn):
            os.close(owned.detach())  # detach: no stale fd number closed later
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        serve(sock, os.getcwd())


def _ignore(_signum, _frame) -> None:
    """SIGCHLD only has to wake the poll (through the wake-up fd)."""


def _retry(call):
    while True:
        try:
            return call()
        except InterruptedError:
            continue


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass



def _learn(learn_r: int) -> None:
    """Import what a finished child imported, so that its successors start warm."""
    try:
        with os.fdopen(learn_r, "rb") as handle:
            data = handle.read()
    except OSError:
        return
    if not data:
        return
    try:
        found = pickle.loads(data)
    except Exception:  # a child that died half-way through writing: nothing to learn
        return
    _learn_modules(found)


def _learn_modules(found) -> None:
    """Import ``found`` ((name, file) pairs) here, where each resolves to the same file."""
    import importlib
    for name, origin in sorted(found):
        if name in sys.modules:
            continue
        try:
            module = importlib.import_module(name)
        except BaseException:  # whatever a third-party import does, the zygote survives
            sys.modules.pop(name, None)
            continue
        if getattr(module, "__file__", None) != origin:
            sys.modules.pop(name, None)  # another module of that name here: not the same


# ---------------------------------------------------------------------- the child

def _child(zygote, program, module, args, env, wd, fds, cpus, learn_w, known) -> None:
    """Become what ``python -m module args`` started in ``wd`` with ``env`` would be."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for fd in (zygote.sock.fileno(), zygote.wake_r, zygote.wake_w):
            os.close(fd)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if cpus:
            os.sched_setaffinity(0, set(cpus))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, learn_w)  # a fresh process has 0, 1 and 2 only
        os.closerange(learn_w + 1, os.sysconf("SC_OPEN_MAX"))
        os.chdir(wd)
        os.environ.clear()
        os.environ.update(env)
        _rebind_stdio()
        sys.path[0] = wd  # what ``python -m`` puts first
        sys.executable = program  # the name it was started by (python3, python3.11, ...)
        _reseed()
        code = _run_main(module, args)
        code = _finalize(code)
        _report_imports(learn_w, known, wd)
    except BaseException:  # the child must never return into the zygote's loop
        try:
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    finally:
        os._exit(code)




def _run_main(module: str, args) -> int:
    import runpy
    import types
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["-m", *args]
    sys.orig_argv = [sys.executable, "-m", module, *args]
    try:
        runner = getattr(runpy, "_run_module_as_main", None)
        if runner is not None:
            runner(module, True)  # exactly what ``python -m`` calls
        else:  # pragma: no cover - every CPython 3 has it
            sys.argv[0] = module
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except BaseException:  # noqa: B902 - whatever the task raised becomes its status
        return raised_status()
    return 0




def _report_imports(learn_w: int, known, wd: str) -> None:
    new = sys.modules.keys() - known
    if not new:
        return  # the common case once the zygote has learnt: nothing to pickle
    prefix = os.path.join(wd, "")
    found = []
    for name in new:
        module = sys.modules.get(name)
        if name == "__main__" or module is None:
            continue
        origin = getattr(module, "__file__", None)
        if origin and origin.startswith(prefix):
            continue  # the task's own modules: not the zygote's to load
        found.append((name, origin))
    if not found:
        return
    data = pickle.dumps(found)
    try:
        if len(data) > 65536:  # the default pipe: a big package (easyvvuq: ~3000 modules,
            import fcntl       # ~350 kB listed) would be cut and never learnt
            fcntl.fcntl(learn_w, fcntl.F_SETPIPE_SZ, min(len(data), 1 << 20))
        os.write(learn_w, data)  # cut when over the limit: then nothing is learnt
    except OSError:
        pass  # a list larger than the pipe: learn it from another child


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) not in (1, 2):
        sys.stderr.write("usage: python -m qcgflow.runtime.launch.zygote FD [SPAWN_FD]\n")
        return 2
    fds = [int(arg) for arg in args]
    path = os.environ.get("QCGFLOW_ZYGOTE_TEMPLATE")
    if path and len(fds) == 2:  # a client forked a zygote with its imports (template.py)
        from .handover import hand_over
        if hand_over(path, fds):
            return 0
    Zygote(*fds).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
