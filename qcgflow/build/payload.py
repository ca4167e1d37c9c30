"""Call and result files of Python tasks (cloudpickle), shared by the session and the runner.

::

    session ── write_call ──> <root>/.qcgflow/<job>/call.pkl
                                 {"fn", "args": Packed((args, kwargs)), "kwargs": None,
                                  "map": [element or Packed(element)] | placeholder,
                                  "source", ["skip"]}  refs replaced by ResultOf /
                                 CommandOutput placeholders (paths relative to <root>/.qcgflow)
    runner  ── read_call, resolve(placeholders -> predecessors' results), run,
               write_result ──> <root>/.qcgflow/<job>/result.pkl (or result.<it>.pkl)
                                 ("ok", value) | ("error", exception|None, type name, traceback)
    session ── read_result <── every result file the target needs

A session on its own service (qcgflow/session/fastpath.py) passes a small call inline
(``inline:<base64>`` as CALL: no call file) and gives its tasks a result store: a small
"ok" result is then a record in the worker's store (qcgflow/build/store.py), and every
read of a result (``read_result``, ``ResultOf.load``) looks there before the file.

Imported by every task process: only os, sys, time, pickle, cloudpickle and traceback (rule 4;
binascii where a call is inline, and qcgflow.build.store, which imports only os).
"""

import os
import pickle
import sys
import time
import traceback

import cloudpickle

from qcgflow.build import store

CALL_FILE = "call.pkl"
INLINE = "inline:"  # a call argument holding the call itself (base64), not a file's path
INLINE_LIMIT = 6144  # bytes of pickled call: above that, a call file
RUN_DIR = ".qcgflow"


def result_file(job: str, iteration=None) -> str:
    """The result path of ``job`` (or of one iteration), relative to the ``.qcgflow`` dir."""
    if iteration is None:
        return "%s/result.pkl" % job
    return "%s/result.%s.pkl" % (job, iteration)


class ResultOf:
    """Placeholder for a Python task's result in a call: ``iterations`` None = a plain job;
    ``element`` = this iteration's element of a mapped job; else the list of all.
    ``outcomes`` (``qcgflow.any_outcome``): a failed or missing result becomes a
    ``TaskFailed`` in place of the value instead of an error."""

    __slots__ = ("job", "iterations", "element", "outcomes")

    def __init__(self, job: str, iterations=None, element: bool = False,
                 outcomes: bool = False):
        self.job, self.iterations, self.element = job, iterations, element
        self.outcomes = outcomes

    def __getstate__(self):
        return (self.job, self.iterations, self.element, self.outcomes)

    def __setstate__(self, state):
        self.job, self.iterations, self.element = state[:3]
        self.outcomes = state[3] if len(state) > 3 else False  # call files of before

    def __repr__(self):
        return "ResultOf(%r, %r, %r, outcomes=%r)" % self.__getstate__()

    def __eq__(self, other):
        return type(other) is ResultOf and self.__getstate__() == other.__getstate__()

    def __hash__(self):  # placeholders may sit in sets
        return hash(self.__getstate__())

    def load(self, base: str, it):
        if self.outcomes:
            if self.iterations is None:
                return load_outcome(os.path.join(base, result_file(self.job)), self.job)
            return [load_outcome(os.path.join(base, result_file(self.job, i)),
                                 "%s:%d" % (self.job, i)) for i in range(self.iterations)]
        if self.iterations is None:
            return load_value(os.path.join(base, result_file(self.job)))
        if self.element:
            return load_value(os.path.join(base, result_file(self.job, it)))
        return [load_value(os.path.join(base, result_file(self.job, i)))
                for i in range(self.iterations)]


