"""Persistent task workers: many ``python -m MODULE ARGS`` jobs, one after another, in ONE
process forked from the zygote (launch/zygote.py), for modules that define
``main(argv) -> int`` and are named by the service's caller (``--warm-modules``; ``qcgflow
service`` names the graph API's runner, the runtime itself names none).

::

    service (pyworker.WarmLauncher)                 worker (this module; the zygote forks
      ── (rid, program, module, args, env|None, ──>  it on the service's request, with one
          wd, stdin, stdout, stderr, cpus)            end of a SOCK_SEQPACKET pair)
                                                     open the task's files, dup2 onto 0/1/2,
      <── ("error", rid, text)  (a file or wd        chdir, environ (diff), bind CPUs,
                                 cannot be opened)   sys.argv, sys.path[0], MODULE.main(args),
      <── ("done", rid, wait status, t1, utime,      flush; restore: /dev/null on 0/1/2,
           stime, maxrss, modules to learn)          the home directory, signal handlers

One datagram each way per task, straight between the service and the worker: the zygote
only forks workers and reaps them (it reports a dead worker's wait status to the service).
``env`` is None when it equals the last task's, ``(changed, removed)`` relative to the last
task's, or (a worker's first task) the whole environment.

What a task sees is what a fresh ``python -m MODULE`` process sees (argv, cwd, environ,
sys.path[0], its own stdio files, CPU binding, exit status as python's), except Python's
global state: modules the task imported stay imported and their globals stay set for the
next task of this worker (the Ray-like trade-off; docs/graph-api.md). A task that needs a
fresh interpreter state sets ``QCGFLOW_WORKER_REUSE=0`` in its environment (``env``
option): the zygote then forks it a child of its own, as for other modules.

Where a process would do something a worker cannot undo, the worker becomes that process
and ends: a task that leaves non-daemon threads running or registers ``atexit`` handlers
(outside an import) is finalised as the interpreter would (threads joined, handlers run)
and the worker exits with the task's status; so does a task ended by KeyboardInterrupt.
``os._exit``, a crash, or a signal (wall time, cancel) end the worker the same way. The
zygote reaps it and reports its wait status, which becomes the task's; the service asks
for a new worker when it needs one.
"""

import _signal
import atexit
import io
import os
import pickle
import resource
import signal
import socket
import sys
import time
import types

from . import streams

MAX_FRAME = 1 << 20
MAX_DONE = 1 << 16
_RESET_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE", "SIGCHLD")
    if hasattr(signal, name))


class _State:
    """What the worker restores between tasks, and what it has told the zygote."""

    def __init__(self, home: str):
        self.home = home
        self.affinity = frozenset(os.sched_getaffinity(0))
        self.bound = self.affinity
        self.handlers = {signum: _signal.getsignal(signum) for signum in _RESET_SIGNALS}
        self.exit_handlers = False  # the running task registered an atexit handler
        register = atexit.register

        def watched(func, *args, **kwargs):
            """atexit.register, noting handlers a task registers (not a module import:
            those belong to the worker, whose modules stay imported)."""
            if not _importing():
                self.exit_handlers = True
            return register(func, *args, **kwargs)
        atexit.register = watched
        self.modules_seen = len(sys.modules)
        self.known = set(sys.modules)
        self.mains = {}
        self.null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.env = dict(os.environ)
        self.env_sent = self.env
        self.env_data = dict(os.environ._data)  # noqa: SLF001
        self.stdio = None  # the (stdout, stderr) made for tasks, reused while intact
        self.stdin = None  # the sys.stdin the last task was given
        self.stdin_null = False  # ... on /dev/null
        self.outputs = []  # the running task's outputs created only when written
        self.spares = streams.Spares()  # empty unnamed outputs kept for the next tasks


