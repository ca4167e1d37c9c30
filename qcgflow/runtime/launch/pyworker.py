"""Warm Python workers: ``python -m MODULE ...`` jobs forked from a zygote, not exec'd.

::

    Executor --launch(ProcessSpec)--> WarmLauncher --not warmable--> LocalLauncher (processes)
        ^                                  | warmable: ("run", ...) frames, sender thread
        |                                  v
        |                        zygote (launch/zygote.py, one per service, started on the
        |                                first warmable job) --fork--> child per task
        |                                  | ("started" | "error" | "exit") frames
        '-- on_started / on_exit / on_error <-- socket readable (EventLoop)

A job is warmable when its command is ``<python> -m MODULE ARGS`` with ``<python>`` this
service's interpreter (``sys.executable``, or a name or path in the same directory that
resolves to the same file: a venv's python is a different directory, hence not warmable),
it was built without modules, venv, script or a non-default model (``ProcessSpec.warm``),
and the environment variables read while an interpreter or a native library starts
(``PYTHON*``, ``LD_*``, ``LANG``, ``LC_*``, ``OMP_*``, ...) are those of the zygote.
Everything else, and every job after the zygote failed, runs as a normal process.

Jobs of the modules in ``reusable_modules`` (the service's ``--warm-modules``: for
``qcgflow service``, ``python -m qcgflow.runner``, the graph API's Python tasks) do not even
cost a fork: they run one after another in persistent workers forked by the zygote, which
the service talks to directly (launch/workerpool.py, launch/taskworker.py), unless the
job's environment has ``QCGFLOW_WORKER_REUSE=0``.

The zygote forks the child, so it reaps it and reports the exit status and rusage; the
child is a session leader, so ``signal`` (wall time, cancel, kill) reaches its process
group directly from here, exactly as for a normal process. A pid is signalled only between
"started" and "exit", while the zygote has not reaped it, or in the moment the "exit"
frame is in flight (a pid is not reused that fast).
"""

import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Optional

from .local import ExitInfo, ProcessSpec

_log = logging.getLogger(__name__)

REUSE_ENV = "QCGFLOW_WORKER_REUSE"  # "0" in a task's environment: a fresh child instead
_HEADER = struct.Struct("!I")
_STARTUP_PREFIXES = ("PYTHON", "LD_", "LC_", "OMP_", "OPENBLAS_", "MKL_", "GOTO", "MALLOC_")
_STARTUP_NAMES = ("LANG", "LANGUAGE", "TZ")


def reusable(module: str, env, modules) -> bool:
    """True when a task of ``module`` with environment ``env`` may run in a worker:
    ``module`` is one of ``modules`` (the service's --warm-modules). Here, not in
    taskworker (the workers' module): the service need not import that one."""
    return module in modules and env.get(REUSE_ENV, "1") != "0"


def startup_environment(env: Mapping[str, str]) -> Dict[str, str]:
    """The part of an environment that acts while a process starts (not later)."""
    return {key: value for key, value in env.items()
            if key.startswith(_STARTUP_PREFIXES) or key in _STARTUP_NAMES}


def warm_module(spec: ProcessSpec, executable: str = sys.executable) -> Optional[tuple]:
    """(interpreter path, module) when a warm worker may run ``spec``, else None."""
    argv = spec.argv
    if not spec.warm or len(argv) < 3 or argv[1] != "-m" or not argv[2] \
            or argv[2].startswith("-"):
        return None
    program = argv[0]
    if program == executable:
        return program, argv[2]
    if os.sep not in program:
        program = shutil.which(program, path=spec.env.get("PATH", os.defpath))
        if program is None:
            return None
    program = os.path.abspath(program)
    if os.path.dirname(program) != os.path.dirname(executable):
        return None
    try:
        same = os.path.samefile(program, executable)
    except OSError:
        return None
    return (program, argv[2]) if same else None


@dataclass
class _Request:
    """A launch waiting for, or running in, a warm worker."""

    spec: ProcessSpec
    on_started: Callable[[int], None]
    on_exit: Callable[[ExitInfo], None]
    on_error: Callable[[str], None]
    rid: int = 0
    pid: Optional[int] = None
    started: float = 0.0
    worker: object = None  # the persistent worker running it (workerpool), if any


