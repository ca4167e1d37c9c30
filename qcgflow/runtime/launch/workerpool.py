"""The service's side of the persistent task workers (launch/taskworker.py).

::

    WarmLauncher.launch(spec) ── reusable module (``qcgflow.runner``) ──> WorkerPool.launch
        an idle worker?  yes: one datagram (the task) to it; on_started(worker pid) at once
                         (its environment as a difference from the worker's last one)
                         no:  ("spawn", id) + a socket end to the zygote (spawn channel);
                              the task waits for ("spawned", id, pid) from the zygote
    worker socket readable (EventLoop) ── ("done", ...) ──> on_exit; the worker is idle again
                                       ── ("error", ...) ──> on_exit with the reason (a file
                                                             or the wd could not be opened)
    ("worker-exit", id, pid, status, ...) from the zygote ──> its task (if any) ends with
        that wait status (os._exit, crash, signal: wall time, cancel), as a process would

The service gives a worker its next task only after it has read the last one's "done", so
it always knows which task a worker runs: ``signal`` reaches the worker (its process
group) only while it runs that task. A signalled worker is never given another task: if
its task ends normally anyway (the signal was handled or came late), its socket is closed
and the worker ends.
"""

import errno
import logging
import os
import pickle
import signal
import socket
import time
from typing import Callable, Dict, List, Optional

from .local import ExitInfo

_log = logging.getLogger(__name__)

MAX_TASK_FRAME = 1 << 17  # larger requests (a huge environment) fork a child instead
MAX_DONE_FRAME = 1 << 20  # a worker's replies are at most taskworker.MAX_DONE (64 KiB)


class _Worker:
    __slots__ = ("wid", "sock", "pid", "request", "queued", "doomed", "env")

    def __init__(self, wid: int, sock: socket.socket):
        self.wid, self.sock = wid, sock
        self.pid: Optional[int] = None
        self.request = None  # the task it runs
        self.queued = None   # (request, frame) waiting for the worker to be forked
        self.doomed = False  # signalled, or its socket is gone: never given another task
        self.env = None      # the environment last sent to it


