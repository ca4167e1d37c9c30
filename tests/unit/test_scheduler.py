"""Unit tests of qcgflow.runtime.scheduler: JobEntry, ReadyQueue and Scheduler.step.

FIFO order, first-fit skip-ahead, lazy iterations, per-iteration resource plans.
"""

import tracemalloc

import pytest

from factories import cores_pool, job_desc, make_manager, make_registry, spec
from qcgflow.runtime.resources import CountRange, ResourcePool, ResourceRequest
from qcgflow.runtime.scheduler import JobEntry, ReadyQueue, Scheduler


class Setup:
    """A registry, a pool and a scheduler; ``add`` registers a job and queues its entry."""

    def __init__(self, resource_pool: ResourcePool):
        self.registry = make_registry()
        self.pool = resource_pool
        self.scheduler = Scheduler(resource_pool)

    def entry(self, name, **overrides):
        job = self.registry.add(spec(name, **overrides))
        return JobEntry(job, self.pool)

    def add(self, name, **overrides):
        entry = self.entry(name, **overrides)
        self.scheduler.queue.add(entry)
        return entry

    def step(self):
        return [(s.entry.job.unit_name(s.position), s.allocation.describe())
                for s in self.scheduler.step()]

    def step_names(self):
        return [name for name, _ in self.step()]


def cores(n):
    return {"numCores": {"exact": n}}


# =============================================================================== Scheduler.step

def test_fifo_order_of_single_jobs():
    s = Setup(cores_pool(3))
    for name in ("c", "a", "b"):
        s.add(name)
    assert s.step() == [("c", "n0[0]"), ("a", "n0[1]"), ("b", "n0[2]")]


def test_stops_when_no_core_is_free():
    s = Setup(cores_pool(2))
    for name in ("a", "b", "c"):
        s.add(name)
    assert (s.step_names(), len(s.scheduler.queue)) == (["a", "b"], 1)


def test_nothing_to_do_on_a_full_pool():
    s = Setup(cores_pool(1))
    s.add("a")
    s.step()
    s.add("b")
    assert (s.step(), len(s.scheduler.queue)) == ([], 1)


def test_empty_queue_gives_no_decisions():
    assert Setup(cores_pool(2)).step() == []


def test_first_fit_skips_a_head_that_does_not_fit():
    """A 2-core job at the head with one free core lets the 1-core job behind it start."""
    s = Setup(cores_pool(2))
    s.add("busy")
    s.step()
    s.add("big", resources=cores(2))
    s.add("small")
    assert s.step_names() == ["small"]


def test_skipped_head_stays_first_in_the_queue():
    s = Setup(cores_pool(2))
    s.add("busy")
    s.step()
    s.add("big", resources=cores(2))
    s.add("small")
    s.step()
    assert [e.job.name for e in s.scheduler.queue.entries()] == ["big"]


def test_skipped_head_starts_when_resources_come_back():
    s = Setup(cores_pool(2))
    s.add("busy")
    first = s.scheduler.step()
    s.add("big", resources=cores(2))
    s.add("small")
    second = s.scheduler.step()
    for start in first + second:
        s.pool.release(start.allocation)
    assert s.step() == [("big", "n0[0:1]")]


def test_head_gets_the_cores_before_later_jobs():
    s = Setup(cores_pool(2))
    s.add("big", resources=cores(2))
    s.add("small")
    assert s.step_names() == ["big"]


def test_iterations_of_the_head_fill_the_pool_first():
    s = Setup(cores_pool(3))
    s.add("a", iteration={"stop": 2})
    s.add("b", iteration={"stop": 2})
    assert s.step_names() == ["a:0", "a:1", "b:0"]


def test_iterations_named_by_index():
    s = Setup(cores_pool(2))
    s.add("a", iteration={"start": 5, "stop": 7})
    assert s.step_names() == ["a:5", "a:6"]


