"""Execution models: how a task's program is started on its allocation (pure functions).

::

    build_task (environment.py)
        | program argv (exec + args, or bash -c script), allocation, model, model_opts
        v
    build_model(...) -> ModelCommand(argv, env, files, cpus)
        |   default / threads: the program itself, bound to the first node's cores
        |   openmpi:  mpirun [mpirun_args] --rankfile FILE -np N program
        |   intelmpi: mpirun [mpirun_args] -machinefile FILE -n k1 -env ... program : ...
        |   srunmpi:  srun -N .. -n .. -w .. --overlap --cpu-bind=mask_cpu:.. program [: ...]
        v
    Executor writes ``files`` and starts ``argv`` on the allocation's first node

Two modes. In **Slurm mode** (the service runs inside a Slurm allocation) node names are
Slurm node names and core ids are real CPU ids, so every model binds: a single process
through ``cpus`` (the launcher applies it), MPI ranks through a rankfile, Intel MPI's
``I_MPI_PIN_PROCESSOR_LIST`` or ``srun --cpu-bind=mask_cpu``. In **local mode** nodes and
cores are virtual (``--nodes 2,2`` on any machine), so nothing is bound and the MPI models
start all ranks on this host.

Nothing here reads the environment, the clock or files: the caller supplies everything
and writes ``files`` itself. ``docs/execution-models.md`` shows every command line.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..resources import Allocation, NodeAllocation

MODEL_NAMES = ("default", "threads", "openmpi", "intelmpi", "srunmpi")


class ModelUnavailable(Exception):
    """A model that cannot run in this mode (srunmpi without Slurm); the job ends FAILED.

    Attributes:
        model: the model's name.
        reason: the one-line message that becomes the job's failure message.
    """

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(reason)
        self.model = model
        self.reason = reason


@dataclass(frozen=True)
class ModelCommand:
    """What a model turns a program into.

    Attributes:
        argv: the command to start (the program itself, or mpirun/srun around it).
        env: variables to add to the task environment.
        files: ``(path, content)`` pairs to write before the start (rankfile, machinefile).
        cpus: CPU ids to bind the started process to, or None (not bound: local mode, or
            a launcher such as mpirun/srun that binds the ranks itself).
    """

    argv: Tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: Tuple[Tuple[str, str], ...] = ()
    cpus: Optional[Tuple[int, ...]] = None


def build_model(model: str, program: Sequence[str], allocation: Allocation, *, slurm: bool,
                model_opts: Optional[Mapping[str, object]] = None,
                file_prefix: str = "task") -> ModelCommand:
    """Build the command that starts ``program`` on ``allocation`` under ``model``.

    Args:
        model: one of ``MODEL_NAMES`` (validated at submit; "" means default).
        program: the task's own argv (variables already substituted).
        allocation: the cores given to the task, in allocation order (rank order).
        slurm: True inside a Slurm allocation (real node names and CPU ids: bind).
        model_opts: ``mpirun`` (replaces the launcher command) and ``mpirun_args`` (added
            after the launcher command, before the model's own options).
        file_prefix: path prefix of per-task files (``<prefix>.rankfile``, ...); unique
            per start.

    Raises:
        ModelUnavailable: srunmpi in local mode.
        ValueError: an unknown model name (a bug: names are checked at submit).
    """
    opts = model_opts or {}
    launcher = opts.get("mpirun")
    extra = tuple(str(arg) for arg in (opts.get("mpirun_args") or ()))
    name = model or "default"
    program = tuple(program)
    if name in ("default", "threads"):
        return _single_process(name, program, allocation, slurm)
    if name == "openmpi":
        return _openmpi(program, allocation, slurm, str(launcher or "mpirun"), extra,
                        file_prefix)
    if name == "intelmpi":
        return _intelmpi(program, allocation, slurm, str(launcher or "mpirun"), extra,
                         file_prefix)
    if name == "srunmpi":
        if not slurm:
            raise ModelUnavailable("srunmpi", "model srunmpi needs a Slurm allocation (the "
                                              "service runs in local mode)")
        return _srunmpi(program, allocation, str(launcher or "srun"), extra)
    raise ValueError("unknown execution model %r (known: %s)" % (model, ", ".join(MODEL_NAMES)))


# --------------------------------------------------------------------------- single process

def _single_process(name: str, program: Tuple[str, ...], allocation: Allocation,
                    slurm: bool) -> ModelCommand:
    first = allocation.parts[0]
    env: Dict[str, str] = {}
    if name == "threads":
        # One process on one node: its threads can only use the first node's cores.
        env["OMP_NUM_THREADS"] = str(len(first.cores))
    # Local cores are virtual (--nodes 8 on a 2-CPU machine): binding to them could name
    # CPUs that do not exist, so only Slurm mode binds.
    return ModelCommand(program, env, cpus=tuple(first.cores) if slurm else None)


# --------------------------------------------------------------------------- Open MPI

def rankfile(allocation: Allocation) -> str:
    """Open MPI rankfile: one ``rank i=<node> slot=<cpu>`` line per core, allocation order."""
    lines = []
    for part in allocation.parts:
        for core in part.cores:
            lines.append("rank %d=%s slot=%d" % (len(lines), part.node, core))
    return "\n".join(lines) + "\n"


def _openmpi(program, allocation, slurm, launcher, extra, prefix) -> ModelCommand:
    total = str(allocation.total_cores)
    if not slurm:
        # The service's virtual cores may outnumber this host's: Open MPI would refuse to
        # start more ranks than it counts cores.
        return ModelCommand((launcher,) + extra + ("--oversubscribe", "-np", total) + program)
    path = prefix + ".rankfile"
    return ModelCommand((launcher,) + extra + ("--rankfile", path, "-np", total) + program,
                        files=((path, rankfile(allocation)),))


# --------------------------------------------------------------------------- Intel MPI

def machinefile(allocation: Allocation) -> str:
    """Hydra machine file: one ``<node>:<cores>`` line per node, allocation order."""
    return "".join("%s:%d\n" % (part.node, len(part.cores)) for part in allocation.parts)


def _intelmpi(program, allocation, slurm, launcher, extra, prefix) -> ModelCommand:
    if not slurm:
        return ModelCommand((launcher,) + extra + ("-n", str(allocation.total_cores)) + program)
    # One global machine file and one MPMD segment per node (-n k, its own pin list).
    # Hydra fills the machine file's slots in order, so segment i lands on node i. Intel
    # MPI also accepts a per-segment ``-host``, MPICH's hydra rejects it; this form works
    # with both.
    path = prefix + ".machinefile"
    argv: List[str] = [launcher] + list(extra) + ["-machinefile", path]
    for index, part in enumerate(allocation.parts):
        if index:
            argv.append(":")
        argv += ["-n", str(len(part.cores)), "-env", "I_MPI_PIN_PROCESSOR_LIST",
                 ",".join(str(core) for core in part.cores)]
        argv += program
    env = {"I_MPI_PIN": "1"}
    return ModelCommand(tuple(argv), env, files=((path, machinefile(allocation)),))


# --------------------------------------------------------------------------- srun

def cpu_masks(cores: Sequence[int]) -> str:
    """``mask_cpu`` list: one hex mask per local task id, task i bound to ``cores[i]``."""
    return ",".join(hex(1 << core) for core in cores)


def node_groups(allocation: Allocation) -> List[List[NodeAllocation]]:
    """Consecutive nodes with the same core ids, in allocation order.

    ``--cpu-bind=mask_cpu`` indexes its masks by the local task id and applies the same
    list on every node of a step, so one srun component can only cover nodes whose core
    sets are equal.
    """
    groups: List[List[NodeAllocation]] = []
    for part in allocation.parts:
        if groups and groups[-1][0].cores == part.cores:
            groups[-1].append(part)
        else:
            groups.append([part])
    return groups


def _srunmpi(program, allocation, launcher, extra) -> ModelCommand:
    # Nodes with different core sets go into separate components of one heterogeneous
    # step (``srun A : B``): one MPI_COMM_WORLD, ranks numbered component by component,
    # i.e. in allocation order, each component with its own masks.
    argv: List[str] = [launcher]
    for index, group in enumerate(node_groups(allocation)):
        if index:
            argv.append(":")
        per_node = len(group[0].cores)
        argv += ["-N", str(len(group)), "-n", str(per_node * len(group)),
                 "--ntasks-per-node=%d" % per_node,
                 "-w", ",".join(part.node for part in group), "--overlap",
                 "--cpu-bind=mask_cpu:" + cpu_masks(group[0].cores)]
        argv += list(extra) + list(program)
    return ModelCommand(tuple(argv))
