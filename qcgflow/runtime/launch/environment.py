"""What a task sees: its command line, environment and files (pure functions).

The execution-stage variables (it, itval, root_wd, ncores, nnodes, nlist) are applied here,
then paths are resolved: a relative ``wd`` is relative to the service's working directory,
stdin/stdout/stderr are relative to the job's ``wd``. The execution model (models.py) wraps
the program (mpirun, srun) and says how to bind it. Every task gets the QCG_PM_* variables;
in Slurm mode also the SLURM_* variables of its own share of the allocation and, for a
task of more than one core, a hostfile (``QCG_PM_HOSTFILE``), written by the Executor from ``TaskCommand.files``. Per-task files
are named after the step id, in the service's aux dir (or as dot files in the job's wd).

Modules and virtual environments need a shell: the task then runs under ``bash -c`` with a
prelude that initialises environment modules, loads them and activates the venv. The
prelude reports a failure with a distinct exit status (``PRELUDE_FAILURES``) and a line on
stderr, so the job ends FAILED with a message that says what was missing; the program is
not run (QCG-PilotJob runs it anyway: a deliberate departure, docs/job-states.md).
"""

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..jobs import ExecutionSpec
from ..resources import Allocation
from ..variables import substitute, substitute_all
from .gpus import gpu_environment, needs_rank_wrapper, wrap_ranks
from .models import ModelUnavailable, build_model  # noqa: F401  (the Executor catches it)

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


_NO_FILE_MODELS = frozenset((None, "", "default", "threads", "srunmpi"))


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
    gpus: bool = False             # the pool has GPUs: bind them (gpus.py), hide the rest


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
    """What to start for one task: command, environment, directory, streams, node."""

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
    """Apply execution-stage variables and build the command, environment, files and binding.

    The environment is, in increasing precedence: ``base_env``, the QCG_PM_* variables,
    the GPU variables (gpus.py, when the pool has GPUs), the SLURM_* variables (Slurm mode
    only), the model's variables, the job's ``env``.

    Raises:
        ModelUnavailable: the model cannot run in this mode (srunmpi without Slurm).
    """
    values = execution_variables(ctx)
    sub = lambda text: substitute(text, values, unescape=True)  # noqa: E731
    wd = ctx.root_wd
    if execution.wd:
        wd = os.path.join(ctx.root_wd, sub(execution.wd))

    def in_wd(path):
        if path is None:
            return None
        path = sub(path)
        return path if path[:1] == "/" else os.path.join(wd, path)  # join's result, faster
    if execution.model in _NO_FILE_MODELS and not (ctx.slurm and
                                                     ctx.allocation.total_cores > 1):
        prefix = ""  # no per-task file (rankfile, machinefile, hostfile) to name
    else:
        prefix = (os.path.join(ctx.aux_dir, ctx.step_id) if ctx.aux_dir
                  else os.path.join(wd, "." + ctx.step_id))

    if execution.script is not None:
        body = sub(execution.script)
        program = ["/bin/bash", "-c", body]
    else:
        body = None
        program = [sub(execution.exec)] + [sub(arg) for arg in execution.args]
    rank_env: Dict[str, str] = {}
    if ctx.gpus and needs_rank_wrapper(execution.model, ctx.allocation):
        program, rank_env = wrap_ranks(program, ctx.allocation)
    model = build_model(execution.model, program, ctx.allocation, slurm=ctx.slurm,
                        model_opts=execution.model_opts, file_prefix=prefix)

    env = dict(base_env)
    env.update(_qcg_environment(ctx))
    env.update(gpu_environment(ctx.allocation, ctx.gpus))
    env.update(rank_env)
    files = list(model.files)
    if ctx.slurm:
        slurm_env = slurm_environment(ctx.allocation)
        if "SLURM_NTASKS_PER_NODE" not in slurm_env:
            env.pop("SLURM_NTASKS_PER_NODE", None)  # the pilot's own value would be wrong
        env.update(slurm_env)
        if ctx.allocation.total_cores > 1:
            # Parallel tasks only (the seed's "machine file"): a file per one-core task
            # would cost a write each and fill the aux dir with one file per iteration.
            hostfile = prefix + ".hostfile"
            env["QCG_PM_HOSTFILE"] = hostfile
            files.append((hostfile, hostfile_content(ctx.allocation)))
    env.update(model.env)
    if execution.model == "openmpi":
        env[ORTE_TMPDIR] = openmpi_session_base(env, ctx.allocation)
    if execution.env:
        env.update(substitute_all(dict(execution.env), values, unescape=True))

    argv = list(model.argv)
    modules = tuple(sub(m) for m in execution.modules)
    venv = sub(execution.venv) if execution.venv else None
    if modules or venv:
        # The prelude wraps the whole command: mpirun/srun need the modules' PATH too.
        prelude = _prelude(modules, venv, ctx.root_wd)
        if body is not None and argv == program:
            argv = ["/bin/bash", "-c", prelude + "\n" + body]  # one shell: functions survive
        else:
            argv = ["/bin/bash", "-c", prelude + 'exec "$@"', "qcgflow-task"] + argv
    return TaskCommand(argv, env, wd, in_wd(execution.stdin), in_wd(execution.stdout),
                       in_wd(execution.stderr), node=ctx.allocation.parts[0].node,
                       cpus=model.cpus, files=tuple(files))


