"""The Ray habits (issue 22): patterns a Ray user brings, on a real 2-core service.

Every test has a deadline: a pattern that deadlocks fails at it instead of hanging.
"""

import concurrent.futures
import os
import time

import pytest

import qcgflow

from graph_harness import run_wd, wait_for
from support.eventually import eventually

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


# ---------------------------------------------------------------- cancel

@qcgflow.task
def started_then_wait(mark, path):
    open(mark, "w").close()
    return wait_for(path, "finished")


def test_cancel_a_queued_task_and_its_dependant(session, tmp_path):
    gate = str(tmp_path / "gate")
    busy = [wait_for.remote(gate, i) for i in range(2)]  # both cores
    queued = leaf.remote(1)
    after = leaf.remote(queued)
    assert qcgflow.cancel(queued)
    with pytest.raises(qcgflow.TaskCancelledError) as caught:
        qcgflow.get(queued, timeout=DEADLINE)
    assert isinstance(caught.value, concurrent.futures.CancelledError)
    with pytest.raises(qcgflow.DependencyFailed) as dependant:
        qcgflow.get(after, timeout=DEADLINE)
    assert isinstance(dependant.value.root_error, qcgflow.TaskCancelled)
    open(gate, "w").close()
    assert qcgflow.get(busy, timeout=DEADLINE) == [0, 1]
    name = queued.future.session.tasks[queued.node].name
    states = session.session.client.request({"request": "listJobs"})["jobs"]
    # canceled in the service, or before the batch holding it was sent: never run
    assert states.get(name, {}).get("status") in (None, "CANCELED"), states
    assert not os.path.exists(os.path.join(session.wd, ".qcgflow", name, "result.pkl"))


def test_cancel_a_task_queued_in_the_service(session, tmp_path):
    gate = str(tmp_path / "gate")
    busy = [wait_for.remote(gate, i) for i in range(2)]
    queued = leaf.remote(1)
    name = queued.future.session.tasks[queued.node].name
    eventually(lambda: session.session.client.request({"request": "listJobs"})["jobs"]
               .get(name, {}).get("status") == "QUEUED", DEADLINE, message="%s QUEUED" % name)
    assert qcgflow.cancel(queued)
    with pytest.raises(qcgflow.TaskCancelled):
        qcgflow.get(queued, timeout=DEADLINE)
    assert session.session.client.request({"request": "listJobs"})["jobs"][name]["status"] \
        == "CANCELED"
    open(gate, "w").close()
    assert qcgflow.get(busy, timeout=DEADLINE) == [0, 1]


@pytest.mark.parametrize("force", [False, True])
def test_cancel_a_running_task(session, tmp_path, force):
    mark, never = str(tmp_path / "mark"), str(tmp_path / "never")
    running = started_then_wait.remote(mark, never)
    eventually(lambda: os.path.exists(mark), DEADLINE, message="the task's mark file")
    started = time.monotonic()
    assert qcgflow.cancel(running, force=force)
    with pytest.raises(qcgflow.TaskCancelled):
        qcgflow.get(running, timeout=DEADLINE)
    assert time.monotonic() - started < 15  # SIGTERM ends a Python task, no 60 s wait
    assert not running.future.cancel()  # finished: nothing to cancel
    assert qcgflow.get(leaf.remote(2), timeout=DEADLINE) == 20  # the cores came back


def test_future_cancel_is_true_for_a_task_not_started(session, tmp_path):
    gate, mark = str(tmp_path / "gate"), str(tmp_path / "mark")
    busy = [started_then_wait.remote(mark, gate), wait_for.remote(gate, 1)]
    queued = leaf.remote(3)
    eventually(lambda: os.path.exists(mark), DEADLINE, message="the task's mark file")
    assert queued.future.cancel()
    assert queued.future.cancelled()
    assert not busy[0].future.cancel()  # running: future.cancel() leaves it alone
    open(gate, "w").close()
    assert qcgflow.get(busy, timeout=DEADLINE) == ["finished", 1]
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(DEADLINE)


def test_cancel_one_element_of_a_mapped_task(session, tmp_path):
    gate = str(tmp_path / "gate")
    busy = [wait_for.remote(gate, i) for i in range(2)]
    mapped = qcgflow.session.dynamic.submit(leaf.map(range(4)))
    follow = qcgflow.session.dynamic.submit(leaf.map(mapped))  # element-wise
    assert qcgflow.cancel(mapped, iterations=[2])
    open(gate, "w").close()
    qcgflow.get(busy, timeout=DEADLINE)
    with pytest.raises(qcgflow.TaskCancelled) as caught:
        qcgflow.get(mapped, timeout=DEADLINE)
    assert caught.value.task.endswith(":2")
    with pytest.raises(qcgflow.TaskError):
        qcgflow.get(follow, timeout=DEADLINE)
    name = mapped.future.session.tasks[follow.node].name
    states = session.session.client.request(
        {"request": "jobStatus", "jobNames": ["%s:%d" % (name, i) for i in range(4)]})["jobs"]
    assert [states["%s:%d" % (name, i)]["data"]["status"] for i in range(4)] == \
        ["SUCCEED", "SUCCEED", "OMITTED", "SUCCEED"]