class CommandResult:
    """What a command task produced: ``exit_code``, ``wd`` and the ``stdout`` / ``stderr``
    file paths (absolute). A default output file exists only if the command wrote to it
    (``read_stdout`` reads a missing one as empty)."""

    __slots__ = ("exit_code", "wd", "stdout", "stderr")

    def __init__(self, exit_code: int, wd: str, stdout: str, stderr: str):
        self.exit_code, self.wd, self.stdout, self.stderr = exit_code, wd, stdout, stderr

    def __getstate__(self):
        return (self.exit_code, self.wd, self.stdout, self.stderr)

    def __setstate__(self, state):
        self.exit_code, self.wd, self.stdout, self.stderr = state

    def __eq__(self, other):
        return type(other) is CommandResult and self.__getstate__() == other.__getstate__()

    def __hash__(self):
        return hash(self.__getstate__())

    def __repr__(self):
        return "CommandResult(exit_code=%r, wd=%r, stdout=%r, stderr=%r)" % self.__getstate__()

    def read_stdout(self) -> str:
        """The text the command wrote to its standard output ("" when it wrote nothing:
        qcgflow's default output files exist only when written)."""
        try:
            with open(self.stdout, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            if os.path.isdir(os.path.dirname(self.stdout)):
                return ""
            raise


class CommandOutput:
    """Placeholder for a command task's result: paths relative to the run's root (``${it}``
    stands for the iteration); ``iterations``/``element`` as in ``ResultOf``."""

    __slots__ = ("wd", "stdout", "stderr", "iterations", "element")

    def __init__(self, wd, stdout, stderr, iterations=None, element=False):
        self.wd, self.stdout, self.stderr = wd, stdout, stderr
        self.iterations, self.element = iterations, element

    def __getstate__(self):
        return (self.wd, self.stdout, self.stderr, self.iterations, self.element)

    def __setstate__(self, state):
        self.wd, self.stdout, self.stderr, self.iterations, self.element = state

    def result(self, root: str, it) -> CommandResult:
        def path(template):
            return os.path.join(root, template.replace("${it}", str(it)))
        wd = os.path.normpath(path(self.wd))
        return CommandResult(0, wd, os.path.join(wd, self.stdout.replace("${it}", str(it))),
                             os.path.join(wd, self.stderr.replace("${it}", str(it))))

    def load(self, base: str, it):
        root = os.path.dirname(base)
        if self.iterations is None or self.element:
            return self.result(root, it)
        return [self.result(root, i) for i in range(self.iterations)]


def resolve(obj, base: str, it=None):
    """``obj`` with every placeholder (also inside lists, tuples, dicts, sets) replaced by
    the value it stands for; ``base`` is the ``.qcgflow`` directory, ``it`` the iteration."""
    kind = type(obj)
    if kind is ResultOf or kind is CommandOutput:
        return obj.load(base, it)
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return kind(resolve(item, base, it) for item in obj)
    if kind is dict:
        return {key: resolve(value, base, it) for key, value in obj.items()}
    return obj


# --------------------------------------------------------------------------- files

def _dump(path: str, obj) -> None:
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as handle:
        cloudpickle.dump(obj, handle)
    os.replace(tmp, path)  # readers never see half a file


def _dumps(obj) -> bytes:
    """``cloudpickle.dumps(obj)``, by the C pickler where that gives the same: cloudpickle's
    hook runs in Python for every object. Not where the C pickler fails (lambdas, local
    classes), nor where it would refer to ``__main__`` (cloudpickle sends those by value:
    the reader's ``__main__`` is another one) or to modules registered by value."""
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - anything the C pickler refuses
        return cloudpickle.dumps(obj)
    if b"__main__" in data or getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES",
                                      None):
        return cloudpickle.dumps(obj)
    return data


def _write_result(path: str, obj) -> None:
    """Write a result file in place: one ``open``, no temporary name to rename.

    Nobody reads a result before its task has ended (the runtime reports the end after the
    runner returned), and a task killed while writing has not succeeded: its half file is
    never read as a value, and the next attempt truncates it.
    """
    _write_data(path, _dumps(obj))


