"""The session's tracker (qcgflow/session/tracker.py): events in, instructions out.

No service, no threads, no sleeps: tasks are built with factories and the facts a driver
would find out (results, failures, iteration states) are given in the events.
"""

import itertools

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, RunError, TaskCancelled, TaskFailed
from qcgflow.runtime.protocol import CANCELED, FAILED, OMITTED, SUCCEED
from qcgflow.session.events import (Added, Adopted, Cancel, CancelJobs, CancelSent, Facts,
                                    HandlingFailed, JobEnded, Loaded, PartWritten, Put, Record,
                                    Refused, Resolve, ServiceDied, Shutdown, Submit, Unqueue,
                                    Withdrawn, WritePart)
from qcgflow.session.tracker import (CANCELLED, DONE, FAILED_, HELD, RETRYING, SUBMITTED,
                                     TRANSITIONS, InvalidTransition, Task, TaskState, Tracker)

PYTHON = "/usr/bin/python3"


@qcgflow.task
def leaf(x):
    return x


@qcgflow.task
def join(*xs):
    return xs


@qcgflow.task(retries=2)
def flaky(x):
    return x


@qcgflow.task(retries=1, retry_exceptions=[KeyError])
def picky(x):
    return x


@qcgflow.task(num_returns=2)
def pair():
    return 1, 2


