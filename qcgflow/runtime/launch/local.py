"""Local processes: start (spawner threads), watch (pidfd), signal, reap with rusage.

::

    Executor --launch(ProcessSpec)--> LocalLauncher --queue--> spawner threads --Popen--> child
        ^                                  ^                         | (GIL released while
        |                                  '-- eventfd + done deque <-'   the kernel execs)
        |                                  | pidfd readable (EventLoop)
        '-- on_started(pid) / on_exit(ExitInfo) / on_error(msg)   os.wait4 -> status + rusage

Why threads: creating a process blocks the caller until the kernel has exec'd the child
(vfork semantics, 0.2-0.4 ms for /bin/true here). Two spawner threads overlap that wait with
each other and with the event loop, which keeps scheduling and bookkeeping.

Why not always: handing a spawn to a thread and its result back costs the service more CPU
than the spawn itself (a queue put, an eventfd write and read, and the GIL passed back and
forth: futex wake-ups and context switches, ~0.05 ms a task). A sweep of short commands
starts one task per event, and then nothing runs in parallel with the spawn anyway. So a
launch is spawned in the event loop's own thread when no thread has a spawn pending and
the process needs nothing opened or changed for it (its own directory, no binding, no
files: ``_spawns_inline``); a burst of launches in one turn goes to the threads after the
first ``INLINE_PER_TURN``. Either way the callbacks come from the event loop, never from
inside ``launch``.

Each child runs in its own session so that a signal reaches the whole tree it spawns.
All callbacks run in the event loop's thread, never in a spawner thread.
"""

import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from . import streams

_log = logging.getLogger(__name__)

# launches spawned in the event loop's thread before the next ones go to the spawner
# threads (until those are reported): a sweep's steady state (one or two ends per turn)
# stays in the loop, a burst of starts overlaps its exec waits in the threads
INLINE_PER_TURN = 2


