"""``qcgflow.any_outcome(ref)`` end to end (issue 21, item 4): a fan-in that runs after its
members ended in any state and receives the values AND the failures (``TaskFailed`` in place
of a value), through ``qcgflow.run``, ``.remote`` and ``qcgflow.compile`` with a real service."""

import json

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, GraphError, TaskFailed

from graph_harness import run_wd

DEADLINE = 60


@qcgflow.task
def energy(t):
    if t == 1.3:
        raise ValueError("typo in the input of T=%s" % t)
    return round(t * 2, 3)


@qcgflow.task
def table(outcomes):
    """What a fan-in over any_outcome sees: values and failures, in member order."""
    return [value if not isinstance(value, Exception) else
            (type(value).__name__, value.task, value.cause_type, str(value.cause))
            for value in outcomes]


@qcgflow.task
def describe(outcome):
    return repr(outcome) if not isinstance(outcome, Exception) else \
        (type(outcome).__name__, outcome.cause_type)


@qcgflow.task
def boom():
    raise KeyError("k")


@qcgflow.task
def after_boom(value):
    return ("not run", value)


def test_fan_in_gets_the_values_and_the_failures(tmp_path):
    members = energy.options(name="md").map([1.0, 1.3, 1.6])
    result = qcgflow.run(table.bind(qcgflow.any_outcome(members)), nodes=2,
                         wd=run_wd(tmp_path), timeout=DEADLINE)
    assert result == [2.0, ("TaskFailed", "md:1", "ValueError", "typo in the input of T=1.3"),
                      3.2]


def test_plain_fan_in_still_fails_with_the_member(tmp_path):
    members = energy.options(name="md").map([1.0, 1.3])
    with pytest.raises(DependencyFailed):
        qcgflow.run(table.bind(members), nodes=2, wd=run_wd(tmp_path), timeout=DEADLINE)


def test_a_plain_task_outcome_is_its_failure(tmp_path):
    assert qcgflow.run(describe.bind(qcgflow.any_outcome(boom.bind())), nodes=2,
                       wd=run_wd(tmp_path), timeout=DEADLINE) == ("TaskFailed", "KeyError")


def test_a_member_that_never_ran_is_a_failure_without_cause(tmp_path):
    upstream = boom.bind()
    skipped = after_boom.options(name="skipped").bind(upstream)
    result = qcgflow.run(describe.bind(qcgflow.any_outcome(skipped)), nodes=2,
                         wd=run_wd(tmp_path), timeout=DEADLINE)
    assert result == ("TaskFailed", "")


def test_remote_after_the_member_already_failed(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)):
        failed = boom.remote()
        with pytest.raises(TaskFailed):
            failed.result(DEADLINE)
        late = describe.remote(qcgflow.any_outcome(failed))
        assert late.result(DEADLINE) == ("TaskFailed", "KeyError")


def test_remote_fan_in_over_running_members(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)):
        members = [energy.remote(1.3), energy.remote(1.6)]
        result = table.remote([qcgflow.any_outcome(member) for member in members])
        outcome = result.result(DEADLINE)
    assert outcome[1] == 3.2 and outcome[0][0::2] == ("TaskFailed", "ValueError"), outcome


def test_compile_writes_after_any(tmp_path):
    members = energy.options(name="md").map([1.0, 1.3])
    path = tmp_path / "requests.json"
    with pytest.warns(UserWarning, match="table uses any_outcome .*not on upstream"):
        qcgflow.compile(table.options(name="table").bind(qcgflow.any_outcome(members)),
                        path=str(path))
    jobs = {job["name"]: job for job in json.loads(path.read_text())[0]["jobs"]}
    assert jobs["table"]["dependencies"] == {"afterAny": ["md"]}


def test_a_ref_also_passed_plainly_keeps_the_strict_edge(tmp_path):
    members = energy.options(name="md").map([1.0])
    path = tmp_path / "requests.json"
    qcgflow.compile(table.options(name="t").bind([qcgflow.any_outcome(members), members]),
                    path=str(path))
    jobs = {job["name"]: job for job in json.loads(path.read_text())[0]["jobs"]}
    assert jobs["t"]["dependencies"] == {"after": ["md"]}


def test_any_outcome_of_a_command_is_refused():
    with pytest.raises(GraphError, match="any_outcome takes the ref of a Python task"):
        qcgflow.any_outcome(qcgflow.shell("echo hi").bind())
    with pytest.raises(GraphError, match="any_outcome takes a task ref"):
        qcgflow.any_outcome(3)


def test_member_with_retries_the_fan_in_runs_after_its_last_attempt(tmp_path):
    # a predecessor with retries is held in the session, not in the runtime: the consumer
    # is submitted when the last attempt failed
    members = energy.options(name="md", retries=1).map([1.3, 1.6])
    result = qcgflow.run(table.bind(qcgflow.any_outcome(members)), nodes=2,
                         wd=run_wd(tmp_path), timeout=DEADLINE)
    assert result[1] == 3.2 and result[0][0::2] == ("TaskFailed", "ValueError"), result


def test_any_outcome_as_a_target_is_refused(tmp_path):
    with pytest.raises(GraphError, match="any_outcome.* is for the arguments of a task"):
        qcgflow.run([qcgflow.any_outcome(boom.bind())], wd=run_wd(tmp_path))