def _write_data(path: str, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:  # a task whose call was inline has no directory yet
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _load(path: str):
    # plain reads, no file object: a gather loads thousands of these (~4 us each, not ~7)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) == _FIRST_READ:  # a big one: read on to the end
            chunks = [data]
            while True:
                more = os.read(fd, 1 << 20)
                if not more:
                    break
                chunks.append(more)
            data = b"".join(chunks)
    finally:
        os.close(fd)
    return pickle.loads(data)


_FIRST_READ = 1 << 16


class Packed:
    """A value pickled on its own inside a call file: every task unpickles its own copy,
    so a task in a persistent worker (runtime/launch/taskworker.py) that mutates its
    arguments leaves the next task's copy alone, as separate processes would."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return (Packed, (self.data,))

    def value(self):
        return cloudpickle.loads(self.data)


_SCALARS = frozenset((int, float, complex, str, bytes, bool, type(None)))  # never mutated


def _pack(value):
    return value if type(value) in _SCALARS else Packed(_dumps(value))


def _unpack(value):
    return value.value() if type(value) is Packed else value


def write_call(path: str, fn, args, kwargs, mapped=None, skip=None, outputs=None) -> None:
    """Write a call file (see ``call``)."""
    _dump(path, call(fn, args, kwargs, mapped, skip, outputs))


def inline_call(data: bytes):
    """The runner's CALL argument holding a call itself (``INLINE`` + base64 of ``data``,
    its pickle), or None when ``data`` is bigger than ``INLINE_LIMIT`` (then write a call
    file). Such an argument runs on any service (no ``$``: nothing for it to replace)."""
    if len(data) > INLINE_LIMIT:
        return None
    import binascii
    return INLINE + binascii.b2a_base64(data, newline=False).decode("ascii")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` as the file ``path`` (a pickled call: ``cloudpickle.dumps(call(...))``)
    under a temporary name renamed at the end: readers see the whole file or none."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)  # readers never see half a file


def call(fn, args, kwargs, mapped=None, skip=None, outputs=None) -> dict:
    """A call file's content; ``mapped`` is the list of elements (or a placeholder of one);
    ``skip``: iterations whose result file is already in place (reused, qcgflow.session.cache);
    ``outputs``: the declared outputs, removed before the call and checked after it.

    The function's source lines travel with it, so that a traceback written by the runner
    shows them even when cloudpickle ships the function by value (its code then has no
    file the task's machine could read). The arguments, and each element that is not a
    scalar, are pickled apart (``Packed``): a task loads only its own element, and a
    worker that keeps the file loaded gives each task fresh copies.
    """
    if mapped is not None and type(mapped) not in (ResultOf, CommandOutput):
        mapped = [_pack(element) for element in mapped]
    # the arguments by the C pickler where that gives the same (_dumps): a third of the
    # caller's time per .remote went to cloudpickle's Python hook walking plain arguments
    content = {"fn": fn, "args": Packed(_dumps((tuple(args), dict(kwargs)))),
               "kwargs": None, "map": mapped, "source": _source_of(fn)}
    if skip:
        content["skip"] = frozenset(skip)
    if outputs:
        content["outputs"] = list(outputs)
    return content


_SOURCES: dict = {}  # code object -> its source lines: a loop of .remote calls asks again
_MAX_SOURCES = 1024


def _source_of(fn):
    """``(first line number, lines)`` of ``fn``'s source, or None when unknown (read once
    per code object: an edited and reloaded function has a new one)."""
    key = getattr(fn, "__code__", None)
    if key is not None and key in _SOURCES:
        return _SOURCES[key]
    import inspect  # only where calls are written, never in the task process

    try:
        lines, first = inspect.getsourcelines(fn)
        # the file name too: cloudpickle renames the code of functions pickled by value
        # (those of a script, of __main__) to <dynamic-code>; tracebacks should name the file
        source = first, lines, os.path.abspath(inspect.getsourcefile(fn) or fn.__code__.co_filename)
    except (OSError, TypeError):
        source = None
    if key is not None:
        if len(_SOURCES) >= _MAX_SOURCES:
            _SOURCES.clear()
        _SOURCES[key] = source
    return source


# A worker runs many tasks of one function: what it found or registered, per file name.
_SOURCES_ON_DISK: set = set()  # code files that exist here: nothing to register
_REGISTERED: dict = {}  # file name -> (the source registered, its linecache entry)


def _register_source(fn, source) -> None:
    """Let tracebacks find the lines of a function whose file is not here."""
    code = getattr(fn, "__code__", None)
    if code is None or source is None:
        return
    name = code.co_filename
    if name == "<dynamic-code>" and len(source) > 2 and source[2]:
        name = source[2]
        try:
            fn.__code__ = code.replace(co_filename=name)
        except (AttributeError, TypeError, ValueError):
            name = code.co_filename  # not a plain function: keep cloudpickle's name
    if name in _SOURCES_ON_DISK:
        return
    done = _REGISTERED.get(name)
    if done is not None and done[0] is source:
        linecache = sys.modules.get("linecache")
        if linecache is not None and linecache.cache.get(name) is done[1]:
            return  # still registered (a task may have cleared linecache)
    if os.path.exists(name):
        _SOURCES_ON_DISK.add(name)
        return
    import linecache  # small, and only needed when the source travelled with the call

    first, lines = source[0], source[1]
    padded = [""] * (first - 1) + list(lines)
    entry = linecache.cache[name] = (sum(map(len, padded)), None, padded, name)
    _REGISTERED[name] = (source, entry)


def read_call(path: str) -> dict:
    """The call in ``path`` as ``write_call`` was given it (arguments and elements
    unpacked)."""
    return _unpacked(_load(path))


def _unpacked(call: dict) -> dict:
    call = dict(call)
    if type(call["args"]) is Packed:
        call["args"], call["kwargs"] = call["args"].value()
    mapped = call["map"]
    if mapped is not None and type(mapped) not in (ResultOf, CommandOutput):
        call["map"] = [_unpack(element) for element in mapped]
    return call


_CALLS: dict = {}  # path -> (identity of the file, call): a worker runs many iterations


def _cached_call(path: str) -> dict:
    """The call in ``path``, loaded once per process while the file is the same file
    (a rewritten call file, e.g. by a resume, is a new inode: loaded again); an ``INLINE``
    argument is the call itself."""
    if path.startswith(INLINE):
        entry = _CALLS.get(path)
        if entry is None:
            import binascii
            entry = (None, pickle.loads(binascii.a2b_base64(path[len(INLINE):])))
            if len(_CALLS) >= 16:
                _CALLS.clear()
            _CALLS[path] = entry
        return entry[1]
    info = os.stat(path)
    key = (info.st_ino, info.st_mtime_ns, info.st_size)
    entry = _CALLS.get(path)
    if entry is not None and entry[0] == key:
        return entry[1]
    call = _load(path)
    if len(_CALLS) >= 16:
        _CALLS.clear()
    _CALLS[path] = (key, call)
    return call


def write_value(path: str, value, seconds=None) -> None:
    """The result ``("ok", value)`` of ``path``: in this task's result store when it has
    one and the value is small (qcgflow/build/store.py; with ``seconds``, the call's run
    time beside it), else in the file ``path``."""
    data = _dumps(("ok", value))
    if store.ENV in os.environ and store.put(path, data, seconds):
        return
    _write_data(path, data)


def write_error(path: str, error: BaseException) -> None:
    """Write ``error`` with its formatted traceback; an exception that cannot be pickled
    travels as its type name and text."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    name = type(error).__qualname__
    try:
        _write_result(path, ("error", error, name, text))
    except Exception:  # the exception (or something it holds) does not pickle
        _write_result(path, ("error", None, name, text))