def serve(sock: socket.socket, home: str) -> None:
    """The worker's loop (in the forked child; never returns): run tasks until the zygote
    closes its end."""
    global _STATE
    state = _STATE = _State(home)
    _reseed()
    for target in range(3):
        os.dup2(state.null, target)
    # One buffer for every request: recv(MAX_FRAME) would allocate (mmap) and free a
    # megabyte per task, page faults included.
    buffer = bytearray(MAX_FRAME)
    view = memoryview(buffer)
    while True:
        try:
            size = sock.recv_into(buffer)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not size:
            os._exit(0)  # the service is gone (or closing): nothing more to run
        rid, program, module, args, env, wd, stdin, stdout, stderr, cpus, lazy = \
            pickle.loads(view[:size])
        env, changes = _next_environment(state, env)
        try:
            fds = _enter(wd, stdin, stdout, stderr, lazy, state.outputs, state.spares)
        except OSError as exc:  # as Popen's: the task does not start, the path is named
            _reply(sock, ("error", rid, str(exc)))
            continue
        if state.outputs:  # reset to the default by _restore after the task
            signal.signal(signal.SIGTERM, _name_outputs_on_sigterm)
        status, usage = _run_task(state, program, module, args, env, changes, wd, cpus, fds,
                                  not stdin)
        _finish_outputs(state, keep=True)  # named before the service hears "done"
        new = _new_modules(state, wd)
        after = resource.getrusage(resource.RUSAGE_SELF)
        message = ("done", rid, status, time.monotonic(), after.ru_utime - usage.ru_utime,
                   after.ru_stime - usage.ru_stime, after.ru_maxrss, new)
        _reply(sock, message)


