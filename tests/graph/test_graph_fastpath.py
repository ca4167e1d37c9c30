"""The session's fast path (issue 19): small calls inline in their jobs, small results in
per-worker stores, ``.remote`` calls batched into one submit request; files stay the path
for big payloads and errors. Real service, real workers."""

import os
import time

import pytest

import qcgflow
from qcgflow.build import payload, store
from qcgflow.errors import TaskCancelled
from qcgflow.session import fastpath

from graph_harness import run_wd

DEADLINE = 60
STREAMS = (".stdout", ".stderr")  # the tasks' own output files: another issue's files


class Custom(Exception):
    pass


@qcgflow.task
def inc(x):
    return x + 1


@qcgflow.task
def size(data):
    return len(data)


@qcgflow.task
def blob(n):
    return b"r" * n


@qcgflow.task
def fails(x):
    raise Custom("bad input %r" % (x,))


@qcgflow.task
def total(values):
    return sum(values)


@pytest.fixture
def session(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)) as context:
        yield context


def _files(base):
    """Every file and directory under ``base`` but the tasks' stdout / stderr files."""
    found = []
    for where, dirs, names in os.walk(base):
        found += [os.path.relpath(os.path.join(where, d), base) for d in dirs]
        found += [os.path.relpath(os.path.join(where, n), base) for n in names
                  if not any(s in "." + n for s in STREAMS)]
    return sorted(found)


def _store_files(found):
    return [f for f in found if f.startswith(store.DIR + "/") and f.count("/") == 2]


def test_small_remote_calls_leave_no_file_per_task(session):
    refs = [inc.remote(i) for i in range(60)]
    assert qcgflow.get(inc.remote(refs[-1])) == 61
    assert qcgflow.get(refs) == list(range(1, 61))
    found = _files(os.path.join(session.wd, payload.RUN_DIR))
    # no call file, no result file, no directory per task: the stores directory, this
    # session's store, and one store per worker process (2 cores: 2 workers; a worker
    # replaced meanwhile would start its own, hence the margin)
    assert not [f for f in found if "call" in f or "result" in f], found
    stores = _store_files(found)
    assert 1 <= len(stores) <= 4, found
    assert len(found) == len(stores) + 2, found


def test_a_map_through_run_keeps_results_in_a_few_stores(tmp_path):
    wd = run_wd(tmp_path)
    assert qcgflow.run(total.bind(inc.map(range(400))), nodes=2, wd=wd) == \
        sum(range(1, 401))
    found = _files(os.path.join(wd, payload.RUN_DIR))
    # 400 elements were 400 result files: now the map's call file and directory, the
    # resume records, the stores directory, the session's store and one per worker
    assert not [f for f in found if "result" in f], found
    assert len(_store_files(found)) <= 4 and len(found) <= 10, found


def test_big_arguments_and_results_go_through_files(session):
    big = b"a" * (payload.INLINE_LIMIT * 4)
    assert qcgflow.get(size.remote(big)) == len(big)
    ref = blob.remote(store.LIMIT * 2)
    assert qcgflow.get(ref) == b"r" * (store.LIMIT * 2)
    base = os.path.join(session.wd, payload.RUN_DIR)
    assert os.path.exists(os.path.join(base, "size-0", payload.CALL_FILE))
    assert os.path.exists(os.path.join(base, payload.result_file("blob-0")))
    # and a big result is an input like any other
    assert qcgflow.get(size.remote(ref)) == store.LIMIT * 2


def test_small_results_are_inputs_of_dependants_and_of_commands(session):
    chain = inc.remote(0)
    for _ in range(5):
        chain = inc.remote(chain)
    assert qcgflow.get(total.remote([chain, inc.remote(chain)])) == 6 + 7
    echoed = qcgflow.shell("echo ${n}").bind(n=chain)
    assert qcgflow.get(qcgflow.session.dynamic.submit(echoed)).read_stdout() == "6\n"


