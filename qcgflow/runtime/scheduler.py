"""FIFO first-fit scheduling over the ready queue (pure: no I/O, no clock).

The queue holds only jobs whose dependencies are satisfied, in submission order (jobs that
wait for dependencies are not scanned at all: ``deps.DependencyTracker`` inserts them when
their last predecessor succeeds). ``Scheduler.step`` walks the queue from the head:
for each job it starts as many ready iterations as fit, and when one does not fit it skips
ahead to the next job (first fit). It stops as soon as no core is free.

Iterations are expanded lazily: a job of a million iterations is one ``JobEntry`` with a
cursor (or, for per-iteration dependencies, a heap of the positions that became ready).
"""

import bisect
import heapq
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from .iterschedulers import plan_iterations
from .resources import Allocation, CountRange, ResourcePool, ResourceRequest


@dataclass  # one per task: not frozen (a frozen dataclass's __init__ is slow); immutable
class Start:
    """Decision: start ``position`` (None for a non-iterative job) of ``entry`` on ``allocation``.

    ``allocation`` None: the unit can never get one (``refusal`` says why); it must end
    FAILED instead of starting (upstream fails it when it reaches the scheduler).
    """

    entry: "JobEntry"
    position: Optional[int]
    allocation: Optional[Allocation]
    refusal: Optional[str] = None


class JobEntry:
    """Scheduling and readiness state of one unfinished job.

    Attributes:
        pending: unfinished job-level predecessors (``after: [a]`` or ``a:3``).
        per_iteration: number of per-iteration predecessors (``after: [a:${it}]``).
    """

    __slots__ = ("job", "seq", "total", "cursor", "ready_heap", "pending", "per_iteration",
                 "remaining", "omitted", "queued", "_cores_plan", "_nodes_plan", "_fixed")

    def __init__(self, job, pool: ResourcePool):
        spec = job.spec
        self.job = job
        self.seq = job.seq
        self.total = spec.iteration.count if spec.iteration else 1
        self.cursor = 0  # next position, when per_iteration == 0
        self.ready_heap: List[int] = []  # positions ready, when per_iteration > 0
        self.pending = 0
        self.per_iteration = 0
        self.remaining: Dict[int, int] = {}  # position -> per-iteration predecessors left
        self.omitted = set()  # positions omitted before they could be started
        self.queued = False
        res = spec.resources
        self._cores_plan = self._plan(res.cores, res.cores_scheduler, pool.total_cores)
        self._nodes_plan = self._plan(res.nodes, res.nodes_scheduler, pool.total_nodes)
        self._fixed = None
        if self._cores_plan is None and self._nodes_plan is None:
            cores = res.cores if (res.cores or res.nodes) else CountRange(1, 1)
            self._fixed = ResourceRequest(cores=cores, nodes=res.nodes, gpus=res.gpus)

    def _plan(self, rng, scheduler, available) -> Optional[Callable[[int], CountRange]]:
        if rng is None or scheduler is None:
            return None
        return plan_iterations(scheduler.name, scheduler.params, rng, available, self.total)

    def request_for(self, position: int) -> ResourceRequest:
        """The resources of one iteration (iteration schedulers make them exact)."""
        if self._fixed is not None:
            return self._fixed
        res = self.job.spec.resources
        cores = self._cores_plan(position) if self._cores_plan else res.cores
        nodes = self._nodes_plan(position) if self._nodes_plan else res.nodes
        return ResourceRequest(cores=cores, nodes=nodes, gpus=res.gpus)

    def max_request(self) -> ResourceRequest:
        """The biggest single-iteration request (for the can-it-ever-fit check)."""
        if self._fixed is not None:
            return self._fixed
        candidates = {0, self.total - 1}
        requests = [self.request_for(p) for p in candidates]
        return max(requests, key=lambda r: ((r.cores.min if r.cores else 0),
                                            (r.nodes.min if r.nodes else 0)))

    # ----------------------------------------------------------------- readiness
    def mark_ready(self, position: int) -> None:
        heapq.heappush(self.ready_heap, position)

    def peek(self) -> Optional[int]:
        """The next ready position, or None."""
        if self.pending:
            return None
        if self.per_iteration:
            heap = self.ready_heap
            while heap and heap[0] in self.omitted:
                self.omitted.discard(heapq.heappop(heap))
            return heap[0] if heap else None
        while self.cursor < self.total and self.cursor in self.omitted:
            self.omitted.discard(self.cursor)
            self.cursor += 1
        return self.cursor if self.cursor < self.total else None

    def pop(self) -> None:
        if self.per_iteration:
            heapq.heappop(self.ready_heap)
        else:
            self.cursor += 1

    def exhausted(self) -> bool:
        """No iteration of this job will ever be started again."""
        if self.per_iteration:
            return False  # more positions may become ready later; the manager drops it
        return self.peek() is None


class ReadyQueue:
    """Jobs ready to run, ordered by submission (``seq``), with O(1) removal of the head."""

    def __init__(self):
        self._entries: List[JobEntry] = []
        self._seqs: List[int] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(list(self._entries))

    def add(self, entry: JobEntry) -> None:
        if entry.queued:
            return
        entry.queued = True
        if not self._seqs or entry.seq > self._seqs[-1]:
            self._entries.append(entry)
            self._seqs.append(entry.seq)
            return
        index = bisect.bisect_left(self._seqs, entry.seq)
        self._entries.insert(index, entry)
        self._seqs.insert(index, entry.seq)

    def discard(self, entry: JobEntry) -> None:
        if not entry.queued:
            return
        entry.queued = False
        index = bisect.bisect_left(self._seqs, entry.seq)
        del self._entries[index]
        del self._seqs[index]

    def entries(self) -> List[JobEntry]:
        return self._entries


class Scheduler:
    """Decides which ready iterations start now, first fit in FIFO order."""

    def __init__(self, pool: ResourcePool):
        self.pool = pool
        self.queue = ReadyQueue()
        self.held: set = set()  # names of jobs held back because their wt outlasts time_left

    def step(self, time_left: Optional[float] = None) -> List[Start]:
        """Allocate resources to as many ready iterations as fit, head of the queue first.

        Jobs with nothing ready any more are dropped from the queue; allocations are taken
        from the pool (the caller releases them when the iteration ends). With ``time_left``
        (seconds until the allocation ends), a job whose wall time ``wt`` is longer is not
        started: it stays queued (and is named in ``held``); jobs without ``wt`` start.
        """
        pool = self.pool
        starts: List[Start] = []
        if pool.free_cores == 0 or not len(self.queue):
            return starts
        drop: List[JobEntry] = []
        for entry in self.queue.entries():
            if time_left is not None:
                wt = entry.job.spec.resources.wt
                if wt is not None and wt > time_left:
                    self.held.add(entry.job.spec.name)
                    continue
            position = entry.peek()
            refusal = entry.job.spec.resources.unschedulable
            while position is not None and refusal is not None:
                entry.pop()  # every ready unit ends FAILED at once, cores or not
                starts.append(Start(entry, position if entry.job.iterative else None, None,
                                    refusal))
                position = entry.peek()
            while position is not None:
                allocation = pool.allocate(entry.request_for(position))
                if allocation is None:
                    break
                entry.pop()
                starts.append(Start(entry, position if entry.job.iterative else None,
                                    allocation))
                if pool.free_cores == 0:
                    break
                position = entry.peek()
            if entry.peek() is None:
                drop.append(entry)
            if pool.free_cores == 0:
                break
        for entry in drop:
            self.queue.discard(entry)
        return starts