def _reply(sock, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_DONE and message[-1]:
        # a big import list (easyvvuq: ~3000 modules, ~350 kB): compressed, it fits in one
        # datagram (the service unpacks it, workerpool.unpack_modules)
        import zlib
        packed = zlib.compress(pickle.dumps(message[-1], protocol=pickle.HIGHEST_PROTOCOL))
        data = pickle.dumps(message[:-1] + (packed,), protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_DONE:  # still too big for a datagram: not learnt
        data = pickle.dumps(message[:-1] + (None,), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        sock.send(data)
    except OSError:
        os._exit(0)  # the service is gone


def _run_task(state, program, module, args, env, changes, wd, cpus, fds, stdin_null):
    """Run one task; returns (wait status as the zygote would see it, rusage before)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for target, fd in enumerate(fds):
        if fd is None:
            os.dup2(state.null, target)
        else:
            os.dup2(fd, target)
            os.close(fd)
    code = 1
    try:
        _set_environ(state, env, changes)
        wanted = frozenset(cpus) if cpus else state.affinity
        if wanted != state.bound:
            os.sched_setaffinity(0, wanted)
            state.bound = wanted
        _stdio(state, stdin_null)
        sys.path[0] = wd
        sys.executable = program
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = main
        code = _call_main(state, module, args)
    except BaseException:  # the task's setup failed (a vanished wd): a failed task
        try:
            import traceback
            traceback.print_exc()
        except BaseException:
            pass
    code = _flush(code)
    if code == -signal.SIGINT or _must_retire(state):
        code = _finalize(code)
        _finish_outputs(state)
        os._exit(code)  # become the process that ends: the zygote reports it
    _restore(state)
    return (code & 0xFF) << 8, usage


def _stdio(state, stdin_null: bool) -> None:
    """A fresh ``sys.stdin`` (its read-ahead must not reach the next task), unless this
    task's and the last one's stdin are both /dev/null (nothing can have been read ahead);
    stdout and stderr are the worker's own wrappers on fds 1/2 unless the task replaced or
    closed them (they were flushed before 1/2 were re-pointed: nothing of the last task is
    left)."""
    out, err = state.stdio or (None, None)
    if out is None or sys.stdout is not out or sys.stderr is not err or out.closed \
            or err.closed or sys.__stdout__ is not out or sys.__stderr__ is not err:
        _rebind_stdio()
        state.stdio = (sys.stdout, sys.stderr)
    elif not (stdin_null and state.stdin_null and sys.stdin is state.stdin
              and sys.__stdin__ is state.stdin and not state.stdin.closed):
        old_in = sys.__stdin__ or sys.stdin
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(
            io.open(0, "rb", closefd=False), encoding=getattr(old_in, "encoding", None),
            errors=getattr(old_in, "errors", None))
    state.stdin, state.stdin_null = sys.stdin, stdin_null


def _call_main(state, module, args) -> int:
    sys.argv = ["-m", *args]
    sys.orig_argv = [sys.executable, "-m", module, *args]
    try:
        main = state.mains.get(module)
        if main is None:
            import importlib
            loaded = importlib.import_module(module)
            main = state.mains[module] = loaded.main
        sys.argv[0] = getattr(sys.modules.get(module), "__file__", None) or module
        return _exit_status(SystemExit(main(list(args))))
    except BaseException:  # noqa: B902 - whatever the task raised becomes its status
        return raised_status()


def _next_environment(state, sent):
    """The next task's environment from what the service sent: None (the last one again),
    a whole dict, or ``(changed, removed)`` relative to the last one (workerpool.py).

    Returns:
        ``(env, changes)``: ``changes`` is ``(changed, removed)`` relative to the
        environment the last task started with, or None when unknown (compare all).
    """
    last = state.env_sent
    changes = None
    if sent is None:
        env = last
        changes = ({}, ())
    elif type(sent) is tuple:
        changed, removed = sent
        env = dict(last)
        env.update(changed)
        for key in removed:
            del env[key]
        changes = sent
    else:
        env = sent
    state.env_sent = env
    if last is not state.env:  # the last request did not run (its files failed)
        changes = None
    return env, changes


def _set_environ(state, env, changes=None) -> None:
    """``os.environ`` becomes ``env``, touching only the variables that differ from the
    last task's: ``changes`` when given, else all are compared (also when the last task
    changed its environment)."""
    environ = os.environ
    if changes is not None and environ._data == state.env_data:  # noqa: SLF001
        changed, removed = changes
        for key in removed:
            del environ[key]
        for key, value in changed.items():
            environ[key] = value
    elif environ._data != state.env_data:  # noqa: SLF001 - the task changed os.environ
        for key in [key for key in environ if key not in env]:
            del environ[key]
        for key, value in env.items():
            if environ.get(key) != value:
                environ[key] = value
    else:
        last = state.env
        for key in last.keys() - env.keys():
            del environ[key]
        for key, value in env.items():
            if last.get(key) != value:
                environ[key] = value
    state.env = env
    state.env_data = dict(environ._data)  # noqa: SLF001 - bytes, as the C library has them


def _flush(code: int) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            if code == 0:
                code = 120  # as python when flushing stdout fails
    return code


def _must_retire(state) -> bool:
    """True when the task left what only a process exit would finish (threads, atexit)."""
    if state.exit_handlers:
        return True
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        main = threading.main_thread()
        return any(not t.daemon for t in threading.enumerate() if t is not main)
    return False


def _importing() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _restore(state) -> None:
    """Close the task's files (/dev/null on 0/1/2), leave its directory, reset signals."""
    for target in range(3):
        os.dup2(state.null, target)
    try:
        os.chdir(state.home)
    except OSError:
        os.chdir("/")
    for signum, handler in state.handlers.items():
        if _signal.getsignal(signum) is not handler:  # not signal's: no enum per call
            signal.signal(signum, handler)
    signal.alarm(0)


def _new_modules(state, wd: str):
    """Modules imported since the last report (outside the task's directory), for the zygote
    to import: workers forked later start with them."""
    if len(sys.modules) == state.modules_seen:
        return None
    state.modules_seen = len(sys.modules)
    new = sys.modules.keys() - state.known
    state.known.update(new)
    prefix = os.path.join(wd, "")
    found = []
    for name in new:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if name == "__main__" or module is None or (origin and origin.startswith(prefix)):
            continue
        found.append((name, origin))
    return found or None


# ------------------------------------------- what a python process does (also forked children)

def _rebind_stdio() -> None:
    """New sys.stdin/stdout/stderr on fds 0/1/2, configured as the interpreter does."""
    old_out = sys.__stdout__ or sys.stdout
    old_in = sys.__stdin__ or sys.stdin
    encoding = getattr(old_out, "encoding", None) or "utf-8"
    errors = getattr(old_out, "errors", None) or "strict"
    # -u / PYTHONUNBUFFERED (the zygote's setting is the task's): raw, write-through streams
    unbuffered = bool(getattr(old_out, "write_through", False))
    buffering = 0 if unbuffered else -1
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.open(0, "rb", closefd=False), encoding=getattr(old_in, "encoding", encoding),
        errors=getattr(old_in, "errors", errors))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.open(1, "wb", buffering, closefd=False), encoding=encoding, errors=errors,
        line_buffering=os.isatty(1), write_through=unbuffered)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.open(2, "wb", buffering, closefd=False), encoding=encoding,
        errors="backslashreplace", line_buffering=True, write_through=unbuffered)