def test_an_error_and_its_traceback_come_back_from_an_inline_call(session):
    ref = fails.remote(7)
    with pytest.raises(Custom) as caught:
        qcgflow.get(ref, timeout=DEADLINE)
    text = str(caught.value)
    assert "bad input 7" in text and "Traceback" in text and "raise Custom" in text
    # the error is a result file (its directory made when it was written)
    path = os.path.join(session.wd, payload.RUN_DIR, payload.result_file("fails-0"))
    assert payload.read_result(path)[0] == "error"


def test_get_wait_and_cancel_of_refs_not_sent_yet(session, monkeypatch):
    monkeypatch.setattr(fastpath, "WINDOW", 3600.0)  # never sent by the window alone
    monkeypatch.setattr(fastpath, "BATCH", 10 ** 6)
    refs = [inc.remote(i) for i in range(5)]
    doomed = inc.remote(100)
    assert session.session.outbox  # held in the session, not sent
    assert qcgflow.cancel(doomed) is True
    with pytest.raises(TaskCancelled):
        qcgflow.get(doomed, timeout=DEADLINE)
    started = time.monotonic()
    assert qcgflow.get(refs, timeout=DEADLINE) == [1, 2, 3, 4, 5]  # get sends them
    more = inc.remote(10)
    ready, _ = qcgflow.wait([more], num_returns=1, timeout=DEADLINE)  # so does wait
    assert ready == [more] and qcgflow.get(more) == 11
    assert time.monotonic() - started < DEADLINE


def test_remote_calls_of_a_loop_go_out_in_few_requests(session, monkeypatch):
    sent = []
    client = session.session.client
    original = client.request

    def counting(message, *args, **kwargs):
        if message.get("request") == "submit":
            sent.append(len(message["jobs"]))
        return original(message, *args, **kwargs)
    monkeypatch.setattr(client, "request", counting)
    monkeypatch.setattr(fastpath, "WINDOW", 3600.0)  # only BATCH or a get sends them
    monkeypatch.setattr(fastpath, "BATCH", 50)
    refs = [inc.remote(i) for i in range(120)]
    assert qcgflow.get(refs, timeout=DEADLINE) == list(range(1, 121))
    assert sum(sent) == 120 and len(sent) <= 3, sent  # 50, 50 (BATCH), the rest (get)


def test_a_send_leaves_the_calls_made_meanwhile_to_their_own_window(session, monkeypatch):
    """A send used to send again at once whatever a caller's loop had queued meanwhile:
    the consumer thread then handled no event until the loop ended (a loop to a function
    the session had seen return once was never bundled: docs/performance.md, P1C)."""
    sess = session.session
    monkeypatch.setattr(fastpath, "WINDOW", 3600.0)  # the thread sends only when told
    meanwhile = []
    deliver = sess._deliver

    def delivering(items, whole, bundle=False):
        if not meanwhile:  # a call made while the request is out
            meanwhile.append(inc.remote(100))
        return deliver(items, whole, bundle)
    monkeypatch.setattr(sess, "_deliver", delivering)
    first = [inc.remote(i) for i in range(3)]
    sess._flush()
    with sess.lock:
        waiting = [item.job["name"] for item in sess.outbox]
    assert waiting == [sess.tasks[meanwhile[0].node].name]  # not sent by that flush
    assert qcgflow.get(first + meanwhile, timeout=DEADLINE) == [1, 2, 3, 101]  # get sends it


def test_a_loop_past_the_window_wakes_the_consumer_once_per_outbox(session, monkeypatch):
    """Every .remote made after the window closed, before the consumer thread took the
    outbox, used to write a wake-up of its own (a system call and a thread switch each)."""
    wakeups = []
    stream = session.session.stream
    original = stream.wakeup

    def counting():
        wakeups.append(1)
        original()
    monkeypatch.setattr(stream, "wakeup", counting)
    monkeypatch.setattr(fastpath, "WINDOW", 0.0)  # every call after the first finds it due
    with session.session.lock:  # the consumer thread cannot take the outbox meanwhile
        refs = [inc.remote(i) for i in range(200)]
        queued = len(session.session.outbox)
    assert queued == 200
    assert len(wakeups) <= 2, len(wakeups)  # the first job's, and one "due"
    assert qcgflow.get(refs, timeout=DEADLINE) == list(range(1, 201))


