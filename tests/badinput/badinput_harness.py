"""Helpers of the bad-input catalogue (tests/badinput).

Everything is real: ``python -m qcgflow.cli service`` processes, ZeroMQ REQ sockets on
loopback, the ``qcgflow`` command line (support.services: ``NetService``, ``run_service``,
``cli``). Waiting uses deadlines, never fixed sleeps.

* ``one_line(text)``: the single non-empty line of ``text`` (fails when there are more):
  a bad input earns one line saying what is wrong and where, never a traceback.
"""


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one line, got %d:\n%s" % (len(lines), text[-3000:])
    return lines[0]
