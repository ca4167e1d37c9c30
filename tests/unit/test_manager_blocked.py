"""Blocked tasks lend their cores (Manager.lend / reclaim, the taskBlocked requests).

A fake executor knows running units by a step id (here: the unit's name); tasks never run.
"""

from factories import Harness, job_desc
from qcgflow.runtime import protocol as p
from qcgflow.runtime.handlers import RequestHandler


class Steps:
    """The fake executor with ``running_step``: step id = unit name."""

    def __init__(self, executor):
        self.executor = executor

    def running_step(self, step):
        for job, position, allocation in self.executor.running:
            if job.unit_name(position) == step:
                return job, position, allocation
        return None


def harness():
    h = Harness()  # one node, 2 cores
    h.executor.running_step = Steps(h.executor).running_step
    return h


def test_a_blocked_task_lends_its_core_and_takes_one_back():
    h = harness()
    h.submit(job_desc("a"), job_desc("b"), job_desc("c"))
    assert h.running_names() == ["a", "b"]
    assert h.manager.lend("a")
    h.loop.run_pending()
    assert h.running_names() == ["a", "b", "c"]  # c runs on a's core
    h.finish("c")
    assert h.manager.reclaim("a")  # c's core was free
    assert h.pool.free_cores == 0
    h.finish("a")
    h.finish("b")
    assert h.pool.free_cores == 2


def test_a_woken_task_without_free_cores_is_owed_the_next_one():
    h = harness()
    h.submit(job_desc("a"), job_desc("b"), job_desc("c"), job_desc("d"))
    h.manager.lend("a")
    h.loop.run_pending()
    assert h.running_names() == ["a", "b", "c"]
    assert not h.manager.reclaim("a")  # none free: a runs over the pool (Ray: negative)
    h.finish("c")  # its core repays a's debt before d may start
    assert h.running_names() == ["a", "b"] and h.pool.free_cores == 0
    h.finish("a")  # gives back the core it was repaid: now d runs
    assert h.running_names() == ["b", "d"]
    h.finish("b")
    h.finish("d")
    assert h.pool.free_cores == 2


def test_a_task_that_blocks_again_gives_back_what_it_holds():
    h = harness()
    h.submit(job_desc("a"), job_desc("b"), job_desc("c"), job_desc("d"))
    h.manager.lend("a")
    h.loop.run_pending()
    h.manager.reclaim("a")  # owed
    assert h.manager.lend("a")  # blocks again: the debt is forgiven, nothing released
    assert h.pool.free_cores == 0
    h.finish("c")
    h.loop.run_pending()
    assert h.running_names() == ["a", "b", "d"]
    h.finish("a")  # holds nothing: nothing released twice
    h.finish("b")
    h.finish("d")
    assert h.pool.free_cores == 2


def test_lend_is_idempotent_and_unknown_steps_are_no_ops():
    h = harness()
    h.submit(job_desc("a"))
    assert h.manager.lend("a") and not h.manager.lend("a")
    assert not h.manager.lend("nosuch") and not h.manager.reclaim("nosuch")
    assert not h.manager.reclaim("b")
    h.finish("a")
    assert h.pool.free_cores == 2


def test_the_requests_parse_and_answer():
    h = harness()
    h.submit(job_desc("a"))
    handler = RequestHandler(h.manager, control=None)
    assert handler.handle({"request": "taskBlocked", "step": "a"}) == {
        "code": 0, "data": {"lent": True}}
    assert handler.handle({"request": "taskUnblocked", "step": "a"}) == {
        "code": 0, "data": {"reclaimed": True}}
    assert handler.handle({"request": "taskBlocked"})["message"] == \
        "Wrong taskBlocked request - missing step (QCG_PM_STEP_ID)"
    assert p.parse_request({"request": "cancelJob", "jobNames": ["a"], "force": True}).force
