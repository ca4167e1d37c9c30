"""GPU binding of a task: which GPU ids its processes see (pure functions).

Variables a task gets when the service has GPUs (any node of the pool owns some):

* ``CUDA_VISIBLE_DEVICES``: the job's GPU ids on the node its process runs on (the first
  node of the allocation), comma-separated. A job without GPUs gets it set to the empty
  string: CUDA then shows no device at all, whereas an unset variable would show every GPU
  of the node (upstream deletes it, which does exactly that).
* ``QCG_PM_GPUS``: the same ids (empty without GPUs), for programs that do not read CUDA's
  variable (ROCm's ``HIP_VISIBLE_DEVICES``, OpenCL, a wrapper script of one's own).
* ``QCG_PM_GPU_MAP``: every node's ids, ``node=ids;node=ids`` in allocation order, e.g.
  ``n1=0,1;n2=2,3``: what a multi-node job got on each node.

Multi-node MPI jobs (openmpi, intelmpi, srunmpi) with GPUs start every rank through a
small ``/bin/sh`` wrapper (:func:`wrap_ranks`) that sets ``CUDA_VISIBLE_DEVICES`` and
``QCG_PM_GPUS`` to the ids of the rank's own node: the node is ``SLURMD_NODENAME`` (set by
Slurm's step daemons on each node) when it names a node of the job, else the node of the
rank's position (``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``, ``PMIX_RANK`` or
``SLURM_PROCID``) in the allocation's core order (local mode: virtual nodes, one host).
Without GPUs in the pool nothing here touches the environment.
"""

from typing import Dict, List, Sequence

from ..resources import Allocation

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "QCG_PM_GPUS", "QCG_PM_GPU_MAP")
MPI_MODELS = frozenset(("openmpi", "intelmpi", "srunmpi"))

# "$@" is the rank's program. IFS=';' splits the map into node=ids entries.
_RANK_WRAPPER = (
    'node="${SLURMD_NODENAME:-}"; '
    'case ";$QCG_PM_GPU_MAP" in *";$node="*) ;; *) '
    'rank="${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}}"; i=0; '
    'for n in $QCG_PM_RANK_NODES; do [ "$i" = "$rank" ] && node="$n"; i=$((i+1)); done;; '
    'esac; ids=; IFS=";"; for e in $QCG_PM_GPU_MAP; do case "$e" in "$node="*) '
    'ids="${e#*=}";; esac; done; unset IFS; '
    'CUDA_VISIBLE_DEVICES="$ids"; QCG_PM_GPUS="$ids"; '
    'export CUDA_VISIBLE_DEVICES QCG_PM_GPUS; exec "$@"')


def _ids(gpus: Sequence[int]) -> str:
    return ",".join(str(gpu) for gpu in gpus)


def gpu_environment(allocation: Allocation, managed: bool) -> Dict[str, str]:
    """The GPU variables of a task on ``allocation`` ({} when the pool has no GPUs)."""
    if not managed:
        return {}
    first = _ids(allocation.parts[0].gpus)
    return {"CUDA_VISIBLE_DEVICES": first, "QCG_PM_GPUS": first,
            "QCG_PM_GPU_MAP": ";".join("%s=%s" % (part.node, _ids(part.gpus))
                                       for part in allocation.parts if part.gpus)}


def needs_rank_wrapper(model: str, allocation: Allocation) -> bool:
    """Whether ranks of ``model`` may run on nodes with different GPU ids."""
    return (model in MPI_MODELS and len(allocation.parts) > 1
            and any(part.gpus for part in allocation.parts))


def wrap_ranks(program: List[str], allocation: Allocation) -> tuple:
    """``(argv, env)``: ``program`` started through the per-node GPU wrapper, and the
    ``QCG_PM_RANK_NODES`` it needs (the node of each rank position, space-separated)."""
    rank_nodes = " ".join(part.node for part in allocation.parts for _ in part.cores)
    return (["/bin/sh", "-c", _RANK_WRAPPER, "qcgflow-gpus"] + list(program),
            {"QCG_PM_RANK_NODES": rank_nodes})
