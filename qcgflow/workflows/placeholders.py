"""The ``${...}`` of a workflow file, checked when it is read.

Every braced placeholder ``${name}`` of a task's command (``exec``, its ``args``,
``script``), of its ``stdin`` / ``stdout`` / ``stderr`` and of its ``wd`` and ``env``
options must be one of:

* the runtime's variables: ``${it}`` and ``${itval}`` (in a sweep only), ``${root_wd}``,
  ``${ncores}``, ``${nnodes}``, ``${nlist}``, and QCG-PilotJob's submit-time ones
  (``${jname}``, ``${uniq}``, ``${rcnt}``, ``${sname}``, ``${date}``, ``${time}``,
  ``${dateTime}``);
* a parameter of the task's sweep (``foreach: {seed: ...}`` -> ``${seed}``), in the command
  and the streams;
* ``${workflow_dir}``: the absolute directory of the workflow file, filled in when the file
  is read.

Anything else is a one-line error naming the file, the line and the closest known name
(``wf.yaml:7: tasks.sim.stdout: unknown placeholder ${itvall}; did you mean ${itval}?``).
A placeholder meant for the shell is written ``\\${name}``: the backslash is dropped and
``${name}`` reaches bash untouched. (``$$`` is not that escape: it is the runtime's own
QCG-PilotJob escape, which a later stage reads again.) The runtime's and the sweep's names
cannot be escaped, since the runtime would fill them anyway. Unbraced ``$name``, ``$1``,
``$$`` and bash forms such as ``${x:-default}``, ``${#a[@]}`` are left to the shell and the
runtime as they are. ``${ it }`` (spaces inside the braces) is an error: the job
descriptions' grammar (``qcgflow/runtime/placeholders.py``, the one every qcgflow module
reads ``${...}`` with) makes it text, and bash a bad substitution.
"""

import difflib
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import qcgflow.runtime.placeholders as _grammar  # THE ${...} grammar (the job descriptions')
from qcgflow.workflows.sweeps import RUNTIME_VARIABLES

SUBMIT_VARIABLES = _grammar.SUBMIT_VARIABLES  # QCG-PilotJob's submit-time variables

WORKFLOW_DIR = "workflow_dir"
SWEEP_ONLY = ("it", "itval")
ALWAYS = tuple(v for v in RUNTIME_VARIABLES if v not in SWEEP_ONLY) + SUBMIT_VARIABLES + \
    (WORKFLOW_DIR,)


def known_names(sweep_names: Iterable[str], in_sweep: bool) -> List[str]:
    """The placeholders a text of a task may use, in the order a message lists them."""
    return (list(SWEEP_ONLY) if in_sweep else []) + list(sweep_names) + list(ALWAYS)


def check(text: str, known: List[str], runtime_only: Dict[str, str], workflow_dir: str,
          fail: Callable[[int, str], Exception]) -> str:
    """``text`` with its escapes undone and ``${workflow_dir}`` filled, or ``fail(offset,
    problem)`` raised for its first placeholder that is not in ``known``.

    ``runtime_only``: names that are known elsewhere but not here, with the reason (a sweep
    parameter in ``wd``; ``${it}`` outside a sweep).
    """
    out: List[str] = []
    at = 0
    for token in _grammar.tokens(text):
        if token.kind == _grammar.SPACED:
            raise fail(token.start, _grammar.spaced_message(text[token.start:token.end],
                                                            token.name))
        if token.kind != _grammar.BRACED:
            continue  # $$ and $name: the runtime's and the shell's, as written
        name, start = token.name, token.start
        backslash = start > at and text[start - 1] == "\\"
        out.append(text[at:start - 1 if backslash else start])
        at = token.end
        if backslash:
            if name in known or name in runtime_only or name in SWEEP_ONLY:
                raise fail(start - 1, "\\${%s} cannot go to the shell: ${%s} is filled "
                                      "by qcgflow or the runtime; give the shell "
                                      "variable another name" % (name, name))
            out.append("${%s}" % name)
        elif name == WORKFLOW_DIR:
            out.append(workflow_dir)
        elif name in known:
            out.append(text[start:at])
        elif name in runtime_only:
            raise fail(start, "${%s} %s" % (name, runtime_only[name]))
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = "did you mean ${%s}? " % close[0] if close else ""
            raise fail(start, "unknown placeholder ${%s}; %sthe known ones here: %s; "
                              "write \\${%s} for a shell variable" % (
                                  name, hint, ", ".join("${%s}" % k for k in known), name))
    out.append(text[at:])
    return "".join(out)


def line_of(start: int, text: str, offset: int) -> int:
    """The line of ``text[offset]`` when ``text`` starts on line ``start``."""
    return start + text.count("\n", 0, offset)


def check_task(spec: Dict[str, Any], path: Tuple[Any, ...], sweep_names: Optional[List[str]],
               in_sweep: bool, workflow_dir: str,
               fail: Callable[[Tuple[Any, ...], str, int, str], Exception]) -> Dict[str, Any]:
    """A copy of a task's ``spec`` with every template checked (``check``).

    ``fail(path, text, offset, problem)`` makes the error of the placeholder at ``offset``
    of the string at ``path``.
    """
    names = list(sweep_names or [])
    known = known_names(names, in_sweep)
    sweep_only = {} if in_sweep else {name: "is only set in a sweep (a task with foreach, or "
                                            "a per-iteration dependency)"
                                      for name in SWEEP_ONLY}
    in_options = [k for k in known if k not in names]
    not_in_options = dict(sweep_only, **{
        name: "is a sweep parameter, filled in the command and the streams only; use ${it} "
              "or ${itval} here" for name in names})
    spec = dict(spec)

    def one(key_path: Tuple[Any, ...], text: str, allowed, others) -> str:
        return check(text, allowed, others, workflow_dir,
                     lambda offset, problem: fail(key_path, text, offset, problem))

    for key in ("exec", "script", "stdin", "stdout", "stderr"):
        if isinstance(spec.get(key), str):
            spec[key] = one(path + (key,), spec[key], known, sweep_only)
    if "exec" in spec and isinstance(spec.get("args"), list):
        spec["args"] = [one(path + ("args", i), a, known, sweep_only) if isinstance(a, str)
                        else a for i, a in enumerate(spec["args"])]
    return check_options(spec, path, in_options, not_in_options, workflow_dir, fail)


def check_options(options: Dict[str, Any], path: Tuple[Any, ...], known: List[str],
                  others: Dict[str, str], workflow_dir: str,
                  fail: Callable[[Tuple[Any, ...], str, int, str], Exception]
                  ) -> Dict[str, Any]:
    """``options`` (a task's or ``defaults``) with ``wd`` and the ``env`` values checked."""
    options = dict(options)
    if isinstance(options.get("wd"), str):
        text = options["wd"]
        options["wd"] = check(text, known, others, workflow_dir,
                              lambda offset, problem: fail(path + ("wd",), text, offset,
                                                           problem))
    if isinstance(options.get("env"), dict):
        env = {}
        for key, value in options["env"].items():
            if isinstance(value, str):
                value = check(value, known, others, workflow_dir,
                              lambda offset, problem, v=value, k=key:
                              fail(path + ("env", k), v, offset, problem))
            env[key] = value
        options["env"] = env
    return options
