"""Bundles (qcgflow/session/bundles.py): short ``.remote`` calls of a session go several to
a job; each call keeps its own result, error, cancel and dependants' semantics. Real
service, real warm workers. The calls of one test are held in one send by holding the
session's lock while they are made (the consumer thread cannot send meanwhile)."""

import os
import time

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, TaskCancelled, TaskFailed
from qcgflow.session import bundles, dynamic

from graph_harness import run_wd
from support.eventually import eventually

DEADLINE = 60


class Custom(Exception):
    pass


@qcgflow.task
def ident(x, *rest):
    return x


@qcgflow.task
def maybe(x):
    if x == 3:
        raise Custom("three is bad")
    return x


@qcgflow.task
def plus_one(x):
    return x + 1


@qcgflow.task
def logged(path, x, *rest):
    """Appends x to path (O_APPEND: one line per run), returns x; 3 ends its process."""
    with open(path, "a") as handle:
        handle.write("%d\n" % x)
    if x == 3 and rest == ("exit",):
        os._exit(0)
    if x == 3 and rest == ("kill",):
        os.kill(os.getpid(), 9)
    return x


@qcgflow.task
def nap(seconds):
    time.sleep(seconds)
    return seconds


@qcgflow.task
def gated(x, gate):
    """Waits for the file ``gate``; 3 raises."""
    while not os.path.exists(gate):
        time.sleep(0.005)
    if x == 3:
        raise Custom("three is bad")
    return x


@qcgflow.task
def loud(x):
    print("call %d speaks" % x)
    return x


@qcgflow.task
def outcome_of(value):
    return "failed" if isinstance(value, TaskFailed) else value


@qcgflow.task
def unbox(box):
    return qcgflow.get(box[0], timeout=DEADLINE)


@pytest.fixture(autouse=True)
def short_enough(monkeypatch):
    """What counts as short, for these tests: 100 ms. A call that appends to a file takes
    ~0.1 ms, but one descheduled on a loaded machine can take 10 ms, and a running mean
    under 2 ms would then say "not short" and send the calls alone: these tests are about
    what happens inside bundles (the threshold itself: test_bundler.py and the test of
    long functions below)."""
    monkeypatch.setattr(bundles, "SHORT", 0.1)


@pytest.fixture
def session(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)):
        yield dynamic._session()


@pytest.fixture
def wide(tmp_path):
    """Six cores: eight gated calls take four (bundles of two), two stay free for the
    jobs that must wait for those calls (they would run at once if sent)."""
    with qcgflow.init(nodes=6, wd=run_wd(tmp_path)):
        yield dynamic._session()


def warm(session, task, *args, count=4):
    """Run ``task`` until the session knows its calls are short."""
    for _ in range(count):
        refs = [task.remote(*args) for _ in range(2)]
        qcgflow.get(refs, timeout=DEADLINE)
    assert session.bundler.short(refs[0].node.fn) is not None, session.bundler.durations


def sent_in_bundles(session, refs):
    """Wait until every call of ``refs`` is in a bundle the service runs."""
    eventually(lambda: all(session.tasks[r.node].name in session.bundler.home for r in refs),
               timeout=DEADLINE, message="the calls to be sent in bundles")


def bundled(session, refs):
    """The bundle names the calls of ``refs`` went in (None: alone), once sent."""
    session._flush()  # what the consumer thread does once the batching window is over
    return [session.bundler.sent_in.get(session.tasks[ref.node].name) for ref in refs]


def test_short_calls_share_jobs_and_keep_their_own_results(session):
    warm(session, ident, 0)
    with session.lock:
        refs = [ident.remote(i) for i in range(60)]
    assert qcgflow.get(refs, timeout=DEADLINE) == list(range(60))
    homes = bundled(session, refs)
    assert None not in homes
    assert len(set(homes)) >= 2  # two cores: at least two bundles of one send
    base = os.path.join(session.root, ".qcgflow")
    assert not any(os.path.exists(os.path.join(base, "%s.stdout" % session.tasks[r.node].name))
                   for r in refs)  # no job of their own


def test_unknown_and_long_functions_are_never_bundled(session):
    with session.lock:
        first = [ident.remote(i) for i in range(20)]  # run time not known yet
    assert qcgflow.get(first, timeout=DEADLINE) == list(range(20))
    assert set(bundled(session, first)) == {None}
    for _ in range(3):
        qcgflow.get([nap.remote(0.15) for _ in range(2)], timeout=DEADLINE)
    with session.lock:
        slow = [nap.remote(0.15) for _ in range(8)]
    qcgflow.get(slow, timeout=DEADLINE)
    assert set(bundled(session, slow)) == {None}


def test_a_call_that_raises_fails_alone_and_its_dependants_fail_as_dependants(session):
    warm(session, maybe, 1)
    warm(session, plus_one, 1)
    with session.lock:
        refs = [maybe.remote(i) for i in range(4)]
        after_bad = plus_one.remote(refs[3])   # in the bundle of refs[3]: skipped there
        refs += [maybe.remote(i) for i in range(4, 8)]
        after_good = plus_one.remote(refs[5])
    homes = bundled(session, refs + [after_bad])
    assert None not in homes and homes[3] == homes[-1]
    for i, ref in enumerate(refs):
        if i == 3:
            with pytest.raises(Custom, match="three is bad") as caught:
                qcgflow.get(ref, timeout=DEADLINE)
            assert "maybe" in str(caught.value) or caught.value.remote_traceback
        else:
            assert qcgflow.get(ref, timeout=DEADLINE) == i
    with pytest.raises(DependencyFailed):
        qcgflow.get(after_bad, timeout=DEADLINE)
    assert qcgflow.get(after_good, timeout=DEADLINE) == 6
    # a later call that needs the failed one: the service never hears of either
    with pytest.raises(DependencyFailed):
        qcgflow.get(plus_one.remote(refs[3]), timeout=DEADLINE)