def test_non_iterative_start_has_no_position():
    s = Setup(cores_pool(1))
    s.add("a")
    assert s.scheduler.step()[0].position is None


def test_finished_entries_leave_the_queue():
    s = Setup(cores_pool(4))
    s.add("a", iteration={"stop": 2})
    s.add("b")
    s.step()
    assert len(s.scheduler.queue) == 0


def test_allocations_come_from_the_pool():
    s = Setup(cores_pool(4))
    s.add("a", resources=cores(3))
    s.step()
    assert (s.pool.used_cores, s.pool.free_cores) == (3, 1)


@pytest.mark.parametrize("resources, free_before, got", [
    ({"numCores": {"min": 1, "max": 3}}, 4, "n0[0:1:2]"),
    ({"numCores": {"min": 1, "max": 3}}, 2, "n0[2:3]"),
    ({"numCores": {"min": 2, "max": 8}}, 4, "n0[0:1:2:3]"),
    ({"numCores": {"min": 2, "max": 8}}, 3, "n0[1:2:3]"),
])
def test_min_max_ranges_take_the_maximum_possible(resources, free_before, got):
    s = Setup(cores_pool(4))
    if free_before < 4:
        s.add("busy", resources=cores(4 - free_before))
        s.step()
    s.add("a", resources=resources)
    assert s.step() == [("a", got)]


def test_min_not_available_waits():
    s = Setup(cores_pool(4))
    s.add("busy", resources=cores(3))
    s.step()
    s.add("a", resources={"numCores": {"min": 2, "max": 4}})
    assert s.step() == []


@pytest.mark.parametrize("resources, kind, has", [
    ({"numCores": {"min": 2}}, "core", "numCores has only min"),
    ({"numCores": {"max": 8}}, "core", "numCores has only max"),
    ({"numNodes": {"min": 1}, "numCores": {"min": 1}}, "node", "numNodes has only min"),
])
def test_an_open_range_is_refused_as_upstream(resources, kind, has):
    """upstream scheduleralgo.allocate_job raises InvalidResourceSpec for a range without
    min or max: every unit is refused (no allocation), with upstream's wording first."""
    s = Setup(cores_pool(4))
    s.add("a", resources=resources, iteration={"stop": 3})
    starts = s.scheduler.step()
    assert [(st.position, st.allocation) for st in starts] == [(0, None), (1, None), (2, None)]
    assert starts[0].refusal.startswith(
        "Both %s's range boundaries (min, max) must be defined (job 'a': resources." % kind)
    assert has in starts[0].refusal
    assert (s.pool.free_cores, len(s.scheduler.queue)) == (4, 0)


def test_an_open_range_with_an_iteration_scheduler_is_exact():
    s = Setup(cores_pool(4))
    s.add("a", resources={"numCores": {"min": 1, "scheduler": {"name": "maximum-iters"}}},
          iteration={"stop": 2})
    assert s.step() == [("a:0", "n0[0:1]"), ("a:1", "n0[2:3]")]


def test_nodes_ranges_take_the_maximum_possible():
    s = Setup(cores_pool(2, 2, 2))
    s.add("a", resources={"numNodes": {"min": 1, "max": 2}, "numCores": {"exact": 1}})
    assert s.step() == [("a", "n0[0],n1[0]")]


def test_job_without_resources_takes_one_core():
    s = Setup(cores_pool(2, 2))
    s.add("a")
    assert s.step() == [("a", "n0[0]")]


# =============================================================================== ReadyQueue

def entries(setup, names):
    return [setup.entry(name) for name in names]


def test_queue_orders_by_submission_whatever_the_insertion_order():
    s = Setup(cores_pool(1))
    a, b, c = entries(s, "abc")
    queue = ReadyQueue()
    for entry in (c, a, b):
        queue.add(entry)
    assert [e.job.name for e in queue.entries()] == ["a", "b", "c"]