def _reseed() -> None:
    """Fresh processes draw fresh seeds; forked ones would share the zygote's."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:
            pass



def raised_status() -> int:
    """In an ``except`` block: the status python would end with for the exception being
    handled, its traceback printed as python prints it (SystemExit's code; -SIGINT for
    KeyboardInterrupt; 1 for anything else)."""
    kind, exc, tb = sys.exc_info()
    if isinstance(exc, SystemExit):
        return _exit_status(exc)
    if isinstance(exc, KeyboardInterrupt):
        sys.excepthook(kind, exc, tb)
        return -signal.SIGINT
    tb = exc.__traceback__
    sys.excepthook(kind, exc, tb.tb_next if tb is not None else tb)
    return 1


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1



def _finalize(code: int) -> int:
    """What the interpreter does on exit: join threads, atexit, flush the std streams."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    import atexit
    atexit._run_exitfuncs()
    code = _flush(code)
    if code == -signal.SIGINT:  # as python: die of SIGINT after KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    return code


_STATE = None  # the worker's state (serve), for the SIGTERM handler


def _name_outputs_on_sigterm(signum, _frame) -> None:
    """SIGTERM (the wall-time limit, a cancel) while a task with outputs created only when
    written runs: name what it wrote, then die of the signal as the process would. Only
    while such a task runs (and it may replace the handler); os._exit, a crash or SIGKILL
    still lose those outputs (the worker holds them)."""
    _finish_outputs(_STATE)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _finish_outputs(state, keep: bool = False) -> None:
    """Name the finished task's outputs that were written (launch/streams.py); ``keep``
    (the task ended and the worker goes on, 0/1/2 on /dev/null again): the empty ones
    nobody else can write to stay open for the next tasks (``streams.Spares``)."""
    outputs = state.outputs
    while outputs:
        pending = outputs.pop()
        if not (keep and state.spares.keep(pending)):
            streams.finish(pending)


def _open_files(wd, stdin, stdout, stderr, lazy=(), pendings=None):
    """Open the task's stdin/stdout/stderr in the zygote, so a bad path is a start error
    with the path in it (like Popen's) rather than a failed child. ``lazy``: the streams
    created only when written; their pending files are added to ``pendings`` (the caller
    keeps them until the task ends; the returned fds are its own to close)."""
    if not os.path.isdir(wd):
        raise FileNotFoundError(2, "No such file or directory", wd)
    opened = _enter_files(stdin, stdout, stderr, lazy, pendings)
    try:
        return [os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC) if fd is None else fd
                for fd in opened]
    except OSError:
        for fd in opened:
            if fd is not None:
                os.close(fd)
        raise


def _enter(wd, stdin, stdout, stderr, lazy=(), pendings=None, spares=None):
    """A worker's ``_open_files``: enter ``wd`` (a missing or closed one is a start error
    naming it, as there) and open the task's files; None stands for the worker's own
    /dev/null (no open, no close). A failure leaves nothing open. ``spares``: the
    worker's kept outputs (streams.Spares)."""
    os.chdir(wd)
    return _enter_files(stdin, stdout, stderr, lazy, pendings, spares)


def _enter_files(stdin, stdout, stderr, lazy, pendings, spares=None):
    """[stdin, stdout, stderr] descriptors (None: none given), each the caller's to close;
    a lazy output's ``Pending`` (holding a descriptor of its own) goes to ``pendings``.
    The task gets a description of a pending file of its own (streams.task_copy), not a
    copy of ours, so that a worker can tell later whether anything the task left can still
    write to it (``spares``: the worker's kept outputs, streams.Spares)."""
    opened = []
    own: list = []
    try:
        opened.append(os.open(stdin, os.O_RDONLY | os.O_CLOEXEC) if stdin else None)
        out, err = streams.open_pair(stdout, stderr, lazy, own, spares)
        held = {pending.fd: pending for pending in own}
        # the caller closes what it is given: a pending file's descriptor stays ours
        opened.append(None if out is None else
                      streams.task_copy(held[out]) if out in held else out)
        if err is not None and err == out:
            opened.append(os.dup(opened[1]))
        else:
            opened.append(None if err is None else
                          streams.task_copy(held[err]) if err in held else err)
    except OSError:
        for fd in opened:
            if fd is not None:
                os.close(fd)
        for pending in own:
            streams.discard(pending)
        raise
    if pendings is not None:
        pendings.extend(own)
    else:
        streams.finish_all(own)
    return opened
