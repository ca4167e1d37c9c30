"""``qcg.pilotjob.slurmres``: the two helpers upstream's tests use to detect an allocation."""

import os

from qcgflow.runtime.slurmres import expand_node_list


def in_slurm_allocation():
    """True inside a Slurm allocation (upstream's test: both variables are set)."""
    return "SLURM_NODELIST" in os.environ and "SLURM_JOB_CPUS_PER_NODE" in os.environ


def get_num_slurm_nodes():
    """The number of nodes of the allocation (from ``SLURM_NODELIST``)."""
    if "SLURM_NODELIST" not in os.environ:
        raise RuntimeError("missing SLURM_NODELIST settings")
    return len(expand_node_list(os.environ["SLURM_NODELIST"], "SLURM_NODELIST"))