def test_queue_add_is_idempotent():
    s = Setup(cores_pool(1))
    (a,) = entries(s, "a")
    queue = ReadyQueue()
    queue.add(a)
    queue.add(a)
    assert len(queue) == 1


def test_queue_discard():
    s = Setup(cores_pool(1))
    a, b, c = entries(s, "abc")
    queue = ReadyQueue()
    for entry in (a, b, c):
        queue.add(entry)
    queue.discard(b)
    queue.discard(b)
    assert ([e.job.name for e in queue], a.queued, b.queued) == (["a", "c"], True, False)


def test_queue_can_readd_after_discard():
    s = Setup(cores_pool(1))
    a, b = entries(s, "ab")
    queue = ReadyQueue()
    queue.add(a)
    queue.add(b)
    queue.discard(a)
    queue.add(a)
    assert [e.job.name for e in queue.entries()] == ["a", "b"]


# =============================================================================== JobEntry: readiness and laziness

def test_entry_cursor_walks_iterations():
    s = Setup(cores_pool(1))
    entry = s.entry("a", iteration={"stop": 3})
    seen = []
    while entry.peek() is not None:
        seen.append(entry.peek())
        entry.pop()
    assert (seen, entry.exhausted()) == ([0, 1, 2], True)


def test_entry_with_pending_predecessors_has_nothing_ready():
    s = Setup(cores_pool(1))
    entry = s.entry("a")
    entry.pending = 1
    assert entry.peek() is None


def test_entry_skips_omitted_positions():
    s = Setup(cores_pool(1))
    entry = s.entry("a", iteration={"stop": 4})
    entry.omitted.update({0, 2})
    seen = []
    while entry.peek() is not None:
        seen.append(entry.peek())
        entry.pop()
    assert (seen, entry.omitted) == ([1, 3], set())


def test_per_iteration_entry_serves_ready_positions_in_order():
    s = Setup(cores_pool(1))
    entry = s.entry("a", iteration={"stop": 5})
    entry.per_iteration = 1
    for position in (3, 0, 4):
        entry.mark_ready(position)
    seen = []
    while entry.peek() is not None:
        seen.append(entry.peek())
        entry.pop()
    assert (seen, entry.exhausted()) == ([0, 3, 4], False)


def test_million_iterations_are_expanded_lazily():
    """Submitting and starting a few iterations of a 1,000,000-iteration job costs O(1) objects."""
    s = Setup(cores_pool(4))
    tracemalloc.start()
    try:
        entry = s.add("big", iteration={"stop": 1_000_000})
        starts = s.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    job = entry.job
    assert (len(starts), entry.cursor, entry.ready_heap, entry.omitted, entry.remaining,
            job.records) == (4, 4, [], set(), {}, {})
    assert peak < 3_000_000   # the state bytearray (1 MB) and little else


def test_million_iterations_through_the_manager_keep_o1_records():
    h = make_manager(nodes=[("n0", [0, 1])])
    h.submit(job_desc("big", iteration={"stop": 1_000_000}))
    for _ in range(5):
        h.finish_all_running()
    job, entry = h.job("big"), h.manager.entries["big"]
    assert (job.finished, len(job.records), entry.cursor, len(entry.ready_heap),
            h.running_names()) == (10, 2, 12, 0, ["big:10", "big:11"])


# =============================================================================== per-iteration resources

def scheduler_spec(name, params=None, minimum=1):
    sched = {"name": name}
    if params is not None:
        sched["params"] = params
    return {"numCores": {"min": minimum, "scheduler": sched}}


