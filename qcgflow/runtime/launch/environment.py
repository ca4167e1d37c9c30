"""What a task sees: its command line, environment and files (pure functions).

The execution-stage variables (it, itval, root_wd, ncores, nnodes, nlist) are applied here,
then paths are resolved: a relative ``wd`` is relative to the service's working directory,
stdin/stdout/stderr are relative to the job's ``wd``.

Modules and virtual environments need a shell: the task then runs under ``bash -c`` with a
prelude that initialises environment modules, loads them and activates the venv. The
prelude reports a failure with a distinct exit status (``PRELUDE_FAILURES``) and a line on
stderr, so the job ends FAILED with a message that says what was missing.
"""

import os
import shlex
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from ..jobs import ExecutionSpec
from ..resources import Allocation
from ..variables import substitute, substitute_all

EXIT_NO_MODULES = 210
EXIT_MODULE_LOAD = 211
EXIT_VENV = 212

PRELUDE_FAILURES = {
    EXIT_NO_MODULES: "environment modules are not available on this node ('module' command "
                     "not found; install environment-modules or Lmod)",
    EXIT_MODULE_LOAD: "module load failed",
    EXIT_VENV: "virtual environment could not be activated (no bin/activate in it)",
}

_MODULES_INIT = (
    "if ! type module >/dev/null 2>&1; then "
    "for f in /etc/profile.d/modules.sh /usr/share/modules/init/bash "
    "/usr/share/lmod/lmod/init/bash /etc/profile; do "
    "[ -r \"$f\" ] && . \"$f\" >/dev/null 2>&1; type module >/dev/null 2>&1 && break; done; fi; "
    "type module >/dev/null 2>&1 || { echo 'qcgflow: environment modules are not available "
    "(module command not found)' >&2; exit %d; }; " % EXIT_NO_MODULES)


@dataclass(frozen=True)
class TaskContext:
    """Where and as what one iteration runs."""

    name: str                 # job or job:index
    index: Optional[int]      # iteration index (None for non-iterative jobs)
    value: Optional[str]      # iteration value (``values`` iterations)
    allocation: Allocation
    root_wd: str
    step_id: str
    slurm: bool = False            # inside a Slurm allocation: SLURM_* variables, binding
    aux_dir: Optional[str] = None  # where per-task files (rankfiles, hostfiles) are written


def execution_variables(ctx: TaskContext) -> Dict[str, str]:
    alloc = ctx.allocation
    return {
        "it": "" if ctx.index is None else str(ctx.index),
        "itval": ctx.value if ctx.value is not None else
        ("" if ctx.index is None else str(ctx.index)),
        "root_wd": ctx.root_wd,
        "ncores": str(alloc.total_cores),
        "nnodes": str(len(alloc.parts)),
        "nlist": ",".join(alloc.node_names),
    }


@dataclass(frozen=True)
class TaskCommand:
    argv: List[str]
    env: Dict[str, str]
    wd: str
    stdin: Optional[str]
    stdout: Optional[str]
    stderr: Optional[str]
    node: Optional[str] = None                 # node the process starts on (first node)
    cpus: Optional[Tuple[int, ...]] = None     # bind the started process to these CPU ids
    files: Tuple[Tuple[str, str], ...] = ()    # (path, content) written before the start


def build_task(execution: ExecutionSpec, ctx: TaskContext,
               base_env: Mapping[str, str]) -> TaskCommand:
    """Apply execution-stage variables and build the command, environment and paths."""
    values = execution_variables(ctx)
    sub = lambda text: substitute(text, values, unescape=True)  # noqa: E731
    wd = ctx.root_wd
    if execution.wd:
        wd = os.path.join(ctx.root_wd, sub(execution.wd))
    in_wd = lambda path: None if path is None else os.path.join(wd, sub(path))  # noqa: E731

    env = dict(base_env)
    env.update(_qcg_environment(ctx))
    if execution.model == "threads":
        env["OMP_NUM_THREADS"] = values["ncores"]
    if execution.env:
        env.update(substitute_all(dict(execution.env), values, unescape=True))

    if execution.script is not None:
        body = sub(execution.script)
        argv = None
    else:
        argv = [sub(execution.exec)] + [sub(arg) for arg in execution.args]
        body = None
    modules = tuple(sub(m) for m in execution.modules)
    venv = sub(execution.venv) if execution.venv else None
    if modules or venv:
        prelude = _prelude(modules, venv, ctx.root_wd)
        if body is not None:
            argv = ["/bin/bash", "-c", prelude + "\n" + body]
        else:
            argv = ["/bin/bash", "-c", prelude + 'exec "$@"', "qcgflow-task"] + argv
    elif body is not None:
        argv = ["/bin/bash", "-c", body]
    return TaskCommand(argv, env, wd, in_wd(execution.stdin), in_wd(execution.stdout),
                       in_wd(execution.stderr), node=ctx.allocation.parts[0].node)


def _prelude(modules: Tuple[str, ...], venv: Optional[str], root_wd: str) -> str:
    parts = []
    if modules:
        parts.append(_MODULES_INIT)
        for module in modules:
            parts.append("module load %s || { echo 'qcgflow: module load %s failed' >&2; "
                         "exit %d; }; " % (shlex.quote(module), module.replace("'", ""),
                                           EXIT_MODULE_LOAD))
    if venv:
        path = os.path.join(root_wd, venv)
        activate = shlex.quote(os.path.join(path, "bin", "activate"))
        parts.append("[ -r %s ] && . %s || { echo 'qcgflow: cannot activate the virtual "
                     "environment %s' >&2; exit %d; }; "
                     % (activate, activate, path.replace("'", ""), EXIT_VENV))
    return "".join(parts)


def _qcg_environment(ctx: TaskContext) -> Dict[str, str]:
    alloc = ctx.allocation
    per_node = [str(len(part.cores)) for part in alloc.parts]
    return {
        "QCG_PM_NNODES": str(len(alloc.parts)),
        "QCG_PM_NODELIST": ",".join(alloc.node_names),
        "QCG_PM_NPROCS": str(alloc.total_cores),
        "QCG_PM_NTASKS": str(alloc.total_cores),
        "QCG_PM_TASKS_PER_NODE": ",".join(per_node),
        "QCG_PM_CPU_SET": ",".join(str(core) for part in alloc.parts for core in part.cores),
        "QCG_PM_STEP_ID": ctx.step_id,
    }
