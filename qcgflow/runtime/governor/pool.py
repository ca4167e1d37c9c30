"""The governor's view of the managers' resources (pure: no I/O).

``GovernorPool`` has the interface of ``resources.ResourcePool`` that the scheduler uses
(totals, ``fits_ever``, ``allocate``, ``release``) over one ``ResourcePool`` per
registered manager (a *partition*): every allocation lies inside one partition, so a job
never spans two managers. Node names in allocations are ``<manager id>/<node>``.

Guarantees: an allocation is taken from the partition with the most free cores among those
where it fits (load spreads over the managers); a partition that is dropped (its manager
was lost) takes no new work and releasing an allocation on it is a no-op; the totals count
the live partitions only.

``depth`` > 1 lets every node of a partition take ``depth`` times its cores in units: a
manager then holds queued units of its own and starts the next one without waiting for
the governor's round trip (throughput of short tasks), at the price of binding those units
to that manager early. ``free_cores`` is then the dispatch capacity (what the scheduler
needs); ``fits_ever`` and ``total_*`` stay the real resources, and ``used_cores`` is capped
at the real total.
"""

from typing import Dict, Iterator, Optional, Sequence, Tuple

from ..resources import Allocation, NodeAllocation, ResourcePool, ResourceRequest

SEPARATOR = "/"


class GovernorPool:
    """Resources of the live managers, one partition per manager."""

    def __init__(self, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1, got %r" % (depth,))
        self._depth = depth
        self._parts: Dict[str, ResourcePool] = {}  # dispatch capacity (depth x cores)
        self._real: Dict[str, ResourcePool] = {}   # the real resources (totals, fits_ever)
        self._reserved: Dict[str, int] = {}        # --system-core cores of each manager

    # -- membership ----------------------------------------------------------------------
    def add(self, manager_id: str, nodes: Sequence[Tuple[str, int]], reserved: int = 0) -> None:
        """Add a manager's partition: ``(node name, core count)`` pairs, and the cores it
        keeps for itself (``reserved``: reported only, see ``reserved_cores``).

        Raises:
            ValueError: the id is taken or contains the separator, or there are no cores.
        """
        if manager_id in self._parts:
            raise ValueError("manager id '%s' is already registered" % manager_id)
        if SEPARATOR in manager_id:
            raise ValueError("manager id '%s' contains '%s'" % (manager_id, SEPARATOR))
        self._parts[manager_id] = ResourcePool([(name, range(count * self._depth))
                                                for name, count in nodes])
        self._real[manager_id] = ResourcePool([(name, range(count)) for name, count in nodes])
        self._reserved[manager_id] = reserved

    def drop(self, manager_id: str) -> None:
        """Forget a manager's partition (its manager is gone); unknown ids are ignored."""
        self._parts.pop(manager_id, None)
        self._real.pop(manager_id, None)
        self._reserved.pop(manager_id, None)

    def __contains__(self, manager_id: str) -> bool:
        return manager_id in self._parts

    def partitions(self) -> Iterator[Tuple[str, ResourcePool]]:
        """``(manager id, pool)`` of every live partition, in registration order."""
        return iter(list(self._parts.items()))

    # -- totals (ResourcePool's interface) -----------------------------------------------
    @property
    def total_nodes(self) -> int:
        return sum(p.total_nodes for p in self._real.values())

    @property
    def total_cores(self) -> int:
        return sum(p.total_cores for p in self._real.values())

    @property
    def used_cores(self) -> int:
        return min(self.total_cores, sum(p.used_cores for p in self._parts.values()))

    @property
    def free_cores(self) -> int:
        return sum(p.free_cores for p in self._parts.values())

    @property
    def reserved_cores(self) -> int:
        """Cores the live managers keep for themselves (``--system-core``): not in the
        totals above (never dispatched to); resourcesInfo and status add them to the total
        and the used cores, as upstream reports a manager's system core."""
        return sum(self._reserved.values())

    @property
    def nodes(self):
        return tuple((_join(mid, name), cores) for mid, part in self._real.items()
                     for name, cores in part.nodes)

    def fits_ever(self, req: ResourceRequest) -> bool:
        """Whether ``req`` fits the (real) total resources of at least one manager."""
        return any(part.fits_ever(req) for part in self._real.values())

    def allocate(self, req: ResourceRequest) -> Optional[Allocation]:
        """Allocate inside one partition, the one with most free cores where it fits."""
        for mid, part in sorted(self._parts.items(), key=lambda item: -item[1].free_cores):
            if part.free_cores == 0:
                break
            got = part.allocate(req)
            if got is not None:
                return Allocation(tuple(NodeAllocation(_join(mid, p.node), p.cores)
                                        for p in got.parts))
        return None

    def release(self, alloc: Allocation) -> None:
        mid = manager_of(alloc)
        part = self._parts.get(mid)
        if part is None:
            return  # the manager was lost: its partition is gone
        part.release(Allocation(tuple(NodeAllocation(p.node.split(SEPARATOR, 1)[1], p.cores)
                                      for p in alloc.parts)))

    # ResourcePool's node availability calls: the governor has no nodes of its own.
    def disable(self, name: str) -> int:
        return 0

    def enable(self, name: str) -> int:
        return 0

    def is_enabled(self, name: str) -> bool:
        return True


def manager_of(alloc: Allocation) -> str:
    """The manager id of an allocation made by ``GovernorPool``."""
    return alloc.parts[0].node.split(SEPARATOR, 1)[0]


def _join(manager_id: str, node: str) -> str:
    return "%s%s%s" % (manager_id, SEPARATOR, node)
