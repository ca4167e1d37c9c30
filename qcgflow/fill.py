"""``python -m qcgflow.fill SPEC IT [VALUE...]``: a command task whose placeholders take
task results.

::

    compile ── job: exec <python> -m qcgflow.fill ${root_wd}/.qcgflow/<job>/fill.json
               ${it} ${ncores} ...        (the runtime fills its variables in these args)
            ── write_calls: fill.json = {task, mapped, shell, template, vars, refs}
    task    ── read fill.json, load the predecessors' result files (pickle), render them,
               fill the template as the runtime would (refs + the runtime's values, ``$$`` -> ``$``
               in each of its two stages)
            ── os.execvpe(bash -c SCRIPT | EXEC ARGS...): the process, its exit status,
               stdout / stderr, wall time and signals are the real command's
            ── a result that cannot be rendered: one line on stderr, the error in
               ``<job>/result.pkl`` (``result.<it>.pkl``) for the session, exit status 1

The template travels in the spec file, not in the job's arguments, so the runtime never
sees the ref placeholders; the runtime's variables used by the template (``${it}``,
``${itval}``, ``${ncores}``, ``${nnodes}``, ``${nlist}``, ``${root_wd}``, and the submit
stage ones such as ``${jname}``) are passed as arguments, which the runtime (ours or
upstream) substitutes as in any job.

How a result renders (``render``):

* a str as it is; a bool, int, float (any ``numbers.Number``) or ``os.PathLike`` by
  ``str()``;
* a ``CommandResult`` as its standard output text without trailing newlines (what
  ``$(command)`` gives in bash);
* a list or tuple of those as its items separated by spaces (a mapped ref's results);
* anything else (None, dict, set, bytes, nested lists, other objects) is an error naming
  the task, the placeholder and the producer.

In a shell template every rendered item is shell-quoted (``shlex.quote``): one word, taken
literally (no ``$``, glob or command expansion), so the template must not quote it again.
In ``exec`` / ``args`` (``qcgflow.mpi``) there is no shell: the text is inserted as it is.

Under an MPI model the runtime starts this helper once per rank (mpirun ... python -m
qcgflow.fill ...); every rank fills the same template from the same files and execs the
same program, so the ranks run what an unfilled template would run.

Imported by every such task: os, sys, json, shlex, numbers, signal, pickle and the
placeholder grammar (``qcgflow.runtime.placeholders``: re) only;
cloudpickle (~15 ms) is imported only when a result needs it to load (result files are
cloudpickle's, which plain ``pickle`` reads), or to record a failure.
"""

import json
import numbers
import os
import pickle
import shlex
import signal
import sys

import qcgflow.runtime.placeholders as placeholders

USAGE = "usage: python -m qcgflow.fill SPEC_FILE ITERATION [VARIABLE_VALUE...]\n"
SPEC_FILE = "fill.json"
MODULE = "qcgflow.fill"

# The runtime's variables (submit and execution stage) a template may use: passed through
# the job's arguments so that the runtime fills them as in any other job.
RUNTIME_VARIABLES = placeholders.EXECUTION_VARIABLES + placeholders.SUBMIT_VARIABLES


class FillError(ValueError):
    """A result that cannot fill a placeholder (the message names task and placeholder)."""


# --------------------------------------------------------------------------- spec (pure)

def ref_entry(producer: str, placeholder) -> dict:
    """The JSON form of a result placeholder (``payload.ResultOf`` / ``CommandOutput``)."""
    entry = {"producer": producer, "iterations": placeholder.iterations,
             "element": placeholder.element}
    if hasattr(placeholder, "job"):  # ResultOf
        entry["python"] = placeholder.job
    else:
        entry["command"] = [placeholder.wd, placeholder.stdout, placeholder.stderr]
    return entry


def spec(task: str, execution: dict, refs: dict, variables, mapped: bool) -> dict:
    """The content of a fill spec file: ``refs`` maps placeholder -> ``ref_entry``;
    ``variables`` are the runtime variables passed after ``IT`` in the job's arguments."""
    return {"task": task, "mapped": mapped, "execution": execution, "refs": refs,
            "vars": list(variables)}


# --------------------------------------------------------------------------- loading
# The file names are payload's (result_file, CommandOutput.result), repeated here so that
# a filled command does not import cloudpickle (tests check that both agree).

def result_path(base: str, job: str, it=None) -> str:
    """``<base>/<job>/result.pkl`` (``result.<it>.pkl``), as ``payload.result_file``."""
    return os.path.join(base, job, "result.pkl" if it is None else "result.%s.pkl" % it)


class CommandStdout:
    """A command task's result as a fill sees it: the path of its standard output."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path


def stdout_path(root: str, command: list, it) -> str:
    """Where a command task's stdout is (``CommandOutput.result(root, it).stdout``)."""
    wd, stdout, _ = command
    wd = os.path.normpath(os.path.join(root, wd.replace("${it}", str(it))))
    return os.path.join(wd, stdout.replace("${it}", str(it)))


def _python_value(path: str):
    from qcgflow.build import store  # small results of a session: its result store
    data = store.lookup(path)
    if data is not None:
        result = pickle.loads(data)
    else:
        with open(path, "rb") as handle:
            result = pickle.load(handle)
    if result[0] != "ok":
        raise FillError("its result file %s holds a failure (%s), not a value"
                        % (path, result[2]))
    return result[1]


