"""AgentReadiness: when jobs may start in Slurm mode, and what a lost or late agent does."""

import pytest

from qcgflow.runtime.nodeagents import AgentReadiness
from qcgflow.runtime.resources import ResourcePool


class FakeLoop:
    def __init__(self):
        self.timers = []

    def call_later(self, delay, callback):
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def fire(self):
        for timer in list(self.timers):
            if not timer.cancelled:
                timer.callback()


class FakeTimer:
    def __init__(self, delay, callback):
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self):
        self.cancelled = True


class FakeManager:
    def __init__(self, nodes):
        self.pool = ResourcePool([(n, [0, 1]) for n in nodes])
        self.paused = False
        self.kicks = 0

    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False

    def kick(self):
        self.kicks += 1

    def disable_node(self, node):
        self.pool.disable(node)

    def enable_node(self, node):
        self.pool.enable(node)


def make(nodes=("n1", "n2", "n3", "n4"), threshold=1.0, timeout=600.0):
    loop, manager, failures = FakeLoop(), FakeManager(nodes), []
    readiness = AgentReadiness(loop, manager, nodes, threshold, timeout, failures.append)
    readiness.begin()
    return readiness, loop, manager, failures


def test_nothing_starts_before_agents_register():
    _, _, manager, _ = make()
    assert (manager.paused, manager.pool.free_cores) == (True, 0)


def test_jobs_start_when_every_agent_registered():
    readiness, _, manager, _ = make(nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    assert manager.paused is False


def test_threshold_lets_jobs_start_with_part_of_the_nodes():
    readiness, _, manager, _ = make(threshold=0.5)
    readiness.node_up("n3")
    readiness.node_up("n1")
    assert (manager.paused, manager.pool.free_cores) == (False, 4)


def test_below_threshold_jobs_wait():
    readiness, _, manager, _ = make(threshold=0.75)
    readiness.node_up("n1")
    readiness.node_up("n2")
    assert manager.paused is True


@pytest.mark.parametrize("threshold, needed", [(0.0, 1), (0.1, 1), (0.25, 1), (0.26, 2),
                                                (1.0, 4)])
def test_needed_agents_round_up_and_at_least_one(threshold, needed):
    readiness, _, manager, _ = make(threshold=threshold)
    for node in ("n1", "n2", "n3", "n4")[:needed - 1]:
        readiness.node_up(node)
    still_paused = manager.paused
    readiness.node_up(("n1", "n2", "n3", "n4")[needed - 1])
    assert (still_paused, manager.paused) == (True, False)


def test_timeout_before_threshold_fails_with_the_counts():
    readiness, loop, _, failures = make(nodes=("n1", "n2"), timeout=5)
    readiness.node_up("n1")
    loop.fire()
    assert failures == ["1 of 2 node agents registered within --nl-init-timeout 5s "
                        "(2 needed)"]


def test_timeout_after_start_does_nothing():
    readiness, loop, _, failures = make(nodes=("n1",))
    readiness.node_up("n1")
    loop.fire()
    assert failures == []


def test_late_agent_enables_its_node():
    readiness, _, manager, _ = make(threshold=0.5, nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    assert manager.pool.free_cores == 4


def test_lost_agent_disables_its_node():
    readiness, _, manager, _ = make(nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    readiness.node_lost("n2", "agent on n2 lost: x")
    assert (manager.pool.is_enabled("n2"), manager.pool.free_cores) == (False, 2)


def test_agents_failing_to_start_below_threshold_fail_at_once():
    readiness, _, _, failures = make(nodes=("n1", "n2"))
    readiness.node_lost("n2", "agent on n2 failed to start: srun: error")
    assert failures == ["only 1 of the 2 node agents needed can still start (agent on n2 "
                        "failed to start: srun: error)"]


def test_failure_is_reported_once():
    readiness, loop, _, failures = make(nodes=("n1", "n2"), timeout=5)
    readiness.node_lost("n2", "x")
    loop.fire()
    assert len(failures) == 1


def test_losing_every_agent_after_the_start_stops_the_service():
    readiness, _, _, failures = make(nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    readiness.node_lost("n1", "a")
    readiness.node_lost("n2", "agent on n2 lost: b")
    assert failures == ["every node agent is lost (the last: agent on n2 lost: b)"]


def test_losing_some_agents_after_the_start_goes_on():
    readiness, _, _, failures = make(nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    readiness.node_lost("n1", "a")
    assert failures == []


def test_the_first_failure_is_the_one_reported():
    readiness, _, _, failures = make(nodes=("n1", "n2"))
    readiness.node_lost("n1", "first")
    readiness.node_lost("n2", "second")
    assert failures == ["only 1 of the 2 node agents needed can still start (first)"]


def test_agents_signalled_by_slurm_then_lost_are_the_allocation_end_not_a_failure():
    readiness, _, _, failures = make(nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    for node in ("n1", "n2"):
        readiness.node_terminating(node, 15)
        readiness.node_lost(node, "agent on %s lost: its srun process ended" % node)
    assert (readiness.allocation_ended, readiness.signum) == (True, 15)
    assert failures == ["the allocation is ending: Slurm sent every node agent SIGTERM (time "
                        "limit or scancel); interrupted and queued work is journaled for "
                        "--resume"]


def test_one_agent_lost_without_a_signal_keeps_it_a_failure():
    readiness, _, _, failures = make(nodes=("n1", "n2"))
    readiness.node_up("n1")
    readiness.node_up("n2")
    readiness.node_terminating("n1", 15)
    readiness.node_lost("n1", "a")
    readiness.node_lost("n2", "agent on n2 lost: b")
    assert (readiness.allocation_ended, failures) == (
        False, ["every node agent is lost (the last: agent on n2 lost: b)"])
    assert readiness.jobs_started
