"""When the search for a run's leftover processes may end (runtime/leftovers.py).

A run's end used to wait 50 ms between two empty scans of /proc in every service run.
The search now ends after two clean scans in a row (nothing found, nothing vanished
between the listing and the read); a scan during which a listed process vanished is
repeated, because that process may have forked a child the listing had already passed.
Real daemons (setsid, double fork, a daemon forking daemons) are in
tests/adversarial/test_adv_processes.py.
"""

import os

import pytest

from qcgflow.runtime import leftovers
from qcgflow.runtime.journal import RUN_ENV


def _fake_proc(root, entries):
    """A /proc look-alike: ``entries`` maps a pid to its environment (None: listed, but
    gone before its environ is read)."""
    for pid, env in entries.items():
        os.makedirs(root / str(pid))
        if env is not None:
            (root / str(pid) / "environ").write_bytes(
                b"\0".join(b"%s=%s" % (k.encode(), v.encode()) for k, v in env.items()))
    (root / "self").mkdir()
    return str(root)


def test_a_scan_reports_what_vanished_between_listing_and_reading(tmp_path):
    proc = _fake_proc(tmp_path, {7001: {RUN_ENV: "tok"}, 7002: None, 7003: {"A": "b"}})
    assert leftovers._scan(("tok",), proc) == ([7001], True)
    proc2 = _fake_proc(tmp_path / "p2", {7003: {"A": "b"}, 7004: {}})  # 7004: a zombie
    assert leftovers._scan(("tok",), proc2) == ([], False)


def test_two_clean_scans_end_the_search_without_the_quiet_wait(tmp_path, monkeypatch):
    proc = _fake_proc(tmp_path, {7003: {"A": "b"}})
    scans, sleeps = [], []
    real_scan = leftovers._scan
    monkeypatch.setattr(leftovers, "_scan", lambda t, p: scans.append(1) or real_scan(t, p))
    monkeypatch.setattr(leftovers.time, "sleep", sleeps.append)
    assert leftovers.kill_leftovers(("tok",), proc=proc) == 0
    assert len(scans) == 2 and sleeps == []


def test_a_scan_that_saw_a_process_vanish_does_not_count(tmp_path, monkeypatch):
    """Vanishing every time (a busy host): every round rescans, then the old rule ends it:
    one more scan LEFTOVER_QUIET later."""
    proc = _fake_proc(tmp_path, {7002: None})
    scans, sleeps = [], []
    real_scan = leftovers._scan
    monkeypatch.setattr(leftovers, "_scan", lambda t, p: scans.append(1) or real_scan(t, p))
    monkeypatch.setattr(leftovers.time, "sleep", sleeps.append)
    assert leftovers.kill_leftovers(("tok",), proc=proc) == 0
    assert len(scans) == leftovers.LEFTOVER_ROUNDS + 1
    assert sleeps == [leftovers.LEFTOVER_QUIET]


def test_one_vanished_scan_is_followed_by_two_clean_ones(tmp_path, monkeypatch):
    proc = _fake_proc(tmp_path, {7002: None})
    answers = [([], True), ([], False), ([], False)]
    monkeypatch.setattr(leftovers, "_scan", lambda t, p: answers.pop(0))
    monkeypatch.setattr(leftovers.time, "sleep", pytest.fail)
    assert leftovers.kill_leftovers(("tok",), proc=proc) == 0
    assert answers == []
