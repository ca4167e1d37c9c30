"""The Ray habits (issue 22): patterns a Ray user brings, on a real 2-core service.

Every test has a deadline: a pattern that deadlocks fails at it instead of hanging.
"""

import time

import pytest

import qcgflow

from graph_harness import no_leftovers, run_wd  # noqa: F401

DEADLINE = 60


@qcgflow.task
def leaf(x):
    return x * 10


@qcgflow.task
def parent(x):
    """Ray's nested-task example: a task that submits tasks and waits for them."""
    return sum(qcgflow.get([leaf.remote(x), leaf.remote(x + 1)], timeout=DEADLINE))


@qcgflow.task
def quicksort(values):
    """A recursive quicksort: each level waits for two sub-sorts (Ray's classic)."""
    if len(values) <= 3:
        return sorted(values)
    pivot, rest = values[0], values[1:]
    left = quicksort.remote([v for v in rest if v < pivot])
    right = quicksort.remote([v for v in rest if v >= pivot])
    return qcgflow.get(left, timeout=DEADLINE) + [pivot] + qcgflow.get(right, timeout=DEADLINE)


@qcgflow.task
def waits_with_wait(n):
    refs = [leaf.remote(i) for i in range(n)]
    ready, _ = qcgflow.wait(refs, num_returns=n, timeout=DEADLINE)
    return len(ready)


@pytest.fixture
def session(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)) as context:
        yield context


def test_two_nested_parents_on_two_cores_complete(session):
    # both cores run a parent blocked in get: its children run on the cores lent meanwhile
    started = time.monotonic()
    assert qcgflow.get([parent.remote(1), parent.remote(5)], timeout=DEADLINE) == [30, 110]
    assert time.monotonic() - started < DEADLINE


def test_a_recursive_quicksort_on_two_cores_completes(session):
    values = [(i * 7919) % 101 for i in range(40)]
    assert qcgflow.get(quicksort.remote(values), timeout=DEADLINE) == sorted(values)


def test_wait_inside_a_task_lends_its_core_too(session):
    assert qcgflow.get([waits_with_wait.remote(3), waits_with_wait.remote(3)],
                       timeout=DEADLINE) == [3, 3]


def test_lent_cores_come_back_to_the_pool(session):
    qcgflow.get([parent.remote(1), parent.remote(5)], timeout=DEADLINE)
    reply = session.session.client.request({"request": "resourcesInfo"})
    assert reply["total_cores"] == 2 and reply["used_cores"] == 0, reply


def test_a_blocked_request_for_an_unknown_step_is_a_no_op(session):
    reply = session.session.client.request({"request": "taskBlocked", "step": "nosuch"})
    assert reply == {"lent": False}