def test_stores_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv(fastpath.OFF_ENV, "1")
    wd = run_wd(tmp_path)
    assert qcgflow.run(inc.map(range(3)), nodes=2, wd=wd) == [1, 2, 3]
    base = os.path.join(wd, payload.RUN_DIR)
    assert not os.path.exists(os.path.join(base, store.DIR))
    results = [f for f in _files(base) if f.startswith("inc-") and "/result." in f]
    assert len(results) == 3, _files(base)


def test_a_store_reader_skips_a_torn_record(tmp_path, monkeypatch):
    directory = str(tmp_path / "stores" / "s")
    monkeypatch.setenv(store.ENV, store.env_value(directory))
    assert store.put(str(tmp_path / "job" / "result.pkl"), b"one")
    assert store.put(str(tmp_path / "job" / "result.1.pkl"), b"two")
    (name,) = os.listdir(directory)
    with open(os.path.join(directory, name), "ab") as handle:
        handle.write((5).to_bytes(4, "little") + (99).to_bytes(4, "little") + b"jo")
    reader = store.Reader(directory)
    assert reader.get("job/result.pkl") == b"one" and reader.get("job/result.1.pkl") == b"two"
    assert reader.get("job/x") is None
    assert not store.put(str(tmp_path / "job" / "big.pkl"), b"x" * (store.LIMIT + 1))


def test_a_write_cut_short_by_a_full_disk_leaves_no_wrong_record(tmp_path, monkeypatch):
    """A record half written (ENOSPC after part of it) is a torn tail: the process's next
    records go to a new file, so none of them is read as the rest of the torn one, and the
    result of the torn one comes from its file (put says False: the caller writes it)."""
    directory = str(tmp_path / "stores" / "s")
    monkeypatch.setenv(store.ENV, store.env_value(directory))
    monkeypatch.setattr(store, "_writer", None)
    monkeypatch.setattr(store, "_torn", 0, raising=False)
    assert store.put(str(tmp_path / "job" / "result.0.pkl"), b"zero")
    real_write, calls = os.write, []

    def full_disk(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))  # part of the record
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "write", full_disk)
    assert not store.put(str(tmp_path / "job" / "result.1.pkl"), b"one" * 20)
    monkeypatch.setattr(store.os, "write", real_write)  # space again
    assert store.put(str(tmp_path / "job" / "result.2.pkl"), b"two" * 20)
    assert len(os.listdir(directory)) == 2  # the torn file takes nothing more
    reader = store.Reader(directory)
    assert (reader.get("job/result.0.pkl"), reader.get("job/result.1.pkl"),
            reader.get("job/result.2.pkl")) == (b"zero", None, b"two" * 20)


@qcgflow.task
def shout(x):
    print("said %s" % x)
    return x


def test_a_second_session_in_the_same_directory_appends_to_no_stream(tmp_path):
    wd = run_wd(tmp_path)
    for _ in range(2):  # a map's streams in its directory, a .remote task's beside its name
        assert qcgflow.run(shout.map(range(3)), nodes=2, wd=wd) == [0, 1, 2]
        with qcgflow.init(nodes=2, wd=wd):
            assert qcgflow.get(shout.remote(7)) == 7
    base = os.path.join(wd, payload.RUN_DIR)
    texts = []
    for where, _, names in os.walk(base):
        for name in names:
            if "stdout" in name:
                with open(os.path.join(where, name), encoding="utf-8") as handle:
                    texts.append(handle.read())
    assert sorted(texts) == ["said 0\n", "said 1\n", "said 2\n", "said 7\n"]