# ---------------------------------------------------------------- put

@qcgflow.task
def checksum(array, k):
    return int(array[k * 1000]) + int(array.sum() % 7) * 0 + array.nbytes


def _stored_bytes(wd):
    total = 0
    for folder, _, files in os.walk(os.path.join(wd, ".qcgflow")):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


def test_put_stores_one_copy_for_fifty_tasks(session):
    numpy = pytest.importorskip("numpy", reason="pip install numpy")
    array = numpy.arange(100 * 1024 * 1024 // 8, dtype=numpy.int64)  # 100 MB
    before = _stored_bytes(session.wd)
    shared = qcgflow.put(array)
    results = qcgflow.get([checksum.remote(shared, k) for k in range(50)], timeout=300)
    assert results == [k * 1000 + array.nbytes for k in range(50)]
    written = _stored_bytes(session.wd) - before
    # one stored copy (100 MB) and 50 small call and result files, never 50 copies
    assert array.nbytes < written < array.nbytes + 50 * 64 * 1024, written
    assert qcgflow.get(shared) is array


def test_a_put_ref_nested_in_a_list_is_resolved(session):
    shared = qcgflow.put({"mesh": [1, 2, 3]})
    assert qcgflow.get(leaf.remote([shared, shared]), timeout=DEADLINE) == [
        {"mesh": [1, 2, 3]}, {"mesh": [1, 2, 3]}] * 10


# ---------------------------------------------------------------- retry_exceptions

def _attempt(directory):
    os.makedirs(directory, exist_ok=True)
    number = len(os.listdir(directory))
    open(os.path.join(directory, str(number)), "w").close()
    return number


@qcgflow.task(retries=3, retry_exceptions=[KeyError])
def fails_with(directory, kind, until):
    number = _attempt(directory)
    if number < until:
        if kind == "exit":
            os._exit(3)  # a lost process: Ray's system failure
        raise {"key": KeyError, "value": ValueError}[kind]("attempt %d" % number)
    return number


def test_a_listed_exception_is_retried(session, tmp_path):
    assert qcgflow.get(fails_with.remote(str(tmp_path / "k"), "key", 2), timeout=DEADLINE) == 2


def test_an_exception_not_listed_is_not_retried(session, tmp_path):
    with pytest.raises(ValueError):
        qcgflow.get(fails_with.remote(str(tmp_path / "v"), "value", 2), timeout=DEADLINE)
    assert len(os.listdir(tmp_path / "v")) == 1  # one attempt: a deterministic failure


def test_a_lost_process_is_retried_whatever_the_filter(session, tmp_path):
    assert qcgflow.get(fails_with.remote(str(tmp_path / "x"), "exit", 1), timeout=DEADLINE) == 1


def test_retry_exceptions_false_retries_only_lost_processes(session, tmp_path):
    never = fails_with.options(retry_exceptions=False)
    with pytest.raises(KeyError):
        qcgflow.get(never.remote(str(tmp_path / "f"), "key", 1), timeout=DEADLINE)
    assert len(os.listdir(tmp_path / "f")) == 1
    assert qcgflow.get(never.remote(str(tmp_path / "g"), "exit", 2), timeout=DEADLINE) == 2


def test_a_mapped_task_retries_only_listed_exceptions(session, tmp_path):
    mapped = qcgflow.session.dynamic.submit(fails_with.map(
        [str(tmp_path / "m0"), str(tmp_path / "m1")], "value", 1))
    with pytest.raises(ValueError):
        qcgflow.get(mapped, timeout=DEADLINE)
    assert [len(os.listdir(tmp_path / d)) for d in ("m0", "m1")] == [1, 1]


def test_a_bad_filter_is_refused_at_once():
    with pytest.raises(qcgflow.TaskOptionError, match="retry_exceptions=\\[KeyError\\]"):
        leaf.options(retry_exceptions=["KeyError"])


# ---------------------------------------------------------------- refs in results

@qcgflow.task
def launch_samples(n):
    """A dynamic sub-ensemble: decides how many samples and returns their refs."""
    return [leaf.remote(i) for i in range(n)]


@qcgflow.task
def total(values):
    return sum(values)


@qcgflow.task
def get_inside(refs_holder):
    return qcgflow.get(refs_holder["refs"], timeout=DEADLINE)


def test_a_task_returns_refs_it_created(session):
    refs = qcgflow.get(launch_samples.remote(4), timeout=DEADLINE)
    assert all(type(ref) is qcgflow.TaskRef for ref in refs)
    assert qcgflow.get(refs, timeout=DEADLINE) == [0, 10, 20, 30]
    # they are dependencies of later tasks, as our own refs are
    assert qcgflow.get(total.remote(refs), timeout=DEADLINE) == 60


def test_a_ref_inside_a_stored_value_travels_to_a_task(session):
    shared = qcgflow.put({"refs": [leaf.remote(1), qcgflow.put(7)]})
    assert qcgflow.get(get_inside.remote(shared), timeout=DEADLINE) == [10, 7]


def test_a_lazy_ref_still_cannot_travel(session):
    import pickle
    with pytest.raises(TypeError, match="only the ref of a submitted Python task"):
        pickle.dumps(leaf.bind(1))


# ---------------------------------------------------------------- num_returns, env, errors

@qcgflow.task(num_returns=2)
def divmod_task(a, b):
    return divmod(a, b)


@qcgflow.task(num_returns=3)
def wrong_count():
    return (1, 2)


@qcgflow.task
def read_env(name):
    return os.environ.get(name)


@qcgflow.task
def read_env_nested(name):
    return qcgflow.get(read_env.remote(name), timeout=DEADLINE)


@qcgflow.task
def raises_key():
    raise KeyError("missing")


def test_num_returns_gives_separate_refs(session):
    quotient, remainder = divmod_task.remote(17, 5)
    assert qcgflow.get(remainder, timeout=DEADLINE) == 2
    assert qcgflow.get(leaf.remote(quotient), timeout=DEADLINE) == 30  # a dependency alone


def test_num_returns_with_a_wrong_count_fails_each_ref(session):
    refs = wrong_count.remote()
    assert len(refs) == 3
    for ref in refs:
        with pytest.raises(ValueError, match="num_returns=3 but returned 2 values"):
            qcgflow.get(ref, timeout=DEADLINE)


def test_num_returns_in_run_is_the_same():
    assert qcgflow.run(list(divmod_task.bind(17, 5)), nodes=2) == [3, 2]


def test_init_env_reaches_every_task_and_nested_ones(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path), env={"QCGFLOW_RAY_TEST": "yes"}):
        assert qcgflow.get([read_env.remote("QCGFLOW_RAY_TEST"),
                            read_env_nested.remote("QCGFLOW_RAY_TEST"),
                            read_env.options(env={"QCGFLOW_RAY_TEST": "own"})
                            .remote("QCGFLOW_RAY_TEST")], timeout=DEADLINE) == \
            ["yes", "yes", "own"]