class Future:
    """What the tracker names in instructions (it never calls a future)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<Future %s>" % self.name


class Recording(Tracker):
    """A tracker that records every move (start, finish) its mutator makes."""

    def __init__(self):
        super().__init__(PYTHON)
        self.moves = []

    def _move(self, task, finish):
        start = task.state
        super()._move(task, finish)
        self.moves.append((start, finish))


def add(tracker, *refs):
    """Tasks for ``refs`` and every node they need (predecessors first), as the driver
    adds them; returns (tasks by node, instructions)."""
    order = []

    def visit(node):
        if node in tracker.tasks or node in order:
            return
        for ref, _ in node.dependencies():
            visit(ref.node)
        order.append(node)

    for ref in refs:
        visit(ref.node)
    tasks = [Task(node, "%s-%d" % (node.base, node.seq),
                  list(dict.fromkeys(ref.node for ref, _ in node.dependencies())),
                  Future(node.base)) for node in order]
    return {task.node: task for task in tasks}, tracker.handle(Added(tuple(tasks)))


def loaded(value):
    return Facts(loaded=Loaded(value))


def own(name, cause_type="", messages="exit code 1"):
    return Facts(own=TaskFailed(name, messages=messages, cause_type=cause_type))


def kinds(instructions):
    return [type(i).__name__ for i in instructions]


# --------------------------------------------------------------------------- submit
def test_a_task_without_predecessors_is_submitted_at_once():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, out = add(tracker, ref)
    task = tasks[ref.node]
    assert out == [Submit(task, task.job)]


def test_a_submitted_job_carries_the_task_name():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, out = add(tracker, ref)
    assert out[0].job["name"] == tasks[ref.node].name


def test_a_dependant_of_a_running_task_runs_after_it_in_the_service():
    tracker = Tracker(PYTHON)
    a = leaf.bind(1)
    b = leaf.bind(a)
    tasks, out = add(tracker, b)
    assert out[1].job["dependencies"]["after"] == [tasks[a.node].name]


def test_the_session_env_is_added_and_the_task_env_wins():
    tracker = Tracker(PYTHON)
    tracker.env = {"A": "session", "B": "session"}
    ref = leaf.options(env={"B": "task"}).bind(1)
    _, out = add(tracker, ref)
    assert out[0].job["execution"]["env"] == {"A": "session", "B": "task"}


def test_a_dependant_of_a_task_with_retries_is_held():
    tracker = Tracker(PYTHON)
    a = flaky.bind(1)
    b = leaf.bind(a)
    tasks, out = add(tracker, b)
    assert (kinds(out), tasks[b.node].state) == (["Submit"], HELD)


def test_a_held_dependant_is_submitted_without_dependencies_when_it_succeeded():
    tracker = Tracker(PYTHON)
    a = flaky.bind(1)
    b = leaf.bind(a)
    tasks, _ = add(tracker, b)
    out = tracker.handle(JobEnded(tasks[a.node].name, SUCCEED, loaded(1)))
    assert out == [Record(tasks[a.node]), Resolve(tasks[a.node].future, 1),
                   Submit(tasks[b.node], tasks[b.node].job)]
    assert "dependencies" not in tasks[b.node].job


# --------------------------------------------------------------------------- outcomes
def test_success_resolves_the_future_with_the_loaded_value():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    assert tracker.handle(JobEnded(task.name, SUCCEED, loaded(42))) == \
        [Record(task), Resolve(task.future, 42)]


def test_an_end_of_a_job_not_awaited_changes_nothing():
    tracker = Tracker(PYTHON)
    assert tracker.handle(JobEnded("someone-else", SUCCEED, loaded(1))) == []


def test_a_result_that_cannot_be_loaded_fails_the_task():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    out = tracker.handle(JobEnded(tasks[ref.node].name, SUCCEED,
                                  Facts(loaded=Loaded(error=ValueError("truncated")))))
    assert "cannot load the result: truncated" in str(out[0].error)


def test_a_failure_fails_the_future_with_its_own_error():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(JobEnded(task.name, FAILED, own(task.name, "ValueError")))
    assert (kinds(out), out[0].error.cause_type, task.state) == (["Fail"], "ValueError",
                                                                 FAILED_)


def test_an_omitted_dependant_fails_naming_the_failed_root():
    tracker = Tracker(PYTHON)
    a = leaf.bind(1)
    b = leaf.bind(a)
    tasks, _ = add(tracker, b)
    tracker.handle(JobEnded(tasks[a.node].name, FAILED, own(tasks[a.node].name)))
    out = tracker.handle(JobEnded(tasks[b.node].name, OMITTED))
    assert isinstance(out[0].error, DependencyFailed)
    assert out[0].error.root == tasks[a.node].name


def test_a_held_dependant_fails_with_its_failed_predecessor():
    tracker = Tracker(PYTHON)
    a = flaky.bind(1)
    b = leaf.bind(a)
    c = leaf.bind(b)
    tasks, _ = add(tracker, c)
    task = tasks[a.node]
    for attempt in range(3):  # the first try and two retries
        job = task.name if attempt == 0 else "%s-retry%d" % (task.name, attempt)
        out = tracker.handle(JobEnded(job, FAILED, own(task.name)))
    assert [type(i.error) for i in out] == [TaskFailed, DependencyFailed, DependencyFailed]
    assert out[2].error.root == task.name


def test_an_any_outcome_dependant_runs_when_its_predecessor_failed():
    tracker = Tracker(PYTHON)
    a = flaky.bind(1)
    b = join.bind(qcgflow.any_outcome(a))
    tasks, _ = add(tracker, b)
    task = tasks[a.node]
    tracker.handle(JobEnded(task.name, FAILED, own(task.name)))
    tracker.handle(JobEnded(task.name + "-retry1", FAILED, own(task.name)))
    out = tracker.handle(JobEnded(task.name + "-retry2", FAILED, own(task.name)))
    assert kinds(out) == ["Fail", "Submit"]


# --------------------------------------------------------------------------- retries
def test_a_failure_with_retries_left_is_retried_without_dependencies():
    tracker = Tracker(PYTHON)
    a = leaf.bind(1)
    b = flaky.bind(a)
    tasks, _ = add(tracker, b)
    tracker.handle(JobEnded(tasks[a.node].name, SUCCEED, loaded(1)))
    task = tasks[b.node]
    out = tracker.handle(JobEnded(task.name, FAILED, own(task.name)))
    assert (kinds(out), out[0].job["name"], out[0].attempt) == \
        (["Retry"], task.name + "-retry1", 1)
    assert "dependencies" not in out[0].job


def test_the_last_retry_failing_fails_the_task():
    tracker = Tracker(PYTHON)
    ref = flaky.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    tracker.handle(JobEnded(task.name, FAILED, own(task.name)))
    tracker.handle(JobEnded(task.name + "-retry1", FAILED, own(task.name)))
    out = tracker.handle(JobEnded(task.name + "-retry2", FAILED, own(task.name)))
    assert (kinds(out), task.state) == (["Fail"], FAILED_)


def test_a_retry_that_succeeds_resolves_the_future():
    tracker = Tracker(PYTHON)
    ref = flaky.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    tracker.handle(JobEnded(task.name, FAILED, own(task.name)))
    out = tracker.handle(JobEnded(task.name + "-retry1", SUCCEED, loaded(7)))
    assert (out[-1], task.state) == (Resolve(task.future, 7), DONE)


def test_exit_zero_without_a_result_is_retried_as_a_lost_process():
    tracker = Tracker(PYTHON)
    ref = flaky.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(JobEnded(task.name, SUCCEED,
                                  Facts(loaded=Loaded(error=FileNotFoundError("result")))))
    assert kinds(out) == ["Retry"]


def test_only_the_failed_iterations_of_a_mapped_task_are_retried():
    tracker = Tracker(PYTHON)
    ref = flaky.map([10, 20, 30])
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(JobEnded(task.name, FAILED, Facts(
        own=TaskFailed(task.name, messages="x"), states={0: SUCCEED, 1: FAILED, 2: SUCCEED})))
    assert [(i.it, i.job["name"]) for i in out] == [(1, task.name + "-1-retry1")]
    assert "iteration" not in out[0].job


def test_a_mapped_task_succeeds_when_its_retried_iterations_did():
    tracker = Tracker(PYTHON)
    ref = flaky.map([10, 20, 30])
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    tracker.handle(JobEnded(task.name, FAILED, Facts(states={0: FAILED, 1: FAILED,
                                                            2: SUCCEED})))
    assert tracker.inquiry(task.name + "-0-retry1", SUCCEED).load is False  # 1 still runs
    assert tracker.handle(JobEnded(task.name + "-0-retry1", SUCCEED)) == []
    assert tracker.inquiry(task.name + "-1-retry1", SUCCEED).load is True
    out = tracker.handle(JobEnded(task.name + "-1-retry1", SUCCEED, loaded([1, 2, 3])))
    assert out[-1] == Resolve(task.future, [1, 2, 3])


def test_a_failure_the_filter_does_not_name_is_not_retried():
    tracker = Tracker(PYTHON)
    ref = picky.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(JobEnded(task.name, FAILED, own(task.name, "ValueError")))
    assert kinds(out) == ["Fail"]


def test_a_failure_the_filter_names_is_retried():
    tracker = Tracker(PYTHON)
    ref = picky.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(JobEnded(task.name, FAILED, own(task.name, "KeyError")))
    assert kinds(out) == ["Retry"]


# --------------------------------------------------------------------------- inquiries
def test_a_success_asks_for_the_result():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    assert tracker.inquiry(tasks[ref.node].name, SUCCEED).load is True


def test_a_sure_retry_asks_for_nothing_about_the_failure():
    tracker = Tracker(PYTHON)
    ref = flaky.bind(1)
    tasks, _ = add(tracker, ref)
    ask = tracker.inquiry(tasks[ref.node].name, FAILED)
    assert (ask.own, ask.messages, ask.states) == (False, False, False)


def test_a_filtered_retry_asks_for_the_own_failure():
    tracker = Tracker(PYTHON)
    ref = picky.bind(1)
    tasks, _ = add(tracker, ref)
    assert tracker.inquiry(tasks[ref.node].name, FAILED).own is True


def test_an_omission_asks_to_recheck_a_predecessor_whose_end_was_lost():
    tracker = Tracker(PYTHON)
    a = leaf.bind(1)
    b = leaf.bind(a)
    tasks, _ = add(tracker, b)
    assert tracker.inquiry(tasks[b.node].name, OMITTED).recheck == (tasks[a.node].name,)


def test_an_omission_after_a_known_failure_asks_for_no_messages():
    tracker = Tracker(PYTHON)
    a = leaf.bind(1)
    b = leaf.bind(a)
    tasks, _ = add(tracker, b)
    tracker.handle(JobEnded(tasks[a.node].name, FAILED, own(tasks[a.node].name)))
    assert tracker.inquiry(tasks[b.node].name, OMITTED).messages is False


def test_a_job_not_awaited_needs_no_inquiry():
    assert Tracker(PYTHON).inquiry("nobody", FAILED) is None


# --------------------------------------------------------------------------- cancel
def test_cancel_of_a_held_task_fails_it_and_its_dependants_at_once():
    tracker = Tracker(PYTHON)
    a = flaky.bind(1)
    b = leaf.bind(a)
    c = leaf.bind(b)
    tasks, _ = add(tracker, c)
    out = tracker.handle(Cancel(b.node))
    assert [type(i.error) for i in out] == [TaskCancelled, DependencyFailed]
    assert tasks[b.node].state == CANCELLED


def test_cancel_of_a_job_not_sent_takes_it_out_of_the_outbox():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(Cancel(ref.node, only_queued=True, unsent=frozenset({task.name})))
    assert out[0] == Unqueue((task.name,))
    assert (out[1].mark_cancelled, task.name in tracker.jobs) == (True, False)


def test_cancel_of_a_sent_job_asks_the_service():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    assert tracker.handle(Cancel(ref.node)) == [CancelJobs(task, (task.name,), False)]


def test_cancel_of_some_iterations_names_them():
    tracker = Tracker(PYTHON)
    ref = leaf.map([1, 2, 3])
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    out = tracker.handle(Cancel(ref.node, iterations=(0, 2, 7)))
    assert out == [CancelJobs(task, ("%s:0" % task.name, "%s:2" % task.name), False)]


def test_a_sent_cancel_makes_the_end_a_task_cancelled():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    tracker.handle(CancelSent(task, only_queued=True))
    out = tracker.handle(JobEnded(task.name, CANCELED))
    assert (type(out[0].error), out[0].mark_cancelled, task.state) == \
        (TaskCancelled, True, CANCELLED)


def test_a_canceled_mapped_task_names_its_first_canceled_iteration():
    tracker = Tracker(PYTHON)
    ref = leaf.map([1, 2, 3])
    tasks, _ = add(tracker, ref)
    task = tasks[ref.node]
    tracker.handle(CancelSent(task))
    out = tracker.handle(JobEnded(task.name, CANCELED, Facts(
        states={0: SUCCEED, 1: CANCELED, 2: CANCELED})))
    assert out[0].error.task == task.name + ":1"


def test_cancel_of_a_finished_task_does_nothing():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    tracker.handle(JobEnded(tasks[ref.node].name, SUCCEED, loaded(1)))
    assert tracker.handle(Cancel(ref.node)) == []


# --------------------------------------------------------------------------- the rest
def test_num_returns_parts_are_written_from_the_result():
    tracker = Tracker(PYTHON)
    first, second = pair.bind()
    tasks, _ = add(tracker, first, second)
    source = tasks[first.node.args[0].node]
    out = tracker.handle(JobEnded(source.name, SUCCEED, loaded((1, 2))))
    assert out[2:] == [WritePart(tasks[first.node], 1), WritePart(tasks[second.node], 2)]


def test_a_written_part_resolves_its_future():
    tracker = Tracker(PYTHON)
    first, second = pair.bind()
    tasks, _ = add(tracker, first, second)
    tracker.handle(JobEnded(tasks[first.node.args[0].node].name, SUCCEED, loaded((1, 2))))
    part = tasks[second.node]
    assert tracker.handle(PartWritten(part)) == [Resolve(part.future, 2)]


def test_a_result_of_the_wrong_length_fails_the_parts():
    tracker = Tracker(PYTHON)
    first, second = pair.bind()
    tasks, _ = add(tracker, first, second)
    out = tracker.handle(JobEnded(tasks[first.node.args[0].node].name, SUCCEED,
                                  loaded((1, 2, 3))))
    assert [type(i.error.cause) for i in out[2:]] == [ValueError, ValueError]


def test_refused_jobs_fail_with_the_service_reason():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    out = tracker.handle(Refused((tasks[ref.node].name,), "bad resources"))
    assert "refused by the service: bad resources" in str(out[0].error)


def test_jobs_without_an_answer_fail_with_run_error():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    out = tracker.handle(Refused((tasks[ref.node].name,), "timed out", answered=False))
    assert isinstance(out[0].error, RunError)


def test_a_job_after_a_refused_one_is_withdrawn_as_a_dependency_failure():
    tracker = Tracker(PYTHON)
    a = leaf.bind(1)
    b = leaf.bind(a)
    tasks, out = add(tracker, b)
    tracker.handle(Refused((tasks[a.node].name,), "bad"))
    assert tracker.after_refused(out[1].job)
    assert isinstance(tracker.handle(Withdrawn(tasks[b.node].name))[0].error,
                      DependencyFailed)


def test_a_dead_service_fails_what_runs_with_run_error():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    add(tracker, ref)
    out = tracker.handle(ServiceDied("the service exited (code -9)"))
    assert (kinds(out), str(out[0].error)) == (["Fail"], "the service exited (code -9)")


def test_shutdown_fails_every_unfinished_task_with_run_error():
    tracker = Tracker(PYTHON)
    a = flaky.bind(1)
    b = leaf.bind(a)
    add(tracker, b)
    out = tracker.handle(Shutdown())
    assert [type(i.error) for i in out] == [RunError, RunError]


def test_an_error_while_handling_an_end_fails_the_task():
    tracker = Tracker(PYTHON)
    ref = leaf.bind(1)
    tasks, _ = add(tracker, ref)
    out = tracker.handle(HandlingFailed(tasks[ref.node].name, OSError("disk")))
    assert "qcgflow: disk" in str(out[0].error)


def test_an_adopted_job_is_awaited():
    tracker = Tracker(PYTHON)
    node = leaf.bind(1).node
    task = Task(node, "travelled-0", [], Future("travelled"))
    assert (tracker.handle(Adopted(task)), tracker.open_jobs()) == ([], ["travelled-0"])


def test_a_put_value_is_done_at_once():
    tracker = Tracker(PYTHON)
    task = Task(leaf.bind(1).node, "put-0", [], Future("put"))
    assert tracker.handle(Put(task, [1, 2])) == [Resolve(task.future, [1, 2])]


def test_an_unknown_event_is_refused():
    with pytest.raises(TypeError, match="not a session event"):
        Tracker(PYTHON).handle("SUCCEED")


# --------------------------------------------------------------------------- the table
def scenario_edges():
    """Every move of a set of scenarios that walk each kind of life."""
    tracker = Recording()
    a, b = flaky.bind(1), leaf.bind(2)
    held = leaf.bind(a)
    tasks, _ = add(tracker, held, b)
    tracker.handle(Cancel(held.node))                                     # HELD -> CANCELLED
    tracker.handle(JobEnded(tasks[b.node].name, SUCCEED, loaded(2)))      # SUBMITTED -> DONE
    task = tasks[a.node]
    tracker.handle(JobEnded(task.name, FAILED, own(task.name)))           # -> RETRYING
    tracker.handle(JobEnded(task.name + "-retry1", SUCCEED, loaded(1)))   # RETRYING -> DONE
    c, d = flaky.bind(3), leaf.bind(4)
    after_c = leaf.bind(c)
    tasks, _ = add(tracker, after_c, d)
    tracker.handle(JobEnded(tasks[d.node].name, FAILED, own("d")))        # SUBMITTED -> FAILED
    task = tasks[c.node]
    tracker.handle(JobEnded(task.name, FAILED, own(task.name)))
    tracker.handle(JobEnded(task.name + "-retry1", FAILED, own(task.name)))
    tracker.handle(JobEnded(task.name + "-retry2", FAILED, own(task.name)))  # RETRYING ->
    # FAILED, and its held dependant HELD -> FAILED
    e, f = flaky.bind(5), leaf.bind(6)
    tasks, _ = add(tracker, e, f)
    tracker.handle(CancelSent(tasks[f.node]))
    tracker.handle(JobEnded(tasks[f.node].name, CANCELED))               # SUBMITTED -> CANCELLED
    task = tasks[e.node]
    tracker.handle(JobEnded(task.name, FAILED, own(task.name)))
    tracker.handle(CancelSent(task))
    tracker.handle(JobEnded(task.name + "-retry1", CANCELED))            # RETRYING -> CANCELLED
    tracker.handle(Put(Task(leaf.bind(7).node, "put-0", [], Future("p")), 7))  # HELD -> DONE
    return set(tracker.moves)


LEGAL = [(start, finish) for start, finishes in TRANSITIONS.items() for finish in finishes]
ILLEGAL = [(start, finish) for start, finish in itertools.product(TaskState, TaskState)
           if (start, finish) not in LEGAL]


@pytest.mark.parametrize("start,finish", LEGAL, ids=lambda s: s.value)
def test_every_legal_edge_is_walked_by_a_scenario(start, finish):
    assert (start, finish) in scenario_edges()


def test_scenarios_walk_only_legal_edges():
    assert scenario_edges() <= set(LEGAL)


@pytest.mark.parametrize("start,finish", ILLEGAL, ids=lambda s: s.value)
def test_an_illegal_edge_raises_with_its_fields(start, finish):
    task = Task(leaf.bind(1).node, "t-0", [], Future("t"))
    task.state = start
    with pytest.raises(InvalidTransition) as caught:
        Tracker(PYTHON)._move(task, finish)
    assert (caught.value.task, caught.value.start, caught.value.finish) == \
        ("t-0", start, finish)


def test_an_illegal_edge_leaves_the_state_alone():
    task = Task(leaf.bind(1).node, "t-0", [], Future("t"))
    task.state = DONE
    with pytest.raises(InvalidTransition):
        Tracker(PYTHON)._move(task, SUBMITTED)
    assert task.state is DONE


def test_a_second_put_of_a_done_task_is_an_illegal_move():
    tracker = Tracker(PYTHON)
    task = Task(leaf.bind(1).node, "put-0", [], Future("p"))
    tracker.handle(Put(task, 1))
    with pytest.raises(InvalidTransition, match="done -> done"):
        tracker.handle(Put(task, 1))


def test_states_are_final_only_without_moves_out():
    assert {s for s, moves in TRANSITIONS.items() if not moves} == {DONE, FAILED_, CANCELLED}


def test_retrying_is_entered_only_from_submitted():
    assert [s for s, moves in TRANSITIONS.items() if RETRYING in moves] == [SUBMITTED]