ORTE_TMPDIR = "OMPI_MCA_orte_tmpdir_base"
_NODE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def openmpi_session_base(env: Mapping[str, str], allocation: Allocation) -> str:
    """Where an ``openmpi`` task's ``mpirun`` keeps its session directory (Open MPI 4).

    Open MPI puts every run's session directory under ``<base>/ompi.<host>.<uid>`` and
    removes that directory when a run ends and it is empty: another ``mpirun`` starting on
    the host at that moment fails with "orte_session_dir failed" (open-mpi/ompi#8510; an
    ensemble of MPI runs hits it). Each task gets a base of its own among the tasks that run
    at the same time: named after the first node and core of its allocation, which no two
    of them share; at most one directory per core, short (sockets live there), reused. A
    base the task sets itself (its ``env``, ``--mca`` in ``mpirun_args``) wins; Open MPI 5
    ignores the variable."""
    if ORTE_TMPDIR in env:
        return env[ORTE_TMPDIR]
    first = allocation.parts[0]
    return os.path.join(env.get("TMPDIR") or "/tmp", "qcgflow-ompi-%d" % os.getuid(),
                        "%s.%d" % (_NODE_UNSAFE.sub("_", first.node), first.cores[0]))


_STEP_MARK = "\x00qcgflow-step\x00"  # stands for the step id in a template
TEMPLATE_LIMIT = 256  # templates kept (an environment each, ~5 kB); all dropped when full


class CommandTemplates:
    """``build_task`` once per (execution, allocation) for iterations that differ only in
    their step id: the per-iteration path of a sweep costs a dict copy, not a build.

    Guarantees: ``command`` returns what ``build_task`` would return for that iteration
    (as a shared template and the iteration's own environment), or None (the caller
    builds). A template is used only when no field of the execution
    holds a ``$`` (no variable can make two iterations differ), the build writes no
    per-task file, and the step id appears only as ``QCG_PM_STEP_ID`` (checked on the
    first build with a marker in its place).
    """

    def __init__(self, base_env: Mapping[str, str], root_wd: str, *, slurm: bool = False,
                 aux_dir: Optional[str] = None, gpus: bool = False,
                 limit: int = TEMPLATE_LIMIT):
        self._base_env = base_env
        self._root_wd = root_wd
        self._slurm = slurm
        self._aux_dir = aux_dir
        self._gpus = gpus
        self._limit = limit
        self._count = 0
        # id(execution) -> (execution, {allocation parts: TaskCommand}, or None: never)
        self._executions: Dict[int, Tuple[ExecutionSpec, Optional[dict]]] = {}

    def command(self, execution: ExecutionSpec, allocation: Allocation,
                step_id: str) -> Optional[Tuple[TaskCommand, Dict[str, str]]]:
        """``(template, env)`` of one iteration on ``allocation``: its command is the
        template's with ``env`` (the step's own) as environment; None when not templated."""
        known = self._executions.get(id(execution))
        if known is None or known[0] is not execution:
            if self._count >= self._limit or len(self._executions) >= self._limit:
                self._executions.clear()
                self._count = 0
            known = (execution, {} if _constant(execution) else None)
            self._executions[id(execution)] = known
        commands = known[1]
        if commands is None:
            return None
        template = commands.get(allocation.parts)
        if template is None:
            template = self._build(execution, allocation)
            if template is None:
                self._executions[id(execution)] = (execution, None)
                return None
            commands[allocation.parts] = template
            self._count += 1
        env = template.env.copy()
        env["QCG_PM_STEP_ID"] = step_id
        return template, env

    def _build(self, execution: ExecutionSpec, allocation: Allocation):
        ctx = TaskContext(name="", index=None, value=None, allocation=allocation,
                          root_wd=self._root_wd, step_id=_STEP_MARK, slurm=self._slurm,
                          aux_dir=self._aux_dir, gpus=self._gpus)
        command = build_task(execution, ctx, self._base_env)
        texts = [*command.argv, command.wd, command.stdin, command.stdout, command.stderr,
                 *(value for key, value in command.env.items() if key != "QCG_PM_STEP_ID")]
        if command.files or any(text and _STEP_MARK in text for text in texts):
            return None
        return command