@pytest.mark.parametrize("name, params, iterations, total, expected", [
    ("split-into", {"parts": 2}, 4, 4, [2, 2, 2, 2]),
    ("split-into", None, 4, 8, [2, 2, 2, 2]),
    ("split-into", None, 3, 4, [1, 1, 1]),
    ("maximum-iters", None, 3, 4, [1, 1, 2]),
    ("maximum-iters", None, 3, 10, [3, 3, 4]),
    ("maximum-iters", None, 3, 11, [3, 4, 4]),
    ("maximum-iters", None, 5, 10, [2, 2, 2, 2, 2]),
    ("maximum-iters", None, 20, 10, [1] * 20),
])
def test_request_for_applies_the_iteration_scheduler(name, params, iterations, total, expected):
    s = Setup(cores_pool(total))
    entry = s.entry("a", iteration={"stop": iterations}, resources=scheduler_spec(name, params))
    requests = [entry.request_for(p) for p in range(iterations)]
    assert ([r.cores for r in requests], {r.nodes for r in requests}) == (
        [CountRange(n, n) for n in expected], {None})


def test_request_for_counts_cores_of_every_node():
    s = Setup(cores_pool(2, 2))
    entry = s.entry("a", iteration={"stop": 4}, resources=scheduler_spec("split-into",
                                                                         {"parts": 2}))
    assert entry.request_for(0).cores == CountRange(2, 2)


def test_request_for_nodes_scheduler():
    s = Setup(cores_pool(1, 1, 1, 1))
    entry = s.entry("a", iteration={"stop": 2},
                    resources={"numNodes": {"min": 1, "scheduler": {"name": "split-into"}}})
    assert entry.request_for(1) == ResourceRequest(cores=None, nodes=CountRange(2, 2))


@pytest.mark.parametrize("resources, request_", [
    (None, ResourceRequest(CountRange(1, 1), None)),
    ({"numCores": {"exact": 3}}, ResourceRequest(CountRange(3, 3), None)),
    ({"numCores": {"min": 2, "max": 4}}, ResourceRequest(CountRange(2, 4), None)),
    ({"numNodes": {"exact": 2}}, ResourceRequest(None, CountRange(2, 2))),
])
def test_request_without_scheduler_is_the_description(resources, request_):
    s = Setup(cores_pool(8))
    overrides = {} if resources is None else {"resources": resources}
    entry = s.entry("a", iteration={"stop": 3}, **overrides)
    assert [entry.request_for(p) for p in range(3)] == [request_] * 3


def test_split_into_iterations_start_with_their_share():
    s = Setup(cores_pool(4))
    s.add("a", iteration={"stop": 4}, resources=scheduler_spec("split-into", {"parts": 2}))
    assert s.step() == [("a:0", "n0[0:1]"), ("a:1", "n0[2:3]")]


def test_maximum_iters_iterations_start_with_their_share():
    s = Setup(cores_pool(4))
    s.add("a", iteration={"stop": 3}, resources=scheduler_spec("maximum-iters"))
    assert s.step() == [("a:0", "n0[0]"), ("a:1", "n0[1]"), ("a:2", "n0[2:3]")]


@pytest.mark.parametrize("resources, total, expected", [
    (scheduler_spec("maximum-iters"), 4, CountRange(2, 2)),
    (scheduler_spec("split-into", {"parts": 3}, minimum=2), 4, CountRange(2, 2)),
    ({"numCores": {"exact": 3}}, 4, CountRange(3, 3)),
])
def test_max_request(resources, total, expected):
    s = Setup(cores_pool(total))
    entry = s.entry("a", iteration={"stop": 3}, resources=resources)
    assert entry.max_request().cores == expected



def test_members_without_num_nodes_are_packed_one_node_each_in_fifo_order():
    """2-core members on 2-core nodes each get a whole node (upstream's linear fill would
    split them across n0/n1 and n1/n2); the queue order is kept, a later 1-core job fills
    the hole left on n0."""
    s = Setup(ResourcePool([("n0", range(2)), ("n1", range(2)), ("n2", range(2))]))
    s.add("a")
    s.add("md", resources=cores(2), iteration={"stop": 3})
    s.add("b")
    assert s.step() == [("a", "n0[0]"), ("md:0", "n1[0:1]"), ("md:1", "n2[0:1]"),
                        ("b", "n0[1]")]