def test_init_env_must_be_strings():
    with pytest.raises(TypeError, match="dict of variable names to strings"):
        qcgflow.init(env={"A": 1})
    assert not qcgflow.session.dynamic.is_initialized()


def test_get_timeout_is_a_get_timeout_error(session, tmp_path):
    ref = wait_for.remote(str(tmp_path / "never"), 1)
    with pytest.raises(qcgflow.GetTimeoutError):
        qcgflow.get(ref, timeout=0.2)
    with pytest.raises(TimeoutError):
        ref.result(0.2)
    qcgflow.cancel(ref, force=True)


def test_a_failed_dependency_is_caught_as_the_users_exception(session):
    dependant = leaf.remote(raises_key.remote())
    with pytest.raises(KeyError) as caught:
        qcgflow.get(dependant, timeout=DEADLINE)
    assert isinstance(caught.value, qcgflow.DependencyFailed)
    assert "it depends on failed" in str(caught.value)


def test_a_ref_returned_to_qcgflow_run_fails_the_task_clearly(tmp_path):
    with pytest.raises(qcgflow.TaskFailed, match="outside a qcgflow.init"):
        qcgflow.run(launch_samples.bind(1), nodes=2, wd=run_wd(tmp_path))


def test_cancel_a_whole_mapped_task(session, tmp_path):
    gate = str(tmp_path / "gate")
    busy = [wait_for.remote(gate, i) for i in range(2)]
    mapped = qcgflow.session.dynamic.submit(leaf.map(range(3)))
    after = leaf.remote(mapped)
    assert qcgflow.cancel(mapped)
    with pytest.raises(qcgflow.TaskCancelled):
        qcgflow.get(mapped, timeout=DEADLINE)
    with pytest.raises(qcgflow.DependencyFailed):
        qcgflow.get(after, timeout=DEADLINE)
    open(gate, "w").close()
    assert qcgflow.get(busy, timeout=DEADLINE) == [0, 1]