def read_result(path: str):
    """``("ok", value)`` or ``("error", exception|None, type name, traceback text)``: the
    record of ``path`` in the run's result store, else the file ``path``."""
    data = store.lookup(path)
    if data is not None:
        return pickle.loads(data)
    return _load(path)


def result_data(path: str):
    """The pickled result of ``path`` (its store record, else the file), None if neither."""
    data = store.lookup(path)
    if data is not None:
        return data
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def load_value(path: str):
    """The value in a result file; a failed result here is a broken run (never expected:
    the runtime does not start a task whose predecessor failed)."""
    result = read_result(path)
    if result[0] != "ok":
        raise RuntimeError("the input %s holds a failure (%s), not a value" % (path, result[2]))
    return result[1]


def _is_stream(path: str) -> bool:
    """``path`` is this task's stdout or stderr (open already: removing it loses them)."""
    try:
        here = os.stat(path)
        return any(os.path.samestat(here, os.fstat(fd)) for fd in (1, 2))
    except OSError:
        return False


def _its(path: str, it) -> str:
    return path if it is None else path.replace("${it}", str(it))


def load_outcome(path: str, task: str):
    """The value in a result file, or a ``TaskFailed`` (``task``: its job or ``job:it``)
    when the task raised (``cause``: the exception) or left no result (it did not run:
    a dependency failed, it was canceled or killed, e.g. by its wall time)."""
    from qcgflow.errors import TaskFailed  # errors is light, but the runner needs it only here
    try:
        result = read_result(path)
    except FileNotFoundError:
        return TaskFailed(task, messages="no result: it did not run or was killed")
    except Exception as exc:  # noqa: BLE001 - a damaged file is that member's failure
        return TaskFailed(task, messages="cannot load its result: %s" % exc)
    if result[0] == "ok":
        return result[1]
    return TaskFailed(task, cause=result[1], cause_type=result[2], remote_traceback=result[3])