# ProcessSpec and ExitInfo are made once per task and never changed afterwards; they are
# not frozen because a frozen dataclass's __init__ costs ~0.6 us a field (object.__setattr__
# per field), ~6 us of every task for these two alone.
@dataclass
class ProcessSpec:
    """Everything needed to start one process (treat as immutable)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    stdin: Optional[str] = None   # paths, already resolved
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    cpus: Optional[Sequence[int]] = None  # bind to these CPU ids when set
    node: Optional[str] = None  # the node to start it on (launchers with several nodes)
    warm: bool = False  # a plain command (no modules/venv/script/model): may run in a warm
                        # Python worker when it is ``python -m ...`` (launch/pyworker.py)
    when_written: Tuple[str, ...] = ()  # of "stdout", "stderr": files created only when
                                        # written (launch/streams.py)


@dataclass
class ExitInfo:
    """How a process ended (treat as immutable)."""

    pid: int
    exit_code: int            # the exit status, or -signal when killed by a signal
    signal: Optional[int]     # the terminating signal, if any
    started: float            # monotonic
    ended: float              # monotonic
    user_time: float = 0.0
    system_time: float = 0.0
    max_rss_kb: int = 0
    failure: Optional[str] = None  # why the task was lost (its node's agent died), if it was
    interrupted: Optional[str] = None  # it ended because the allocation is ending: not its fault


@dataclass
class _Child:
    """A running process of ours and what to do when it ends."""

    popen: subprocess.Popen
    pidfd: int
    started: float
    on_exit: Callable[[ExitInfo], None]
    outputs: Sequence[streams.Pending] = ()  # named (or not) when it ends, before on_exit


class LocalLauncher:
    """Starts processes on this host and reports through the event loop.

    Args:
        loop: the service's ``EventLoop``.
        spawners: number of spawner threads (processes created concurrently).
    """

    def __init__(self, loop, spawners: int = 2):
        self._loop = loop
        self._children: Dict[int, _Child] = {}
        self._requests: "queue.SimpleQueue" = queue.SimpleQueue()
        # Processes are created in the order they were launched, as upstream creates them
        # (one at a time): a spawner thread waits for its turn (the ticket of its request)
        # and passes the turn on once its process exists. Without it, a thread delayed
        # between taking a request and spawning it (load, the GIL) let the next iteration
        # start first; for equal iterations that one also ended first, and upstream's own
        # test_resume saw iteration 3 SUCCEED while 2 was still EXECUTING.
        self._turn = threading.Condition(threading.Lock())
        self._tickets = 0  # given out by launch() (event loop thread)
        self._serving = 0  # the ticket whose process may be created now
        self._done: deque = deque()
        self._in_flight = 0  # launched, not yet reported (in a thread or in _done)
        self._threaded = 0  # of those, given to the spawner threads
        self._cwd = os.getcwd()  # tasks that run here need no chdir (the fast path)
        # empty unnamed outputs kept for the next tasks (streams.Spares): spawner threads
        # take them, the event loop keeps them
        self._spares = streams.Spares(limit=2 * spawners + 2, lock=threading.Lock())
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._loop.add_reader(self._wakeup, self._collect)
        self._threads = [threading.Thread(target=self._spawner, name="qcgflow-spawner-%d" % i,
                                          daemon=True) for i in range(spawners)]
        for thread in self._threads:
            thread.start()

    def __len__(self) -> int:
        """Processes started or being started and not yet reaped."""
        return len(self._children) + self._in_flight

    def launch(self, spec: ProcessSpec, on_started: Callable[[int], None],
               on_exit: Callable[[ExitInfo], None], on_error: Callable[[str], None]) -> None:
        """Start ``spec`` soon. Exactly one of ``on_error`` or (``on_started``, then
        ``on_exit``) is called later from the event loop."""
        item = (spec, on_started, on_exit, on_error)
        if (not self._threaded and self._in_flight < INLINE_PER_TURN
                and _spawns_inline(spec, self._cwd)):
            # no spawn is pending in a thread: this one is created after every earlier one
            if not self._in_flight:
                self._loop.call_soon(self._deliver)
            self._in_flight += 1
            self._done.append((item, _create(spec, self._cwd, self._spares), False))
            return
        self._in_flight += 1
        self._threaded += 1
        self._requests.put((item, self._tickets))
        self._tickets += 1

    def close(self) -> None:
        """Stop the spawner threads (after the queued spawns) and the wake-up descriptor."""
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        if not any(thread.is_alive() for thread in self._threads):
            self._spares.close()  # (a thread still spawning may still take one)
        self._loop.remove_reader(self._wakeup)
        os.close(self._wakeup)

    # ------------------------------------------------------------------ spawner threads
    def _spawner(self) -> None:
        # No signal mask here: children would inherit it. A signal that lands on this
        # thread still wakes the event loop through the service's wake-up fd.
        while True:
            request = self._requests.get()
            if request is None:
                return
            item, ticket = request
            spec = item[0]
            with self._turn:
                while self._serving != ticket:
                    self._turn.wait()
            try:
                result = _create(spec, self._cwd, self._spares)
            finally:
                with self._turn:
                    self._serving = ticket + 1
                    self._turn.notify_all()
            self._done.append((item, result, True))
            os.eventfd_write(self._wakeup, 1)

    # ------------------------------------------------------------------ event loop side
    def _collect(self) -> None:
        try:
            os.eventfd_read(self._wakeup)
        except BlockingIOError:
            pass
        self._deliver()

    def _deliver(self) -> None:
        """Report the processes created (in the order they were created)."""
        while self._done:
            (spec, on_started, on_exit, on_error), (popen, pidfd, started, error, outputs), \
                threaded = self._done.popleft()
            self._in_flight -= 1
            self._threaded -= threaded
            if popen is None:
                on_error(error)
                continue
            pid = popen.pid
            self._children[pid] = _Child(popen, pidfd, started, on_exit, outputs)
            self._loop.add_reader(pidfd, lambda pid=pid: self._reap(pid))
            on_started(pid)

    def signal(self, pid: int, signum: int, node: Optional[str] = None) -> bool:
        """Send ``signum`` to the process group of ``pid``; False if it is gone."""
        if pid not in self._children:
            return False
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def kill_all(self) -> None:
        for pid in list(self._children):
            self.signal(pid, signal.SIGKILL)
        for _, (process, *_), _ in list(self._done):  # created, not yet reported
            if process is not None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is None:
            return
        try:
            waited, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            waited, status, usage = pid, 0, None
        if waited == 0:
            return  # spurious wake-up
        ended = time.monotonic()
        self._loop.remove_reader(child.pidfd)
        os.close(child.pidfd)
        del self._children[pid]
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            code = -sig
        else:
            sig = None
            code = os.WEXITSTATUS(status)
        child.popen.returncode = code  # keeps Popen from waiting again on collection
        for output in child.outputs:  # at its name before anyone is told the task ended
            if not self._spares.keep(output):
                streams.finish(output)
        info = ExitInfo(pid, code, sig, child.started, ended,
                        usage.ru_utime if usage else 0.0, usage.ru_stime if usage else 0.0,
                        usage.ru_maxrss if usage else 0)
        child.on_exit(info)


def _spawns_inline(spec: ProcessSpec, own_cwd: str) -> bool:
    """Whether creating ``spec`` costs the caller only the kernel's clone and exec: no file
    to open (a slow file system would hold the event loop), no directory change and no
    binding (those fork the whole service, ``Popen`` with ``preexec_fn``)."""
    return spec.cpus is None and spec.cwd == own_cwd and _no_files(spec)


def _no_files(spec: ProcessSpec) -> bool:
    """Its standard streams are all /dev/null."""
    return spec.stdin is None and spec.stdout is None and spec.stderr is None


def _create(spec: ProcessSpec, own_cwd: str, spares: Optional[streams.Spares]) -> tuple:
    """Create the process of ``spec`` and open its pidfd; never raises.

    Returns ``(process, pidfd, started, error, outputs)``: ``error`` is None, or the reason
    it was not created (``process`` None).
    """
    try:
        # the clock starts before the fork: a spawner thread delayed after the exec
        # (GIL, load) would otherwise report `sleep 2` as running 1.998 s
        started = time.monotonic()
        popen, outputs = _spawn(spec, own_cwd, spares)
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:
            for output in outputs:
                streams.discard(output)
            raise
        return popen, pidfd, started, None, outputs
    except OSError as exc:
        return None, -1, 0.0, str(exc), ()
    except Exception as exc:  # a thread's boundary: report, never die silently
        _log.exception("spawning %s failed", spec.argv)
        return None, -1, 0.0, "cannot start the process: %s" % exc, ()


def _spawn(spec: ProcessSpec, own_cwd: str, spares: Optional[streams.Spares] = None):
    """Create the process (in a spawner thread, or in the loop's for ``_spawns_inline``
    specs); returns an object with ``pid`` and the outputs to finish when it ends
    (``streams.Pending``)."""
    if spec.when_written and (spec.stdout or spec.stderr):
        return _spawn_lazy(spec, own_cwd, spares)
    if spec.cpus is None and spec.cwd == own_cwd:
        return _posix_spawn(spec), ()
    files = []
    try:
        stdin = open(spec.stdin, "rb") if spec.stdin else subprocess.DEVNULL  # noqa: SIM115
        if spec.stdin:
            files.append(stdin)
        stdout = subprocess.DEVNULL
        if spec.stdout:
            stdout = open(spec.stdout, "ab")  # noqa: SIM115
            files.append(stdout)
        if spec.stderr and spec.stderr == spec.stdout:
            stderr = subprocess.STDOUT
        elif spec.stderr:
            stderr = open(spec.stderr, "ab")  # noqa: SIM115
            files.append(stderr)
        else:
            stderr = subprocess.DEVNULL
        return subprocess.Popen(
            spec.argv, env=spec.env, cwd=spec.cwd, stdin=stdin, stdout=stdout, stderr=stderr,
            start_new_session=True, close_fds=True,
            preexec_fn=_binder(spec.cpus) if spec.cpus else None), ()
    finally:
        for handle in files:
            handle.close()  # the child has its own copies


def _spawn_lazy(spec: ProcessSpec, own_cwd: str, spares: Optional[streams.Spares] = None):
    """``_spawn`` for a task with outputs created only when written: both outputs are
    opened here (streams.open_pair), the child gets them as descriptors; the pending ones
    stay open in the service until the task ends. The child gets a description of its
    own of a pending file (streams.task_copy), closed here once it is spawned, so that
    ``Spares.keep`` can tell at its end whether anything it left can still write to it;
    with ``spares``, a kept empty file may serve."""
    pendings: list = []
    out, err = streams.open_pair(spec.stdout, spec.stderr, spec.when_written, pendings, spares)
    pending_of = {pending.fd: pending for pending in pendings}
    held = set(pending_of)
    same = err is not None and err == out
    try:
        if out in pending_of:
            out = streams.task_copy(pending_of[out])
        if same:
            err = out
        elif err in pending_of:
            err = streams.task_copy(pending_of[err])
    except OSError:  # no descriptor left (EMFILE): the task does not start
        for fd in {out, err} - {None} - held:
            os.close(fd)
        for pending in pendings:
            streams.discard(pending)
        raise
    try:
        if spec.cpus is None and spec.cwd == own_cwd:
            process = _posix_spawn(spec, (out, err))
        else:
            stdin = open(spec.stdin, "rb") if spec.stdin else subprocess.DEVNULL  # noqa: SIM115
            try:
                process = subprocess.Popen(
                    spec.argv, env=spec.env, cwd=spec.cwd, stdin=stdin,
                    stdout=subprocess.DEVNULL if out is None else out,
                    stderr=(subprocess.STDOUT if err is not None and err == out else
                            subprocess.DEVNULL if err is None else err),
                    start_new_session=True, close_fds=True,
                    preexec_fn=_binder(spec.cpus) if spec.cpus else None)
            finally:
                if spec.stdin:
                    stdin.close()
    except BaseException:
        for pending in pendings:
            streams.discard(pending)
        raise
    finally:
        for fd in {out, err} - {None} - held:
            os.close(fd)  # the child has its own copy; only pending ones wait for its end
    return process, tuple(pendings)


class _Spawned:
    """What ``_posix_spawn`` returns: the pid, and a ``returncode`` slot like Popen's."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None