class WorkerPool:
    """Persistent workers forked by the zygote, talked to directly.

    Args:
        loop: the service's ``EventLoop``.
        spawn_channel: the service's end of the zygote's spawn channel (SOCK_SEQPACKET).
        learn: called with the modules a worker imported (to be forwarded to the zygote).
        fallback: called with a request a worker could not take (it forks a child).
    """

    def __init__(self, loop, spawn_channel: socket.socket, learn: Callable[[list], None],
                 fallback: Callable):
        self._loop = loop
        self._spawn = spawn_channel
        self._learn = learn
        self._fallback = fallback
        self._workers: Dict[int, _Worker] = {}
        self._idle: List[_Worker] = []
        self._next_wid = 0
        self.by_pid: Dict[int, object] = {}  # pid -> the request its worker runs
        self.started = 0
        # one receive buffer for all workers (the loop runs one callback at a time):
        # recv(1 MiB) would allocate and free a megabyte per message
        self._buffer = bytearray(MAX_DONE_FRAME)
        self._view = memoryview(self._buffer)

    def __len__(self) -> int:
        return sum(1 for w in self._workers.values() if w.request or w.queued)

    def launch(self, request, program: str, module: str) -> bool:
        """Run ``request`` in a worker; False when none can take it now."""
        spec = request.spec
        frame = [request.rid, program, module, list(spec.argv[3:]), spec.env, spec.cwd,
                 spec.stdin, spec.stdout, spec.stderr, list(spec.cpus) if spec.cpus else None,
                 spec.when_written]
        while self._idle:
            worker = self._idle.pop()
            if not worker.doomed:
                return self._dispatch(worker, request, frame)
        worker = self._new_worker()
        if worker is None:
            return False
        worker.queued = (request, frame)
        return True

    def _new_worker(self) -> Optional[_Worker]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._next_wid += 1
        try:
            socket.send_fds(self._spawn, [pickle.dumps(("spawn", self._next_wid))],
                            [theirs.fileno()])
        except OSError as exc:  # the zygote is gone or hung: fork children meanwhile
            _log.warning("cannot ask the zygote for a worker: %s", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        ours.setblocking(False)
        worker = self._workers[self._next_wid] = _Worker(self._next_wid, ours)
        self._loop.add_reader(ours.fileno(), lambda: self._receive(worker))
        return worker

    def spawned(self, wid: int, pid: int) -> None:
        worker = self._workers.get(wid)
        if worker is None:
            return
        worker.pid = pid
        if worker.queued is not None:
            (request, frame), worker.queued = worker.queued, None
            self._dispatch(worker, request, frame)

    def _dispatch(self, worker: _Worker, request, frame) -> bool:
        env, last = frame[4], worker.env
        if env is last or env == last:
            frame[4] = None  # the worker keeps the last one
        elif last is not None:  # what changed (a task's own variables: a few of ~50)
            frame[4] = ({key: value for key, value in env.items() if last.get(key) != value},
                        [key for key in last if key not in env])
        data = pickle.dumps(tuple(frame), protocol=pickle.HIGHEST_PROTOCOL)
        started = time.monotonic()  # before the worker (on another CPU) may end the task
        try:
            if len(data) > MAX_TASK_FRAME:
                raise OSError(errno.EMSGSIZE, "task request too large for a worker")
            worker.sock.send(data)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:  # the worker is fine: a child runs this one
                self._idle.append(worker)
            else:
                self._close(worker)  # its socket is gone: the zygote reports its end
            self._fallback(request)
            return True
        worker.env = env
        worker.request = request
        request.pid, request.worker, request.started = worker.pid, worker, started
        self.by_pid[worker.pid] = request
        self.started += 1
        request.on_started(worker.pid)
        return True

    def _receive(self, worker: _Worker, drain: bool = False) -> None:
        """Read what the worker sent: one reply (the loop's poll is level-triggered, so a
        second one queued behind it makes the socket readable again; not asking for it
        saves a failing ``recv`` per task), or everything when ``drain``."""
        buffer = self._buffer
        while worker.sock.fileno() >= 0:
            try:
                size = worker.sock.recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                size = 0
            if not size:  # the worker ended: the zygote's "worker-exit" ends its task
                self._close(worker)
                if worker.pid is None:  # the zygote could not fork it: no exit will come
                    self._workers.pop(worker.wid, None)
                    if worker.queued is not None:
                        (request, _), worker.queued = worker.queued, None
                        self._fallback(request)
                return
            message = pickle.loads(self._view[:size])
            request = worker.request
            if request is None or message[1] != request.rid:
                continue
            worker.request = None
            self.by_pid.pop(worker.pid, None)
            if worker.doomed:
                self._close(worker)
            else:
                self._idle.append(worker)
            if message[0] == "error":
                now = time.monotonic()
                request.on_exit(ExitInfo(worker.pid, 1, None, request.started, now,
                                         failure="cannot start: %s" % message[2]))
            else:
                _, _, status, ended, utime, stime, maxrss, new = message
                if type(new) is bytes:
                    new = unpack_modules(new)
                if new:
                    self._learn(new)
                request.on_exit(_exit_info(worker.pid, status, request.started, ended, utime,
                                           stime, maxrss))
            if not drain:
                return

    def worker_exit(self, wid: int, pid: int, status: int, ended: float, utime: float,
                    stime: float, maxrss: int) -> None:
        """The zygote reaped a worker: a "done" it sent first counts; else its task ends
        with the worker's wait status."""
        worker = self._workers.pop(wid, None)
        if worker is None:
            return
        worker.doomed = True  # what its "done" starts must not come back to it
        if worker.sock.fileno() >= 0:
            self._receive(worker, drain=True)  # a "done" sent before it died
            self._close(worker)
        request, worker.request = worker.request, None
        if request is not None:
            self.by_pid.pop(pid, None)
            request.on_exit(_exit_info(pid, status, request.started, ended, utime, stime,
                                       maxrss))
        if worker.queued is not None:
            self._fallback(worker.queued[0])

    def signal(self, request, signum: int) -> bool:
        """Signal the worker running ``request``; False when that task has ended."""
        worker = request.worker
        if worker.request is not request:
            return False
        worker.doomed = True
        _killpg(worker.pid, signum)
        return True

    def _close(self, worker: _Worker) -> None:
        worker.doomed = True
        if worker in self._idle:
            self._idle.remove(worker)
        if worker.sock.fileno() >= 0:
            self._loop.remove_reader(worker.sock.fileno())
            worker.sock.close()  # a live worker ends when it reads the end of its socket

    def kill_all(self) -> None:
        for worker in self._workers.values():
            if worker.request is not None:
                worker.doomed = True
                _killpg(worker.pid, signal.SIGKILL)

    def close(self) -> None:
        """Close every worker's socket: idle workers end now, busy ones after their task."""
        for worker in self._workers.values():
            self._close(worker)

    def close_channel(self) -> None:
        self._spawn.close()

    def zygote_died(self) -> list:
        """Kill the workers; their tasks fail (killed); return the requests not started."""
        waiting = []
        for worker in list(self._workers.values()):
            self._close(worker)
            if worker.queued is not None:
                waiting.append(worker.queued[0])
            request = worker.request
            if request is not None:
                _killpg(worker.pid, signal.SIGKILL)
                request.on_exit(ExitInfo(worker.pid, -signal.SIGKILL, signal.SIGKILL,
                                         request.started, time.monotonic()))
        self._workers.clear()
        self.by_pid.clear()
        return waiting


def unpack_modules(packed: bytes):
    """The import list a worker sent compressed (taskworker._reply); None if unreadable."""
    import zlib
    try:
        return pickle.loads(zlib.decompress(packed))
    except Exception:  # noqa: BLE001 - a broken list only means nothing is learnt
        _log.warning("a worker's import list could not be read: not learnt")
        return None


def _exit_info(pid, status, started, ended, utime, stime, maxrss) -> ExitInfo:
    if os.WIFSIGNALED(status):
        sig, code = os.WTERMSIG(status), -os.WTERMSIG(status)
    else:
        sig, code = None, os.WEXITSTATUS(status)
    return ExitInfo(pid, code, sig, started, max(ended, started), utime, stime, maxrss)


def _killpg(pid: Optional[int], signum: int) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:  # not yet its own group leader (just forked)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
