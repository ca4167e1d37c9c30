"""Bad input through the Python API (``qcgflow.task``, ``shell``, ``mpi``, ``compile``,
``run``, ``.remote``) (issue 8, item 5).

``CASES``: each call raises the listed exception at once (when decorating, binding or
compiling; nothing is submitted) with a one-line message naming the task and what is
wrong. ``test_a_live_session_survives_bad_calls``: in a real session, refused and
unpicklable ``.remote`` calls fail alone, and what was submitted before them still runs.

Deliberate choices (docs/graph-api.md): ``.map()`` takes at most ``task.MAX_MAP`` (10
million) elements, consumed lazily up to that bound, so an endless generator ends with an
error instead of eating the memory.
"""

import itertools
import threading
import time

import pytest

import qcgflow
from qcgflow.errors import (CycleError, GraphError, NameClashError, RunError, TaskFailed,
                            TaskOptionError)
from qcgflow.graph.task import MAX_MAP


@qcgflow.task
def inc(x):
    return x + 1


def _cycle():
    a = inc.bind(1)
    b = inc.options(name="b").bind(a)
    a.node.args = (b,)  # refs are made from existing refs: a cycle needs an edited node
    return qcgflow.compile(b)


def _mapped_twice():
    return inc.map(inc.bind(1))


# (id, call, exception class, substring of the one-line message)
CASES = [
    ("unknown_option", lambda: qcgflow.task(core=2)(lambda x: x), TaskOptionError,
     "invalid option core=2: unknown option; did you mean 'cores'?"),
    ("zero_cores", lambda: inc.options(cores=0), TaskOptionError,
     "task inc: invalid option cores=0: use a positive integer or a range"),
    ("cores_min_above_max", lambda: inc.options(cores={"min": 4, "max": 2}), TaskOptionError,
     "'min' (4) is larger than 'max' (2)"),
    ("cores_unknown_key", lambda: inc.options(cores={"exact": 2, "most": 3}), TaskOptionError,
     "unknown key 'most'"),
    ("wall_time_text", lambda: inc.options(wt="soon"), TaskOptionError,
     "task inc: invalid option wt='soon'"),
    ("model", lambda: inc.options(model="mpich"), TaskOptionError,
     "invalid option model='mpich': use one of"),
    ("env_not_a_dict", lambda: inc.options(env=["A=1"]), TaskOptionError,
     "invalid option env=['A=1']"),
    ("retries_negative", lambda: inc.options(retries=-1), TaskOptionError,
     "invalid option retries=-1"),
    ("name_with_colon", lambda: inc.options(name="a:1"), TaskOptionError,
     "invalid option name='a:1'"),
    ("scheduler_unknown", lambda: inc.options(scheduler="bogus"), TaskOptionError,
     "invalid option scheduler='bogus'"),
    ("modules_not_a_list", lambda: inc.options(modules=3), TaskOptionError,
     "invalid option modules=3"),
    ("decorate_a_number", lambda: qcgflow.task(3), TypeError,
     "@qcgflow.task decorates a function, got 3"),
    ("shell_empty", lambda: qcgflow.shell(""), TaskOptionError,
     "shell: invalid option template=''"),
    ("mpi_model", lambda: qcgflow.mpi("prog", model="bogus"), TaskOptionError,
     "mpi prog: invalid option model='bogus'"),
    ("unknown_placeholder", lambda: qcgflow.shell("echo ${foo}").bind(bar=1), GraphError,
     "has no placeholder ${bar}; its placeholders are: foo"),
    ("placeholder_given_a_nested_ref",
     lambda: qcgflow.shell("echo ${x}").bind(x=[inc.bind(1)]),
     GraphError, "${x} holds a ref inside a list"),
    ("command_map_element", lambda: qcgflow.shell("echo ${itval}").map([{"a": 1}]), GraphError,
     ".map() elements of a command must be strings or numbers"),
    ("cycle", _cycle, CycleError, "dependency cycle"),
    ("duplicate_names", lambda: qcgflow.compile([inc.options(name="x").bind(1),
                                                 inc.options(name="x").bind(2)]),
     NameClashError, "two tasks are named 'x'"),
    ("call_with_a_ref", lambda: inc(inc.bind(1)), TypeError,
     "task inc was called with a task ref as an argument: use inc.bind(...)"),
    ("map_a_number", lambda: inc.map(5), GraphError,
     "task inc: .map() needs a list, tuple, range or generator of elements, got int"),
    ("map_a_string", lambda: inc.map("abc"), GraphError, "got str"),
    ("map_empty", lambda: inc.map([]), GraphError, ".map() over an empty iterable"),
    ("map_unmapped_ref", _mapped_twice, GraphError, ".map() over a ref of a task that is not "
                                                    "mapped"),
    ("map_huge_range", lambda: inc.map(range(10 ** 12)), GraphError,
     "task inc: .map() over more than %d elements" % MAX_MAP),
    ("map_endless_generator", lambda: inc.map(itertools.count()), GraphError,
     ".map() over more than %d elements" % MAX_MAP),
    ("target_without_refs", lambda: qcgflow.compile(5), GraphError,
     "nothing to run: the target holds no task ref (got int)"),
]


@pytest.mark.parametrize("call,error,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_call_raises_one_clear_line(call, error, expected):
    started = time.monotonic()
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert expected in message
    assert "Traceback" not in message
    assert time.monotonic() - started < 10, "refusing took too long"


def test_unpicklable_argument_names_the_task(tmp_path):
    with pytest.raises(GraphError, match=r"task inc-0: its function and arguments cannot be "
                                         r"pickled for the call file: cannot pickle "
                                         r"'_thread.lock' object"):
        qcgflow.compile(inc.bind(threading.Lock()), path=str(tmp_path / "requests.json"))


def test_run_on_unusable_resources_says_why(tmp_path):
    with pytest.raises(RunError, match=r"the service did not start \(exit code 2\): qcgflow "
                                       r"service: Invalid --nodes value 'x:y'"):
        qcgflow.run(inc.bind(1), nodes="x:y", wd=str(tmp_path), timeout=60)


def test_run_of_an_impossible_task_is_refused(tmp_path):
    with pytest.raises(RunError, match="the service refused the jobs: Not enough resources "
                                       "for job inc-0"):
        qcgflow.run(inc.options(cores=64).bind(1), nodes=2, wd=str(tmp_path), timeout=60)


def test_a_live_session_survives_bad_calls(tmp_path):
    """Refused and unpicklable ``.remote`` calls fail alone: ``a``, submitted before them
    (possibly in the same batched request), still runs, and later calls work."""
    with qcgflow.init(nodes=2, wd=str(tmp_path / "run")):
        a = inc.remote(1)
        refused = inc.options(cores=64).remote(1)
        after_refused = inc.remote(refused)
        with pytest.raises(GraphError, match="cannot be pickled"):
            inc.remote(threading.Lock())
        with pytest.raises(TaskFailed, match="refused by the service: Not enough resources"):
            refused.result(timeout=30)
        with pytest.raises(qcgflow.DependencyFailed, match="it depends on failed"):
            after_refused.result(timeout=30)
        assert a.result(timeout=30) == 2
        assert inc.remote(a).result(timeout=30) == 3
