"""Declared outputs (the ``outputs`` option) and skipped iterations of command tasks.

A task that declares ``outputs`` (paths relative to its working directory; ``${it}`` and,
in workflow files, ``${itval}`` are the iteration's) gets them REMOVED before it runs and
CHECKED after it: a run that exits 0 without making one of them fails (exit code 1, the
missing path on stderr). So a re-run never appends to, nor is fooled by, a file of an
earlier run, and exit code 0 means every declared file is there. A command task's
execution becomes a bash script::

    case "${it}" in 3|7) exit 0 ;; esac            # iterations reused (qcgflow run --resume)
    rm -f -- OUT...                                # declared outputs of this iteration (*)
                                                   #   (but its own stdout / stderr)
    ( SCRIPT )  |  PROG ARGS...                    # the task itself, in a subshell
    status=$?; [ $status -eq 0 ] || exit $status
    [ -e OUT ] || { echo "qcgflow: ... OUT was not made" >&2; exit 1; }

(*) An output of a sweep that does not name its iteration (``${it}``, ``${itval}``) is
shared by the iterations: it is removed once before the job is submitted
(``remove_shared``), and such a sweep is reused whole or run whole.

A Python task's runner does the same around the call (``payload.run_call``). The runtime
substitutes ``${it}`` / ``${itval}`` in the script text; everything else is quoted.
"""

import os
import shlex
from typing import Any, Dict, Iterable, List, Optional

import qcgflow.runtime.placeholders as _grammar  # THE ${...} grammar

PER_ITERATION = ("${it}", "${itval}")


def quote(text: str) -> str:
    """``text`` as one bash word; ``${it}`` / ``${itval}`` stay for the runtime to fill
    (placeholders as THE grammar reads them: ``$${it}`` is an escape, not one)."""
    parts, last = [], 0
    for token in _grammar.tokens(text):
        if token.kind != _grammar.BRACED or token.name not in ("it", "itval"):
            continue
        if token.start > last:
            parts.append(shlex.quote(text[last:token.start]))
        parts.append('"%s"' % text[token.start:token.end])
        last = token.end
    if last < len(text) or not parts:
        parts.append(shlex.quote(text[last:]))
    return "".join(parts)


def per_iteration(outputs: Iterable[str]) -> bool:
    """Every path names its iteration (so iterations may be reused one by one)."""
    return all(any(p in path for p in PER_ITERATION) for path in outputs)


def _command_line(execution: Dict[str, Any]) -> str:
    if "script" in execution:
        return "(\n%s\n)" % execution["script"]
    return " ".join(quote(str(word)) for word in
                    [execution["exec"]] + list(execution.get("args") or ()))


def wrap(execution: Dict[str, Any], outputs: Optional[List[str]] = None,
         skip: Iterable[int] = (), mapped: bool = False) -> Dict[str, Any]:
    """The ``script`` / ``exec``+``args`` part of a command's execution with the outputs'
    removal and check and the skipped iterations; unchanged without either. In a
    ``mapped`` task an iteration removes only the outputs that name it: one shared by the
    iterations (``squares.txt`` of ``>>``) is removed before the job (``remove_shared``)."""
    skip = sorted(set(skip))
    if not outputs and not skip:
        return {k: execution[k] for k in ("script", "exec", "args") if k in execution}
    lines = []
    if skip:
        lines.append('case "${it}" in %s) exit 0 ;; esac' % "|".join(str(i) for i in skip))
    if not outputs:
        if "script" in execution:
            return {"script": "\n".join(lines) + "\n" + execution["script"]}
        return {"script": "\n".join(lines + ["exec " + _command_line(execution)])}
    words = " ".join(quote(path) for path in outputs)
    own = [path for path in outputs if not mapped or per_iteration([path])]
    if own:  # not the task's own stdout / stderr, should it declare them: already open
        lines.append('for __qcgflow_out in %s; do [ "$__qcgflow_out" -ef /dev/stdout ] || '
                     '[ "$__qcgflow_out" -ef /dev/stderr ] || rm -f -- "$__qcgflow_out"; done'
                     % " ".join(quote(path) for path in own))
    lines.append(_command_line(execution))
    lines.append('__qcgflow_status=$?; [ "$__qcgflow_status" -eq 0 ] || '
                 'exit "$__qcgflow_status"')
    lines.append('for __qcgflow_out in %s; do [ -e "$__qcgflow_out" ] || { echo "qcgflow: '
                 'the declared output $PWD/$__qcgflow_out was not made" >&2; exit 1; }; done'
                 % words)
    return {"script": "\n".join(lines) + "\n"}


def fill_it(path: str, it: Any, itval: Any = None) -> str:
    """``path`` of iteration ``it`` (None: not mapped)."""
    if it is not None:
        path = path.replace("${it}", str(it))
    if itval is not None:
        path = path.replace("${itval}", str(itval))
    return path


def missing(outputs: Iterable[str], base: str = "", it: Any = None,
            itval: Any = None) -> List[str]:
    """The declared outputs not there (absolute paths)."""
    paths = [os.path.abspath(os.path.join(base, fill_it(p, it, itval))) for p in outputs]
    return [path for path in paths if not os.path.exists(path)]


def remove_shared(outputs: Iterable[str], task_wd: str) -> None:
    """Before a sweep's job is submitted: remove its outputs shared by the iterations."""
    for path in outputs:
        if not per_iteration([path]):
            try:
                os.unlink(os.path.join(task_wd, path))
            except (FileNotFoundError, IsADirectoryError):
                pass


def clean(root: str, node: Any, job: Dict[str, Any], skip: Iterable[int] = ()) -> None:
    """Before a job is submitted: remove the standard streams of the iterations that run
    (the runtime appends to them: a re-run would add to an earlier run's) and the outputs
    its iterations share; each iteration's script or runner removes its own outputs.
    ``skip``: reused iterations, left as they are."""
    execution = job["execution"]
    iteration = job.get("iteration")
    if iteration is None:
        its: List[Optional[int]] = [None]
    elif "values" in iteration:
        its = list(range(len(iteration["values"])))
    else:
        its = list(range(int(iteration.get("start", 0)), int(iteration["stop"])))
    task_wd = os.path.join(root, (execution.get("wd") or "").replace("${root_wd}", root))
    for it in its:
        if it in skip:
            continue
        itval = iteration["values"][it] if iteration and "values" in iteration else None
        for stream in ("stdout", "stderr"):
            path = execution.get(stream)
            if path:
                path = fill_it(path.replace("${root_wd}", root), it, itval)
                try:
                    os.unlink(os.path.join(task_wd, path))
                except (FileNotFoundError, IsADirectoryError):
                    pass
    if node.mapped is not None:
        remove_shared(node.options.get("outputs") or [], task_wd)