def load(entry: dict, base: str, it):
    """The value ``entry`` stands for (a list for a mapped producer taken whole)."""
    if entry["iterations"] is None or entry["element"]:
        iterations, single = [None if entry["iterations"] is None else it], True
    else:
        iterations, single = range(entry["iterations"]), False
    if "python" in entry:
        values = [_python_value(result_path(base, entry["python"], i)) for i in iterations]
    else:
        root = os.path.dirname(base)
        values = [CommandStdout(stdout_path(root, entry["command"], it if i is None else i))
                  for i in iterations]
    return values[0] if single else values


# --------------------------------------------------------------------------- rendering

def _scalar(value, name: str) -> str:
    if isinstance(value, str):
        return str(value)
    kind = type(value)
    if kind is CommandStdout or (kind.__name__ == "CommandResult" and
                                 kind.__module__ == "qcgflow.build.payload"):
        path = value.path if kind is CommandStdout else value.stdout
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read().rstrip("\n")
        except FileNotFoundError:  # printed nothing: a default output is created
            if os.path.isdir(os.path.dirname(path)):  # only when written (streams.py)
                return ""
            raise
    if isinstance(value, (numbers.Number, os.PathLike)):
        return str(os.fspath(value) if isinstance(value, os.PathLike) else value)
    raise FillError("%s has no text form to fill ${%s}: return a str, a number, a path or "
                    "a list of them" % (_describe(value), name))


def _describe(value) -> str:
    if value is None:
        return "None (did the task return a value?)"
    return "a %s" % type(value).__name__


def render(value, name: str, quote: bool) -> str:
    """The text ``value`` fills ``${name}`` with (see the module docstring).

    Raises:
        FillError: the value has no text form (its message lacks the task's name).
    """
    items = value if type(value) in (list, tuple) else [value]
    texts = []
    for item in items:
        if type(item) in (list, tuple):
            raise FillError("a nested %s has no text form to fill ${%s}: return a flat list"
                            % (type(item).__name__, name))
        texts.append(_scalar(item, name))
    if quote:
        texts = [shlex.quote(text) for text in texts]
    return " ".join(texts)


def substitute(text: str, values: dict) -> str:
    """The runtime's two stages over ``text`` (as upstream's, in THE grammar of
    ``runtime/placeholders.py``): ``$$`` -> ``$`` (the submit stage, whose variables come in
    ``values`` too), then ``${name}`` / ``$name`` in ``values`` replaced and ``$$`` -> ``$``
    again, other placeholders kept; so a filled template reads as the runtime would have
    read it (inserted values are not rescanned)."""
    if "$" not in text:
        return text
    return placeholders.substitute(placeholders.substitute(text, {}, unescape=True), values,
                                   unescape=True)


def command(fill_spec: dict, base: str, it, variables: dict) -> list:
    """The argv of the real command: the template with refs and runtime values filled.

    Raises:
        FillError: a result cannot be rendered or read (message names task and placeholder).
    """
    execution = fill_spec["execution"]
    shell = "script" in execution
    values = dict(variables)
    for name, entry in fill_spec["refs"].items():
        try:
            value = load(entry, base, it)
            values[name] = render(value, name, shell)
        except FillError as error:
            raise FillError("task %s: ${%s} from the result of task %s: %s"
                            % (fill_spec["task"], name, entry["producer"], error)) from None
        except Exception as error:  # noqa: BLE001 - a missing or broken result file,
            # or a class its unpickling needs: the task fails with the reason, one line
            raise FillError("task %s: ${%s}: cannot load the result of task %s: %s"
                            % (fill_spec["task"], name, entry["producer"],
                               str(error).splitlines()[0] if str(error) else
                               type(error).__name__)) from None
    if shell:
        return ["/bin/bash", "-c", substitute(execution["script"], values)]
    return [substitute(execution["exec"], values)] + \
        [substitute(arg, values) for arg in execution.get("args", ())]


# --------------------------------------------------------------------------- process

def _exec(argv: list, task: str) -> int:
    """Become ``argv``; returns only when it cannot be started (126 / 127, as bash)."""
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE and SIGXFSZ and a forked warm worker may hold a signal mask:
    # the real command starts with the defaults, as a process the runtime spawns does.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        os.execvpe(argv[0], argv, dict(os.environ))
    except OSError as error:
        sys.stderr.write("qcgflow: task %s: cannot start %s: %s\n"
                         % (task, argv[0], error.strerror or error))
        return 127 if isinstance(error, FileNotFoundError) else 126
    return 126  # pragma: no cover - execvpe returns only by raising


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) < 2:
        sys.stderr.write(USAGE)
        return 2
    spec_path, it = args[0], args[1]
    try:
        with open(spec_path, encoding="utf-8") as handle:
            fill_spec = json.load(handle)
    except (OSError, ValueError) as error:
        sys.stderr.write("qcgflow.fill: cannot read the spec file %s: %s\n" % (spec_path, error))
        return 2
    if len(args) - 2 != len(fill_spec["vars"]):
        sys.stderr.write("qcgflow.fill: %s expects %d variable values after the iteration, "
                         "got %d\n" % (spec_path, len(fill_spec["vars"]), len(args) - 2))
        return 2
    base = os.path.dirname(os.path.dirname(os.path.abspath(spec_path)))
    result = result_path(base, fill_spec["task"], it if fill_spec["mapped"] else None)
    try:
        os.unlink(result)  # a failure recorded by an earlier attempt (retries)
    except FileNotFoundError:
        pass
    try:
        argv_real = command(fill_spec, base, it, dict(zip(fill_spec["vars"], args[2:])))
    except FillError as error:
        sys.stderr.write("qcgflow: %s\n" % error)
        from qcgflow.build.payload import write_error  # cloudpickle: only on this path
        write_error(result, FillError(str(error)))
        return 1
    return _exec(argv_real, fill_spec["task"])


if __name__ == "__main__":
    sys.exit(main())
