"""What a service reports of its resources (``resourcesInfo``, ``status``): a snapshot of
a pool's counts, so that request handlers never hold the pool itself. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceTotals:
    """A read-only snapshot of a pool's counts (``Manager.resource_totals``), with the
    attribute names of ``ResourcePool``: what requests report, without the pool itself."""

    total_nodes: int
    total_cores: int
    used_cores: int
    free_cores: int
    reserved_cores: int
    total_gpus: int = 0
    free_gpus: int = 0
    gpus: tuple = ()  # (node name, GPU ids) of the nodes that have any

    @classmethod
    def of(cls, pool) -> ResourceTotals:
        """The counts of ``pool`` now (a ``ResourcePool``, or a governor's pool: no GPUs)."""
        total_gpus = getattr(pool, "total_gpus", 0)
        return cls(pool.total_nodes, pool.total_cores, pool.used_cores, pool.free_cores,
                   pool.reserved_cores, total_gpus, pool.free_gpus if total_gpus else 0,
                   tuple(pool.gpus.items()) if total_gpus else ())