def _constant(execution: ExecutionSpec) -> bool:
    """No field of ``execution`` can change between iterations (none holds a ``$``)."""
    texts = [execution.exec, execution.script, execution.wd, execution.stdin,
             execution.stdout, execution.stderr, execution.venv, *execution.args,
             *execution.modules, *execution.env.keys(), *execution.env.values()]
    return all(text is None or (isinstance(text, str) and "$" not in text) for text in texts)


def tasks_per_node(counts: Sequence[int]) -> str:
    """Slurm's compressed per-node count list: ``[2, 2, 1]`` -> ``'2(x2),1'``."""
    items: List[List[int]] = []
    for count in counts:
        if items and items[-1][0] == count:
            items[-1][1] += 1
        else:
            items.append([count, 1])
    return ",".join(str(c) if times == 1 else "%d(x%d)" % (c, times) for c, times in items)


def slurm_environment(allocation: Allocation) -> Dict[str, str]:
    """The SLURM_* variables that make a task look like a Slurm job of its own allocation.

    The names are the seed's "Slurm execution environment" list plus
    ``SLURM_JOB_CPUS_PER_NODE`` (Open MPI and hydra count slots from it) and
    ``SLURM_OVERLAP=1`` (an srun inside the task, also the one mpirun or hydra use to
    start their daemons, shares CPUs with the pilot's steps instead of waiting for them).
    ``SLURM_JOB_ID`` and the other job-wide variables are left as they are.

    Not ``SLURM_HOSTFILE`` (upstream sets it): srun reads it and then places tasks by it,
    which breaks the one-daemon-per-node srun that mpirun uses to start Open MPI's orted
    ("no topology info is available for the following node"). The hostfile's path is in
    ``QCG_PM_HOSTFILE`` instead.
    """
    counts = [len(part.cores) for part in allocation.parts]
    nodes = ",".join(allocation.node_names)
    nnodes, ncores = str(len(counts)), str(sum(counts))
    per_node = tasks_per_node(counts)
    env = {
        "SLURM_NNODES": nnodes, "SLURM_JOB_NUM_NODES": nnodes, "SLURM_STEP_NUM_NODES": nnodes,
        "SLURM_NODELIST": nodes, "SLURM_JOB_NODELIST": nodes, "SLURM_STEP_NODELIST": nodes,
        "SLURM_NPROCS": ncores, "SLURM_NTASKS": ncores, "SLURM_STEP_NUM_TASKS": ncores,
        "SLURM_TASKS_PER_NODE": per_node, "SLURM_STEP_TASKS_PER_NODE": per_node,
        "SLURM_JOB_CPUS_PER_NODE": per_node,
        "SLURM_OVERLAP": "1",
    }
    if len(set(counts)) == 1:  # Slurm sets it only when every node has the same count
        env["SLURM_NTASKS_PER_NODE"] = str(counts[0])
    return env


def hostfile_content(allocation: Allocation) -> str:
    """One line per allocated core with its node's name, allocation order."""
    return "".join((part.node + "\n") * len(part.cores) for part in allocation.parts)


def _prelude(modules: Tuple[str, ...], venv: Optional[str], root_wd: str) -> str:
    import shlex  # noqa: PLC0415 - only for jobs with modules or a venv: not in every start
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