class WarmLauncher:
    """A launcher that runs warmable Python jobs in a zygote and the rest in ``inner``.

    Args:
        loop: the service's ``EventLoop``.
        inner: the ``LocalLauncher`` for everything else (and the fallback).
        env: the zygote's environment (the service's task environment).
        cwd: the zygote's working directory (the service's).
        log_path: where the zygote's own stderr goes (its tasks have their own files).
        template: the socket of a client's forked zygote (launch/template.py) to use.
        reusable_modules: modules whose jobs run in persistent workers (--warm-modules).
    """

    def __init__(self, loop, inner, env: Mapping[str, str], cwd: str,
                 log_path: Optional[str] = None, template: Optional[str] = None,
                 reusable_modules: Iterable[str] = ()):
        self._loop = loop
        self._reusable = frozenset(reusable_modules)
        self._template = template
        self._inner = inner
        self._env = dict(env)
        self._startup_env = startup_environment(self._env)
        self._cwd = cwd
        self._log_path = log_path
        self._requests: Dict[int, _Request] = {}
        self._by_pid: Dict[int, _Request] = {}
        self._next_id = 0
        self._process: Optional[subprocess.Popen] = None
        self._sock: Optional[socket.socket] = None
        self._pending = bytearray()   # frames the zygote has not taken yet
        self._flush_timer = None
        self._buffer = b""
        self._broken = False
        self._pool = None  # a workerpool.WorkerPool once the zygote runs
        self._forked = 0

    @property
    def warm_started(self) -> int:
        """Tasks started warm: forked by the zygote or run by a worker (tests, benchmarks)."""
        return self._forked + (self._pool.started if self._pool is not None else 0)

    def __len__(self) -> int:
        return len(self._inner) + len(self._requests) + (len(self._pool) if self._pool else 0)

    @property
    def zygote_pid(self) -> Optional[int]:
        return None if self._process is None else self._process.pid

    def launch(self, spec: ProcessSpec, on_started: Callable[[int], None],
               on_exit: Callable[[ExitInfo], None], on_error: Callable[[str], None]) -> None:
        """As ``LocalLauncher.launch``; warmable jobs go to the zygote."""
        warm = None if self._broken else warm_module(spec)
        if warm is None or not self._same_startup(spec.env):
            self._inner.launch(spec, on_started, on_exit, on_error)
            return
        if self._sock is None and not self._start_zygote():
            self._inner.launch(spec, on_started, on_exit, on_error)
            return
        self._next_id += 1
        request = _Request(spec, on_started, on_exit, on_error, self._next_id)
        if reusable(warm[1], spec.env, self._reusable) and \
                self._pool.launch(request, warm[0], warm[1]):
            return
        self._fork(request)

    def _same_startup(self, env: Mapping[str, str]) -> bool:
        """``startup_environment(env) == startup_environment(zygote's)``, without scanning
        every variable in Python: only those the zygote lacks (set difference, in C) and
        the zygote's own startup variables are looked at."""
        for key in env.keys() - self._env.keys():
            if key.startswith(_STARTUP_PREFIXES) or key in _STARTUP_NAMES:
                return False
        get = env.get
        for key, value in self._startup_env.items():
            if get(key) != value:
                return False
        return True

    def _fork(self, request: "_Request") -> None:
        """Have the zygote fork a child for ``request``."""
        spec = request.spec
        if self._broken:
            self._inner.launch(spec, request.on_started, request.on_exit, request.on_error)
            return
        program, module = warm_module(spec)
        self._requests[request.rid] = request
        self._send(("run", request.rid, program, module, list(spec.argv[3:]),
                    dict(spec.env), spec.cwd, spec.stdin, spec.stdout, spec.stderr,
                    list(spec.cpus) if spec.cpus else None, spec.when_written))

    def signal(self, pid: int, signum: int, node: Optional[str] = None) -> bool:
        """Send ``signum`` to the process group of ``pid``; False if it is gone."""
        request = self._pool.by_pid.get(pid) if self._pool is not None else None
        if request is not None:
            return self._pool.signal(request, signum)
        if pid not in self._by_pid:
            return self._inner.signal(pid, signum, node)
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:  # not yet its own group leader (just forked)
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return False
        return True

    def kill_all(self) -> None:
        if self._pool is not None:
            self._pool.kill_all()
        for pid in list(self._by_pid):
            self.signal(pid, signal.SIGKILL)
        self._inner.kill_all()

    def close(self) -> None:
        """Stop the workers and the zygote (they end when their sockets close), then the
        inner launcher."""
        if self._pool is not None:
            self._pool.close()
        self._stop_zygote()
        self._inner.close()

    # ------------------------------------------------------------------ the zygote
    def _start_zygote(self) -> bool:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spawn, spawn_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = None
        try:
            log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
            self._process = subprocess.Popen(
                [sys.executable, "-m", "qcgflow.runtime.launch.zygote", str(child.fileno()),
                 str(spawn_child.fileno())],
                pass_fds=(child.fileno(), spawn_child.fileno()),
                env=dict(self._env, QCGFLOW_ZYGOTE_TEMPLATE=self._template)
                if self._template else self._env,
                cwd=self._cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, start_new_session=True)
        except OSError as exc:
            _log.warning("cannot start the warm Python worker (%s): Python tasks run as "
                         "processes", exc)
            parent.close()
            spawn.close()
            self._broken = True
            return False
        finally:
            child.close()
            spawn_child.close()
            if log not in (None, subprocess.DEVNULL):
                log.close()
        _log.info("warm Python worker started, pid %d", self._process.pid)
        self._sock = parent
        parent.setblocking(False)
        spawn.settimeout(5.0)  # a spawn request is tiny; the zygote reads it at once
        from .workerpool import WorkerPool  # noqa: PLC0415 - with the zygote: not every start
        self._pool = WorkerPool(self._loop, spawn, lambda modules: self._send(("learn", modules)),
                                self._fork)
        self._loop.add_reader(parent.fileno(), self._receive)
        return True

    def _send(self, message) -> None:
        """Queue one frame and write what the socket takes now; never block the loop
        (the zygote may itself be blocked writing to us)."""
        import pickle  # noqa: PLC0415 - only with warm workers: not in every start
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending += _HEADER.pack(len(data))
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        self._flush_timer = None
        if self._sock is None or not self._pending:
            return
        try:
            sent = self._sock.send(self._pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the zygote is gone: the reader sees EOF and falls back
        del self._pending[:sent]
        if self._pending and self._flush_timer is None:
            self._flush_timer = self._loop.call_later(0.001, self._flush)

    def _stop_zygote(self) -> None:
        if self._sock is None:
            return
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._pending.clear()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        if self._pool is not None:
            self._pool.close_channel()
        if not _wait_exit(self._process, 5.0):
            self._process.kill()
        self._process.wait()

    def _receive(self) -> None:
        try:
            chunk = self._sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._zygote_died()
            return
        import pickle  # noqa: PLC0415 - see _send
        self._buffer += chunk
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            if len(buffer) - offset - _HEADER.size < size:
                break
            start = offset + _HEADER.size
            message = pickle.loads(buffer[start:start + size])
            offset = start + size
            try:
                self._handle(message)
            except Exception:  # one task's broken callback must not lose the others' frames
                _log.exception("handling %s from the warm Python worker failed", message[0])
        self._buffer = buffer[offset:]

    def _handle(self, message) -> None:
        kind, rid = message[0], message[1]
        if kind == "spawned":
            self._pool.spawned(rid, message[2])
            return
        if kind == "worker-exit":
            self._pool.worker_exit(*message[1:])
            return
        request = self._requests.get(rid)
        if request is None:
            return
        if kind == "started":
            request.pid, request.started = message[2], message[3]
            self._by_pid[request.pid] = request
            self._forked += 1
            request.on_started(request.pid)
        elif kind == "error":
            del self._requests[rid]
            request.on_error(message[2])
        elif kind == "exit":
            del self._requests[rid]
            self._by_pid.pop(request.pid, None)
            _, _, pid, status, ended, utime, stime, maxrss = message
            if os.WIFSIGNALED(status):
                sig, code = os.WTERMSIG(status), -os.WTERMSIG(status)
            else:
                sig, code = None, os.WEXITSTATUS(status)
            request.on_exit(ExitInfo(pid, code, sig, request.started, ended, utime, stime,
                                     maxrss))

    def _zygote_died(self) -> None:
        """Tasks not started yet run as processes; started ones are killed and fail."""
        _log.error("the warm Python worker ended unexpectedly (see %s): Python tasks run as "
                   "processes from now on", self._log_path or "its stderr")
        self._broken = True
        waiting = self._pool.zygote_died() if self._pool is not None else []
        self._stop_zygote()
        for request in waiting:
            self._inner.launch(request.spec, request.on_started, request.on_exit,
                               request.on_error)
        requests, self._requests, self._by_pid = self._requests, {}, {}
        for request in requests.values():
            if request.pid is None:
                self._inner.launch(request.spec, request.on_started, request.on_exit,
                                   request.on_error)
                continue
            try:
                os.killpg(request.pid, signal.SIGKILL)
            except OSError:
                pass
            now = request.started
            request.on_exit(ExitInfo(request.pid, -signal.SIGKILL, signal.SIGKILL, now, now))


def _wait_exit(process: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``process`` to end; True if it did. Woken by the exit
    itself (a pidfd), not by Popen.wait's polling sleeps (up to 50 ms late)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # gone already, or no pidfd here
        try:
            process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