@pytest.mark.parametrize("how, says", [("exit", "os._exit"), ("kill", "signal|killed|SIGKILL")])
def test_a_call_that_ends_the_process_fails_alone_and_the_others_run_once(session, tmp_path,
                                                                          how, says):
    log = str(tmp_path / "runs.log")
    warm(session, logged, str(tmp_path / "warm.log"), 0)
    with session.lock:
        refs = [logged.remote(log, i, how) for i in range(8)]
    homes = bundled(session, refs)
    assert homes[3] is not None
    for i, ref in enumerate(refs):
        if i == 3:
            with pytest.raises(TaskFailed, match=says):
                qcgflow.get(ref, timeout=DEADLINE)
        else:
            assert qcgflow.get(ref, timeout=DEADLINE) == i
    with open(log) as handle:
        runs = [int(line) for line in handle]
    for i in range(8):
        # the one that ends its process ran in its bundle and once more alone, as a lost
        # worker's task is retried; every other call ran exactly once
        assert runs.count(i) == (2 if i == 3 else 1), runs


def test_cancel_of_a_bundled_call(session):
    warm(session, nap, 0)
    with session.lock:
        refs = [nap.remote(0.3) for _ in range(6)]
    sent_in_bundles(session, refs)
    assert refs[4].future.cancel() is False  # its bundle was sent: it counts as started
    assert qcgflow.cancel(refs[1]) is True
    with pytest.raises(TaskCancelled):
        qcgflow.get(refs[1], timeout=DEADLINE)
    for i in (0, 2, 3, 4, 5):
        assert qcgflow.get(refs[i], timeout=DEADLINE) == 0.3


def test_canceling_every_call_of_a_bundle_stops_it(session):
    warm(session, nap, 0)
    with session.lock:
        refs = [nap.remote(5) for _ in range(4)]
    sent_in_bundles(session, refs)
    started = time.monotonic()
    for ref in refs:
        qcgflow.cancel(ref)
    for ref in refs:
        with pytest.raises(TaskCancelled):
            qcgflow.get(ref, timeout=DEADLINE)
    assert time.monotonic() - started < 5  # not after the naps


def test_refs_of_bundled_calls_travel_in_flight_and_after(wide, tmp_path):
    session = wide
    gate = str(tmp_path / "gate")
    warm(session, gated, 0, str(tmp_path))
    with session.lock:
        refs = [gated.remote(i, gate) for i in (0, 1, 2, 4, 5, 6, 7, 8)]
    assert len(set(bundled(session, refs)) - {None}) == 4
    in_flight = unbox.remote(qcgflow.put([refs[2]]))  # pickled while its bundle runs
    time.sleep(1.0)
    assert not in_flight.future.done()  # the task waits for the call, in its bundle
    open(gate, "w").close()
    assert qcgflow.get(in_flight, timeout=DEADLINE) == 2
    assert qcgflow.get(refs, timeout=DEADLINE) == [0, 1, 2, 4, 5, 6, 7, 8]
    ended = unbox.remote(qcgflow.put([refs[3]]))  # pickled after its bundle ended
    assert qcgflow.get(ended, timeout=DEADLINE) == 4


def test_dependants_that_cannot_join_wait_for_the_bundle(wide, tmp_path):
    session = wide
    gate = str(tmp_path / "gate")
    warm(session, gated, 0, str(tmp_path))
    with session.lock:
        refs = [gated.remote(i, gate) for i in range(8)]
        seen_good = outcome_of.remote(qcgflow.any_outcome(refs[1]))
        seen_bad = outcome_of.remote(qcgflow.any_outcome(refs[3]))
        command = dynamic.submit(qcgflow.shell("echo ${x}").bind(x=refs[2]))
    assert len(set(bundled(session, refs)) - {None}) == 4
    time.sleep(0.5)
    assert not any(ref.future.done() for ref in (seen_good, seen_bad, command))
    open(gate, "w").close()
    assert qcgflow.get(seen_good, timeout=DEADLINE) == 1
    assert qcgflow.get(seen_bad, timeout=DEADLINE) == "failed"
    assert qcgflow.get(command, timeout=DEADLINE).read_stdout().strip() == "2"


def test_bundled_calls_print_to_their_bundles_stdout(session):
    warm(session, loud, 0)
    with session.lock:
        refs = [loud.remote(i) for i in range(10, 20)]
    assert qcgflow.get(refs, timeout=DEADLINE) == list(range(10, 20))
    text = ""
    for name in set(bundled(session, refs)):
        path = os.path.join(session.root, ".qcgflow", "%s.stdout" % name)
        with open(path) as handle:
            text += handle.read()
    for i in range(10, 20):
        assert "call %d speaks" % i in text


def test_a_chain_runs_in_few_jobs(session):
    warm(session, ident, 0)
    with session.lock:
        ref = ident.remote(7)
        chain = [ref]
        for _ in range(40):
            ref = ident.remote(ref)
            chain.append(ref)
    assert qcgflow.get(ref, timeout=DEADLINE) == 7
    homes = bundled(session, chain)
    assert None not in homes and len(set(homes)) == 1  # one after the other: one job