def _posix_spawn(spec: ProcessSpec, opened: Optional[tuple] = None) -> _Spawned:
    """The fast path for tasks that run in the service's own directory, unbound.

    ``posix_spawn`` (clone + exec in libc) costs the spawning thread less Python work than
    ``Popen``. Our descriptors are close-on-exec (Python's default), so the child gets only
    0, 1 and 2. The executable is looked up in the task's own PATH, as Popen does.
    ``opened``: the (stdout, stderr) descriptors already open (None: /dev/null), instead
    of opening the paths in the child.
    """
    executable = spec.argv[0]
    if os.sep not in executable:
        found = shutil.which(executable, path=spec.env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(2, "No such file or directory", executable)
        executable = found
    if opened is None and _no_files(spec):
        pid = os.posix_spawn(executable, list(spec.argv), spec.env,
                             file_actions=_null_actions(), setsid=True)
        return _Spawned(pid)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, spec.stdin or os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, spec.stdout or os.devnull,
         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666),
    ]
    if opened is not None:
        del actions[1]
        for target, fd in enumerate(opened, 1):
            actions.append((os.POSIX_SPAWN_DUP2, fd, target) if fd is not None else
                           (os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_WRONLY, 0))
    elif spec.stderr and spec.stderr == spec.stdout:
        actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
    else:
        actions.append((os.POSIX_SPAWN_OPEN, 2, spec.stderr or os.devnull,
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666))
    if spec.stdin:
        _check_openable(spec.stdin, os.O_RDONLY)
    for path in ({spec.stdout, spec.stderr} - {None} if opened is None else ()):
        _check_openable(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    pid = os.posix_spawn(executable, list(spec.argv), spec.env, file_actions=actions,
                         setsid=True)
    return _Spawned(pid)


_null: list = []  # the file actions, once made (emptied in a forked copy: _forget_null)


def _null_actions() -> list:
    """File actions giving a child /dev/null as 0, 1 and 2: ``dup2`` of one descriptor
    opened once per process (close-on-exec; the copies are not), so that the child, while
    the spawning thread waits for its exec, makes no path lookup. A forked copy of this
    process (which may have closed descriptors it did not know) opens its own."""
    if not _null:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        _null.extend((os.POSIX_SPAWN_DUP2, fd, target) for target in (0, 1, 2))
    return _null


def _forget_null() -> None:
    _null.clear()


os.register_at_fork(after_in_child=_forget_null)  # no getpid() per spawn to tell a fork


def _check_openable(path: str, flags: int) -> None:
    """Fail like Popen would (an OSError naming the file) before spawning.

    A file action that fails inside posix_spawn reports only an errno; opening here first
    gives the user the path that was wrong.
    """
    if path == os.devnull:
        return
    fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
    os.close(fd)


def _binder(cpus):
    cpu_set = set(cpus)

    def bind() -> None:
        os.sched_setaffinity(0, cpu_set)
    return bind


def last_line(path: Optional[str], skip: Optional[str] = None) -> Optional[str]:
    """The last non-empty line of a file's last 2 kB (for failure messages), ignoring
    lines that start with ``skip``; None when there is none or the file cannot be read."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 2048))
            lines = [ln.strip() for ln in handle.read().decode(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln and not (skip and ln.startswith(skip))]
    return lines[-1] if lines else None