def run_call(call_path: str, result_path: str, it=None) -> int:
    """Run the call in ``call_path``; write the result; 0 on success, 1 when it raised."""
    # <base>/<job>/result...: the call may be inline (no path of its own)
    base = os.path.dirname(os.path.dirname(os.path.abspath(result_path)))
    try:
        call = _cached_call(call_path)
        if it is not None and int(it) in call.get("skip", ()):
            sys.stdout.write("qcgflow: iteration %s reused from an earlier run\n" % it)
            return 0
        _register_source(call["fn"], call.get("source"))
        args, kwargs = call["args"], call["kwargs"]
        if type(args) is Packed:
            args, kwargs = args.value()
        args = resolve(args, base, it)
        kwargs = resolve(kwargs, base, it)
        if call["map"] is not None:
            mapped = call["map"]
            element = mapped.load(base, it) if type(mapped) in (ResultOf, CommandOutput) \
                else resolve(_unpack(mapped[int(it)]), base, it)
            args = (element,) + tuple(args)
        declared = call.get("outputs") or ()
        for path in declared:  # a re-run must not find (or append to) an earlier run's file;
            # one shared by the iterations was removed before the job (qcgflow.build.outputs)
            if (it is None or "${it}" in path) and os.path.lexists(_its(path, it)) \
                    and not _is_stream(_its(path, it)):
                os.unlink(_its(path, it))
        declared = [_its(path, it) for path in declared]
        started = time.perf_counter()
        value = call["fn"](*args, **kwargs)
        seconds = time.perf_counter() - started if it is None else None
        for path in declared:
            if not os.path.exists(path):
                raise FileNotFoundError("the declared output %s was not made"
                                        % os.path.abspath(path))
    except BaseException as error:  # noqa: B902 - everything goes back to the caller
        sys.stdout.flush()
        write_error(result_path, error)
        traceback.print_exc()
        return 1
    try:
        write_value(result_path, value, seconds)
    except Exception as error:  # the value does not pickle: that is the task's failure
        write_error(result_path, error)
        traceback.print_exc()
        return 1
    return 0
