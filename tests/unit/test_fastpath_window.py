"""FastPath's send window (session/fastpath.py): when an outbox of ``.remote`` calls is due.

``hurry`` (a ``get`` waits on calls still in the outbox) used to set the window's start to
0.0; ``time.monotonic()`` counts from the machine's boot, so on a machine up for less than
the window the outbox was not due and ``get`` waited until its timeout (three tests of
tests/graph/test_graph_fastpath.py, which widen the window to an hour, failed on a VM up
for 23 minutes). A window longer than any uptime shows it on every machine.
"""

import time

from qcgflow.session import fastpath


def _fast(tmp_path):
    return fastpath.FastPath(str(tmp_path / "base"), use_store=False)


def test_a_hurried_outbox_is_due_whatever_the_window(tmp_path, monkeypatch):
    monkeypatch.setattr(fastpath, "WINDOW", 1e12)  # longer than any machine's uptime
    monkeypatch.setattr(fastpath, "BATCH", 10 ** 6)
    fast, woken = _fast(tmp_path), []
    fast.queued(0, 1, lambda: woken.append(1))
    assert woken == [1] and not fast.due(["job"])  # the window is open
    fast.hurry()
    assert fast.due(["job"])
    assert fast.receive(_NoEvents(), ["job"], quiet=5.0) == [None]  # no wait left


def test_an_outbox_is_due_when_its_window_has_passed_or_it_is_full(tmp_path, monkeypatch):
    monkeypatch.setattr(fastpath, "WINDOW", 0.05)
    monkeypatch.setattr(fastpath, "BATCH", 3)
    fast = _fast(tmp_path)
    fast.queued(0, 1, lambda: None)
    assert not fast.due(["a"])
    assert fast.due(["a", "b", "c"])  # BATCH reached
    deadline = time.monotonic() + 5.0
    while not fast.due(["a"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fast.due(["a"])


class _NoEvents:
    """A stream with no event, that checks ``receive`` waits for none."""

    def next(self, wait):
        assert wait == 0.0, wait
        return None

    def drain(self):
        return []
