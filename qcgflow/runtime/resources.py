"""Resource requests, allocations and the pool of nodes and cores they are carved from.

This module is pure: it never performs I/O and holds no global state. It implements the
allocation rules of QCG-PilotJob's resource requirements:

* ``numCores`` alone asks for cores on any number of nodes; as many as possible up to
  ``max`` are given, never fewer than ``min``.
* ``numNodes`` with ``numCores`` asks for nodes, and ``numCores`` is counted per node.
* ``numNodes`` alone asks for whole, completely free nodes.
* Neither asks for exactly one core.

Allocation is first fit in pool order, lowest free core ids first, so single-core jobs pack
onto the first node that still has a free core. A ``numCores`` request without ``numNodes``
is packed onto as few nodes as the free cores allow: the first node with room for all of
it when there is one, else the nodes with the most free cores (pool order among equals),
its parts listed in pool order. Upstream QCG-PilotJob fills nodes linearly in pool order
instead, so its ``numCores: 2`` may span two nodes (one core each) while a third node is
free; here it gets one node, as shared-memory MPI and threads want.

GPUs are bindable consumables (the seed's ``nodeCrs``/``CRType.GPU``): a node may own GPU
ids; a request's ``gpus`` is counted per node, and only nodes with that many free GPUs (and
the cores asked for) qualify, so first fit runs over cores and GPUs together. Every part of
an allocation then holds its node's own GPU ids, lowest free first; an id is never in two
live allocations. Requests without GPUs never take any.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from qcgflow.runtime.errors import ResourcesError

__all__ = ["CountRange", "ResourceRequest", "NodeAllocation", "Allocation", "ResourcePool"]

SINGLES_KEPT = 4096  # 1-core Allocations kept for reuse (ResourcePool._take_one)


@dataclass(frozen=True)
class CountRange:
    """A requested count: exactly ``n`` is ``CountRange(n, n)``, "at least n" is ``CountRange(n, None)``.

    Guarantees ``1 <= min`` and ``max is None or min <= max``; anything else raises
    ``ValueError`` (constructing a bad range is a caller bug, user input is validated earlier).
    """

    min: int
    max: Optional[int]

    def __post_init__(self) -> None:
        if isinstance(self.min, bool) or not isinstance(self.min, int) or self.min < 1:
            raise ValueError(f"CountRange.min must be an integer >= 1, got {self.min!r}")
        if self.max is not None and (
            isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < self.min
        ):
            raise ValueError(f"CountRange.max must be None or an integer >= min ({self.min}), got {self.max!r}")

    @classmethod
    def exact(cls, n: int) -> CountRange:
        """Return the range holding exactly ``n``."""
        return cls(n, n)


@dataclass(frozen=True)
class ResourceRequest:
    """What one job (or one iteration) needs.

    ``cores`` alone: cores on any nodes. ``nodes`` and ``cores``: ``cores`` per node.
    ``nodes`` alone: whole free nodes. Both ``None``: exactly one core.
    """

    cores: Optional[CountRange]
    nodes: Optional[CountRange]
    gpus: int = 0  # GPUs on every node of the allocation (nodeCrs {"gpu": n})


@dataclass(frozen=True)
class NodeAllocation:
    """The cores (and GPUs) given on one node; ``cores``/``gpus`` are ascending ids."""

    node: str
    cores: tuple[int, ...]
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """A set of cores spread over one or more nodes, as handed out by :class:`ResourcePool`."""

    parts: tuple[NodeAllocation, ...]

    # total_cores, total_gpus and describe() are asked for several times per task: each is
    # computed once per Allocation and kept in its __dict__ (not a field: equality, hashing
    # and repr are unchanged)

    @property
    def total_cores(self) -> int:
        """Number of cores over all parts."""
        known = self.__dict__.get("_cores")
        if known is None:
            known = sum(len(part.cores) for part in self.parts)
            object.__setattr__(self, "_cores", known)
        return known

    @property
    def total_gpus(self) -> int:
        """Number of GPUs over all parts."""
        known = self.__dict__.get("_gpus")
        if known is None:
            known = sum(len(part.gpus) for part in self.parts)
            object.__setattr__(self, "_gpus", known)
        return known

    @property
    def node_names(self) -> tuple[str, ...]:
        """Node names in allocation order."""
        return tuple(part.node for part in self.parts)

    def describe(self) -> str:
        """Return the wire form used by QCG-PilotJob's runtime ``allocation`` field.

        Example: ``'n0[0:1],n1[0]'`` (node, core ids joined by ':' in brackets, nodes joined by ',').
        """
        known = self.__dict__.get("_described")
        if known is None:
            known = ",".join(f"{part.node}[{':'.join(map(str, part.cores))}]"
                             for part in self.parts)
            object.__setattr__(self, "_described", known)
        return known


class _Node:
    """Mutable per-node state; the free heap and the free set always hold the same ids."""

    __slots__ = ("name", "cores", "core_set", "free_heap", "free_set", "disabled", "held",
                 "gpus", "free_gpus")

    def __init__(self, name: str, cores: tuple[int, ...], gpus: tuple[int, ...] = ()) -> None:
        self.name = name
        self.cores = cores  # ascending, so it is already a valid heap
        self.core_set = frozenset(cores)
        self.free_heap = list(cores)
        self.free_set = set(cores)
        self.disabled = False
        self.held: set[int] = set()  # idle cores of a disabled node: neither free nor in use
        self.gpus = gpus  # ascending GPU ids
        self.free_gpus: list[int] = list(gpus)  # kept sorted: few ids, lowest first

    def take_gpus(self, count: int) -> tuple[int, ...]:
        """Remove and return the ``count`` lowest free GPU ids (caller checked availability)."""
        if not count:
            return ()
        taken = tuple(self.free_gpus[:count])
        del self.free_gpus[:count]
        return taken

    def give_back_gpus(self, gpus: tuple[int, ...]) -> None:
        if gpus:
            self.free_gpus = sorted(self.free_gpus + list(gpus))

    def take(self, count: int) -> tuple[int, ...]:
        """Remove and return the ``count`` lowest free core ids (caller checked availability)."""
        if count == len(self.free_set):
            # Taking everything: one sort of a small list beats ``count`` heap pops.
            taken = tuple(sorted(self.free_heap))
            self.free_heap.clear()
            self.free_set.clear()
            return taken
        # Popping only ever removes the smallest ids, so the heap never holds stale entries.
        taken = tuple(heapq.heappop(self.free_heap) for _ in range(count))
        self.free_set.difference_update(taken)
        return taken

    def give_back(self, cores: tuple[int, ...]) -> None:
        """Return cores that the caller has checked are owned by this node and in use."""
        if self.disabled:
            self.held.update(cores)
            return
        for core in cores:
            heapq.heappush(self.free_heap, core)
        self.free_set.update(cores)


class ResourcePool:
    """The nodes and cores available to jobs, and which of them are in use.

    Guarantees: ``used_cores + free_cores == total_cores`` at all times (``used_cores``
    includes the idle cores held back on disabled nodes, see :meth:`disable`); a core is never in
    two live allocations; :meth:`allocate` is all-or-nothing; :meth:`release` is atomic (it
    either frees the whole allocation or raises and changes nothing).
    """

    def __init__(self, nodes: Sequence[tuple]) -> None:
        """Create a fully free pool.

        Args:
            nodes: ``(name, core ids)`` or ``(name, core ids, GPU ids)`` tuples in pool
                order; names unique, every node with at least one core and no repeated id.

        Raises:
            ResourcesError: no nodes, a duplicate node name, a node without cores, or a core
                or GPU id repeated (or not a non-negative integer) on a node.
        """
        self._nodes: list[_Node] = []
        self._index: dict[str, int] = {}
        for item in nodes:
            name, cores = item[0], item[1]
            gpu_ids = tuple(item[2]) if len(item) > 2 else ()
            if name in self._index:
                raise ResourcesError(f"Duplicate node name '{name}' in the resource configuration")
            ids = list(cores)
            if not ids:
                raise ResourcesError(f"Node '{name}' has no cores")
            for core in ids:
                if isinstance(core, bool) or not isinstance(core, int) or core < 0:
                    raise ResourcesError(f"Node '{name}' has an invalid core id {core!r}")
            ordered = tuple(sorted(ids))
            if len(set(ordered)) != len(ordered):
                raise ResourcesError(f"Node '{name}' lists a core id more than once")
            for gpu in gpu_ids:
                if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
                    raise ResourcesError(f"Node '{name}' has an invalid GPU id {gpu!r}")
            if len(set(gpu_ids)) != len(gpu_ids):
                raise ResourcesError(f"Node '{name}' lists a GPU id more than once")
            self._index[name] = len(self._nodes)
            self._nodes.append(_Node(name, ordered, tuple(sorted(gpu_ids))))
        if not self._nodes:
            raise ResourcesError("The resource configuration has no nodes")
        self._total = sum(len(node.cores) for node in self._nodes)
        self._free = self._total
        # cores kept out of the pool for the manager itself (--system-core): never
        # allocated, not in the totals; resourcesInfo and status report them as upstream
        # does (in the total and in the used cores)
        self.reserved_cores = 0
        # Min-heap of indices of nodes that may have free cores. An index is in the heap at
        # most once (tracked by _queued); full nodes are dropped lazily when seen on top. It
        # lets the common 1-core allocation find the first non-full node in O(log nodes).
        self._nonfull: list[int] = list(range(len(self._nodes)))
        self._queued: list[bool] = [True] * len(self._nodes)
        # One Allocation per (node index, core) for 1-core requests, made once: a sweep of
        # 1-core tasks then allocates no objects, and what an Allocation computes once
        # (describe, total_cores) serves every task on that core. At most SINGLES_KEPT.
        self._singles: dict[tuple[int, int], Allocation] = {}

    # -- read-only views -------------------------------------------------------------

    @property
    def total_nodes(self) -> int:
        """Number of nodes."""
        return len(self._nodes)

    @property
    def total_cores(self) -> int:
        """Number of cores over all nodes."""
        return self._total

    @property
    def used_cores(self) -> int:
        """Number of cores in live allocations."""
        return self._total - self._free

    @property
    def free_cores(self) -> int:
        """Number of cores not in any live allocation."""
        return self._free

    @property
    def total_gpus(self) -> int:
        """Number of GPUs over all nodes."""
        return sum(len(node.gpus) for node in self._nodes)

    @property
    def free_gpus(self) -> int:
        """Number of GPUs not in any live allocation, on nodes that take new work."""
        return sum(len(node.free_gpus) for node in self._nodes if not node.disabled)

    @property
    def gpus(self) -> dict[str, tuple[int, ...]]:
        """GPU ids per node name, for the nodes that have any."""
        return {node.name: node.gpus for node in self._nodes if node.gpus}

    @property
    def nodes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """``(name, ascending core ids)`` of every node, in pool order."""
        return tuple((node.name, node.cores) for node in self._nodes)

    # -- feasibility -----------------------------------------------------------------

    def fits_ever(self, req: ResourceRequest) -> bool:
        """Tell whether ``req`` could be allocated if every core of the pool were free."""
        cores, nodes = req.cores, req.nodes
        if req.gpus:
            return self._fits_ever_gpus(req)
        if nodes is None:
            return self._total >= (1 if cores is None else cores.min)
        if nodes.min > len(self._nodes):
            return False
        if cores is None:
            return True  # every node has at least one core, so any nodes.min nodes will do
        qualifying = sum(1 for node in self._nodes if len(node.cores) >= cores.min)
        return qualifying >= nodes.min

    def _fits_ever_gpus(self, req: ResourceRequest) -> bool:
        """fits_ever for a GPU request: only nodes with ``req.gpus`` GPUs count."""
        cores, nodes = req.cores, req.nodes
        gpu_nodes = [node for node in self._nodes if len(node.gpus) >= req.gpus]
        if nodes is None:
            return sum(len(node.cores) for node in gpu_nodes) >= (1 if cores is None else cores.min)
        low = 1 if cores is None else cores.min
        return sum(1 for node in gpu_nodes if len(node.cores) >= low) >= nodes.min

    # -- allocation ------------------------------------------------------------------

    def allocate(self, req: ResourceRequest) -> Optional[Allocation]:
        """Allocate ``req`` from the free cores now, or return ``None`` if it does not fit.

        Never allocates partially: on ``None`` the pool is unchanged.
        """
        cores, nodes = req.cores, req.nodes
        if req.gpus:
            return self._allocate_gpus(req)
        if nodes is None:
            if cores is None or (cores.min == 1 and cores.max == 1):
                return self._take_one()
            return self._take_any(cores.min, cores.max)
        if cores is None:
            return self._take_whole_nodes(nodes)
        return self._take_per_node(nodes, cores)

    def _nonfull_from_first(self) -> Iterator[_Node]:
        """Yield nodes with free cores in pool order, starting at the first non-full node."""
        heap, queued, all_nodes = self._nonfull, self._queued, self._nodes
        while heap and not all_nodes[heap[0]].free_set:
            queued[heapq.heappop(heap)] = False
        if not heap:
            return
        for i in range(heap[0], len(all_nodes)):
            node = all_nodes[i]
            if node.free_set:
                yield node

    def _take_one(self) -> Optional[Allocation]:
        """One core: the lowest free id of the first non-full node (``_take_any(1, 1)``'s
        choice, without its generator and lists: the hot path of every 1-core sweep)."""
        heap, nodes = self._nonfull, self._nodes
        while heap and not nodes[heap[0]].free_set:
            self._queued[heapq.heappop(heap)] = False
        if not heap or self._free < 1:
            return None
        index = heap[0]
        node = nodes[index]
        core = heapq.heappop(node.free_heap)
        node.free_set.discard(core)
        self._free -= 1
        allocation = self._singles.get((index, core))
        if allocation is None:
            allocation = Allocation((NodeAllocation(node.name, (core,)),))
            if len(self._singles) < SINGLES_KEPT:
                self._singles[(index, core)] = allocation
        return allocation

    def _take_any(self, low: int, high: Optional[int]) -> Optional[Allocation]:
        """Cores on any nodes: as many as free up to ``high``, at least ``low``, on as few
        nodes as possible (see the module docstring)."""
        if self._free < low:
            return None
        want = self._free if high is None else min(high, self._free)
        parts: list[NodeAllocation] = []
        for node in self._fewest_nodes(want):
            count = min(want, len(node.free_set))
            parts.append(NodeAllocation(node.name, node.take(count)))
            want -= count
            if want == 0:
                break
        return self._commit(parts)

    def _fewest_nodes(self, want: int) -> list[_Node]:
        """The fewest nodes, in pool order, whose free cores add up to ``want`` (<= free).

        The first node with ``want`` free cores if there is one (a 1-core request stops at
        the first non-full node); else the nodes with the most free cores, which is the
        fewest that can hold ``want``.
        """
        nonfull = []
        for node in self._nonfull_from_first():
            if len(node.free_set) >= want:
                return [node]
            nonfull.append(node)
        ranked = sorted(range(len(nonfull)), key=lambda i: -len(nonfull[i].free_set))
        chosen, total = [], 0
        for i in ranked:
            chosen.append(i)
            total += len(nonfull[i].free_set)
            if total >= want:
                break
        return [nonfull[i] for i in sorted(chosen)]

    def _take_whole_nodes(self, nodes: CountRange) -> Optional[Allocation]:
        """Whole nodes: only completely free nodes qualify; each gets all its cores."""
        if nodes.min > len(self._nodes):
            return None
        limit = len(self._nodes) if nodes.max is None else nodes.max
        chosen: list[_Node] = []
        for node in self._nodes:
            if len(node.free_set) == len(node.cores):
                chosen.append(node)
                if len(chosen) == limit:
                    break
        if len(chosen) < nodes.min:
            return None
        return self._commit([NodeAllocation(node.name, node.take(len(node.cores))) for node in chosen])

    def _take_per_node(self, nodes: CountRange, cores: CountRange) -> Optional[Allocation]:
        """Nodes with ``cores`` per node: nodes with >= cores.min free cores qualify."""
        if nodes.min > len(self._nodes):
            return None
        limit = len(self._nodes) if nodes.max is None else nodes.max
        chosen: list[_Node] = []
        for node in self._nodes:
            if len(node.free_set) >= cores.min:
                chosen.append(node)
                if len(chosen) == limit:
                    break
        if len(chosen) < nodes.min:
            return None
        parts = []
        for node in chosen:
            free = len(node.free_set)
            count = free if cores.max is None else min(cores.max, free)
            parts.append(NodeAllocation(node.name, node.take(count)))
        return self._commit(parts)

    def _allocate_gpus(self, req: ResourceRequest) -> Optional[Allocation]:
        """Like :meth:`allocate`, over the nodes with ``req.gpus`` free GPUs only.

        Each chosen node gives ``req.gpus`` GPUs besides its cores: cores on any nodes
        (``numCores`` alone) spread only over such nodes, so every part has its GPUs.
        """
        need = req.gpus
        cores, nodes = req.cores, req.nodes
        eligible = [node for node in self._nodes
                    if node.free_set and len(node.free_gpus) >= need]
        chosen: list[tuple[_Node, int]] = []
        if nodes is None:
            low, high = (1, 1) if cores is None else (cores.min, cores.max)
            available = sum(len(node.free_set) for node in eligible)
            if available < low:
                return None
            want = available if high is None else min(high, available)
            for node in eligible:
                count = min(want, len(node.free_set))
                chosen.append((node, count))
                want -= count
                if want == 0:
                    break
        else:
            limit = len(self._nodes) if nodes.max is None else nodes.max
            for node in eligible:
                free = len(node.free_set)
                if cores is None:  # whole nodes
                    if free != len(node.cores):
                        continue
                    count = free
                elif free >= cores.min:
                    count = free if cores.max is None else min(cores.max, free)
                else:
                    continue
                chosen.append((node, count))
                if len(chosen) == limit:
                    break
            if len(chosen) < nodes.min:
                return None
        return self._commit([NodeAllocation(node.name, node.take(count), node.take_gpus(need))
                             for node, count in chosen])

    def _commit(self, parts: list[NodeAllocation]) -> Allocation:
        """Account for cores already taken from the nodes and wrap them in an Allocation."""
        self._free -= sum(len(part.cores) for part in parts)
        return Allocation(tuple(parts))

    # -- availability of nodes ---------------------------------------------------------

    def disable(self, name: str) -> int:
        """Take node ``name`` out of service: its free cores, and every core released later,
        are held back until :meth:`enable`. Cores in live allocations stay allocated.

        Returns the number of cores held back now. Raises ``KeyError`` for an unknown node.
        """
        node = self._nodes[self._index[name]]
        if node.disabled:
            return 0
        node.disabled = True
        held = len(node.free_set)
        node.held.update(node.free_set)
        node.free_set.clear()
        node.free_heap.clear()
        self._free -= held
        return held

    def enable(self, name: str) -> int:
        """Put node ``name`` back in service; returns the number of cores made free again."""
        index = self._index[name]
        node = self._nodes[index]
        if not node.disabled:
            return 0
        node.disabled = False
        cores = tuple(node.held)
        node.held.clear()
        node.give_back(cores)
        self._free += len(cores)
        if cores and not self._queued[index]:
            heapq.heappush(self._nonfull, index)
            self._queued[index] = True
        return len(cores)

    def is_enabled(self, name: str) -> bool:
        """Whether node ``name`` takes new work. Raises ``KeyError`` for an unknown node."""
        return not self._nodes[self._index[name]].disabled

    # -- release ---------------------------------------------------------------------

    def release(self, alloc: Allocation) -> None:
        """Return every core of ``alloc`` to the pool.

        Raises:
            RuntimeError: ``alloc`` names an unknown node or core, a core that is already free
                (double release) or the same core twice. Nothing is changed in that case.
        """
        parts = alloc.parts
        if len(parts) == 1 and len(parts[0].cores) == 1 and not parts[0].gpus:
            # one core (every task of a 1-core sweep): checked and given back inline
            part = parts[0]
            index = self._index.get(part.node)
            core = part.cores[0]
            node = self._nodes[index] if index is not None else None
            if (node is not None and core in node.core_set and core not in node.free_set
                    and core not in node.held):
                if node.disabled:
                    node.held.add(core)
                    return
                heapq.heappush(node.free_heap, core)
                node.free_set.add(core)
                self._free += 1
                if not self._queued[index]:
                    heapq.heappush(self._nonfull, index)
                    self._queued[index] = True
                return
            # else: the checks below raise the error that names what is wrong
        # Validate everything first so that a bad allocation leaves the pool untouched.
        seen_nodes: set[str] = set()
        targets: list[tuple[int, tuple[int, ...]]] = []
        for part in alloc.parts:
            index = self._index.get(part.node)
            if index is None:
                raise RuntimeError(f"Cannot release an allocation on unknown node '{part.node}'")
            if len(alloc.parts) > 1:
                if part.node in seen_nodes:
                    raise RuntimeError(f"Allocation lists node '{part.node}' more than once")
                seen_nodes.add(part.node)
            node = self._nodes[index]
            for core in part.cores:
                if core not in node.core_set:
                    raise RuntimeError(f"Cannot release unknown core {core} of node '{part.node}'")
                if core in node.free_set or core in node.held:
                    raise RuntimeError(
                        f"Core {core} of node '{part.node}' is already free (allocation released twice?)")
            if len(part.cores) > 1 and len(set(part.cores)) != len(part.cores):
                raise RuntimeError(f"Allocation lists a core of node '{part.node}' more than once")
            if part.gpus:  # most parts have none: keep the common release cheap
                for gpu in part.gpus:
                    if gpu not in node.gpus or gpu in node.free_gpus:
                        raise RuntimeError(
                            f"GPU {gpu} of node '{part.node}' is unknown or already free")
                if len(set(part.gpus)) != len(part.gpus):
                    raise RuntimeError(
                        f"Allocation lists a GPU of node '{part.node}' more than once")
            targets.append((index, part.cores, part.gpus))
        for index, cores, gpus in targets:
            node = self._nodes[index]
            node.give_back_gpus(gpus)  # GPUs of a disabled node: free_gpus hides them
            if not cores:
                continue
            node.give_back(cores)
            if node.disabled:
                continue  # held back, not free
            self._free += len(cores)
            if not self._queued[index]:
                heapq.heappush(self._nonfull, index)
                self._queued[index] = True
