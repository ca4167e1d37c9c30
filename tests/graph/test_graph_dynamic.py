"""The dynamic API end to end: init / shutdown, f.remote, get, wait, tasks submitting tasks.

Real service, real task processes. Tasks that must stay unfinished wait for a file the test
creates (with their own deadline), never for a fixed time.
"""

import concurrent.futures
import os
import subprocess
import sys
import textwrap

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, RunError, TaskFailed

from graph_harness import Custom, add, fails, inc, run_wd, wait_for

DEADLINE = 60


@qcgflow.task
def fan_out(n):
    """Submits n tasks from inside a task and gathers them."""
    return sum(qcgflow.get([inc.remote(i) for i in range(n)]))


@pytest.fixture
def session(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)) as context:
        yield context
    assert not qcgflow.session.dynamic.is_initialized()


def test_remote_returns_a_ref_with_its_result(session):
    assert inc.remote(1).result(DEADLINE) == 2


def test_the_ref_holds_a_real_future(session):
    assert isinstance(inc.remote(1).future, concurrent.futures.Future)


def test_refs_of_remote_results_are_dependencies(session):
    a = inc.remote(1)
    assert qcgflow.get(add.remote(a, inc.remote(a)), timeout=DEADLINE) == 5


def test_a_chain(session):
    ref = inc.remote(0)
    for _ in range(9):
        ref = inc.remote(ref)
    assert qcgflow.get(ref, timeout=DEADLINE) == 10


def test_remote_calls_made_while_a_batch_is_in_flight_keep_their_order(session):
    """Batches are sent without the session's lock: calls that depend on jobs of a batch
    in flight go in a later batch, never before it (the service would refuse them)."""
    chain = inc.remote(0)
    fan = []
    for i in range(300):
        chain = inc.remote(chain)
        fan.append(add.remote(chain, i))
    assert qcgflow.get(chain, timeout=DEADLINE) == 301
    assert qcgflow.get(fan, timeout=DEADLINE) == [(i + 2) + i for i in range(300)]


def test_get_keeps_the_shape(session):
    refs = {"a": inc.remote(1), "b": [inc.remote(2), inc.remote(3)]}
    assert qcgflow.get(refs, timeout=DEADLINE) == {"a": 2, "b": [3, 4]}


def test_a_task_exception_is_raised_as_its_own_type(session):
    with pytest.raises(Custom, match="bad input 7"):
        qcgflow.get(fails.remote(7), timeout=DEADLINE)


def test_the_remote_traceback_comes_back(session):
    with pytest.raises(TaskFailed) as caught:
        fails.remote(1).result(DEADLINE)
    assert 'raise Custom("bad input' in caught.value.remote_traceback


def test_a_dependant_names_the_failed_root(session):
    with pytest.raises(DependencyFailed) as caught:
        qcgflow.get(inc.remote(inc.remote(fails.options(name="root").remote(1))),
                    timeout=DEADLINE)
    assert caught.value.root == "root"


def test_wait_returns_the_finished_refs(session, tmp_path):
    gate = str(tmp_path / "gate")
    slow, fast = wait_for.remote(gate, 1), inc.remote(1)
    ready, not_ready = qcgflow.wait([slow, fast], num_returns=1, timeout=DEADLINE)
    open(gate, "w").close()
    assert (ready, not_ready) == ([fast], [slow])


def test_wait_ends_at_its_timeout(session, tmp_path):
    gate = str(tmp_path / "gate")
    slow = wait_for.remote(gate, 1)
    ready, not_ready = qcgflow.wait([slow], num_returns=1, timeout=0.2)
    open(gate, "w").close()
    assert (ready, not_ready) == ([], [slow])


def test_get_times_out(session, tmp_path):
    gate = str(tmp_path / "gate")
    slow = wait_for.remote(gate, 1)
    try:
        with pytest.raises(TimeoutError):
            qcgflow.get(slow, timeout=0.2)
    finally:
        open(gate, "w").close()


def test_tasks_may_submit_tasks(session):
    assert fan_out.remote(3).result(DEADLINE) == 6


def test_shutdown_fails_unfinished_futures(tmp_path):
    gate = str(tmp_path / "gate")
    qcgflow.init(nodes=1, wd=run_wd(tmp_path))
    slow = wait_for.remote(gate, 1)
    qcgflow.shutdown()
    with pytest.raises(RunError, match="shut down"):
        slow.result(DEADLINE)


def test_init_twice_is_refused(session):
    with pytest.raises(RuntimeError, match="shutdown"):
        qcgflow.init(nodes=1)


def test_a_lazy_ref_has_no_future():
    with pytest.raises(RuntimeError, match="remote"):
        inc.bind(1).future


IMPLICIT = """
import qcgflow

@qcgflow.task
def double(x):
    return 2 * x

print(double.remote(21).result(60))
"""


def test_remote_without_init_starts_and_stops_an_implicit_session(tmp_path):
    script = tmp_path / "implicit.py"
    script.write_text(textwrap.dedent(IMPLICIT))
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("QCGFLOW_RUN_DIR", None)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=DEADLINE, env=env, cwd=str(tmp_path))
    assert done.stdout.strip() == "42", done.stderr


def test_a_lazy_ref_in_the_arguments_is_submitted_with_it(session):
    assert inc.remote(inc.bind(1)).result(DEADLINE) == 3


def test_wait_counts_a_failed_task_as_ready(session):
    failed = fails.remote(1)
    ready, _ = qcgflow.wait([failed], num_returns=1, timeout=DEADLINE)
    assert ready == [failed]


def test_a_mapped_ref_can_be_submitted(session):
    mapped = qcgflow.session.dynamic.submit(inc.map([1, 2, 3]))
    assert qcgflow.get(mapped, timeout=DEADLINE) == [2, 3, 4]


def test_a_command_template_can_be_submitted(session):
    ref = qcgflow.session.dynamic.submit(qcgflow.shell("echo hi").bind())
    assert ref.result(DEADLINE).read_stdout() == "hi\n"
