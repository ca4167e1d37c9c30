"""``qcg.pilotjob.parseres.get_resources``: the allocation as qcgflow's discovery sees it.

Returned as upstream's own ``Resources``/``Node`` objects (the suite's helper
``resources.py``), so ``tests/utils.get_slurm_resources`` compares what qcgflow found against
``scontrol show job``: node names, core counts and binding (true when the CPU ids came from
``scontrol``, as upstream binds then).
"""

import os

from qcgflow.runtime.discovery import run_scontrol
from qcgflow.runtime.slurmres import allocation_from_env, job_id_of, parse_job_details


def get_resources(config=None):
    from qcg.pilotjob.resources import Node, Resources, ResourcesType

    job_id = job_id_of(os.environ)
    details = parse_job_details(run_scontrol(job_id)) if job_id else None
    allocation = allocation_from_env(os.environ, details)
    nodes = [Node(node.name, total_cores=len(node.cores), used=0, core_ids=list(map(str, node.cores)))
             for node in allocation.nodes]
    return Resources(ResourcesType.SLURM, nodes, binding=allocation.source == "scontrol")
