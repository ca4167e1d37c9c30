"""Processes a run left behind, found by the run token in their environment.

Every task of a service inherits ``QCGFLOW_SERVICE_RUN=<token>`` (journal.RUN_ENV), and so
does everything it starts unless it clears its environment on purpose. ``kill_leftovers``
ends them: at the end of a run (the service's own token), on ``--resume`` (the tokens of
the interrupted runs), and in a client whose service was killed before it could clean up
(the token comes in the ready line). Only this host's processes whose environment we may
read (our own user's) are found; process groups and sessions do not matter, so daemons
that called ``setsid`` or forked twice are found too.
"""

import logging
import os
import signal
import time
from typing import Iterable, List, Set, Tuple

from .journal import RUN_ENV

_log = logging.getLogger(__name__)

LEFTOVER_DEADLINE = 5.0  # seconds to wait for killed leftovers to disappear
LEFTOVER_QUIET = 0.05  # s before the last scan when no scan was clean (see kill_leftovers)
LEFTOVER_ROUNDS = 10  # scans of /proc: each kills what the one before missed (new forks)


def find_leftovers(tokens: Iterable[str], proc: str = "/proc") -> List[int]:
    """Pids of this host's processes whose environment holds one of the run ``tokens``."""
    return _scan(tokens, proc)[0]


def _scan(tokens: Iterable[str], proc: str) -> Tuple[List[int], bool]:
    """``(pids, vanished)``: the processes carrying a token, and whether a process listed
    by this scan was gone before its environment could be read (it may have been one of
    ours, and may have forked a child after the listing passed that child's pid)."""
    wanted: Set[bytes] = {("%s=%s" % (RUN_ENV, token)).encode() for token in tokens}
    if not wanted:
        return [], False
    spared = _ancestors()
    found = []
    vanished = False
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) in spared:
            continue
        try:
            with open(os.path.join(proc, entry, "environ"), "rb") as handle:
                text = handle.read()
        except FileNotFoundError:
            vanished = True
            continue
        except OSError:
            continue  # not ours to read, or a kernel thread
        if not text:  # a zombie, or it ended between the open and the read
            vanished = vanished or not os.path.exists(os.path.join(proc, entry))
        elif wanted.intersection(text.split(b"\0")):
            found.append(int(entry))
    return found, vanished


def kill_leftovers(tokens: Iterable[str], deadline: float = LEFTOVER_DEADLINE,
                   why: str = "resume: killed %d processes left running by the interrupted "
                              "service", log=None, proc: str = "/proc") -> int:
    """SIGKILL every process of this host that carries one of the run ``tokens`` and wait
    until they are gone (``why``: the log line, with %d for the count).

    Used on ``--resume`` (the tokens of earlier runs) and when a service ends (its own
    token: daemons its tasks left behind, also ones that called ``setsid`` or forked twice,
    which no process group reaches). A process that removed ``QCGFLOW_SERVICE_RUN`` from
    its environment on purpose is not found.

    Returns:
        How many processes were killed.
    """
    tokens = tuple(tokens)
    end = time.monotonic() + deadline
    killed: List[int] = []
    left: List[int] = []
    # Scan, kill, wait until the killed are dead, scan again: a process keeps running for a
    # moment after kill() returns and may fork meanwhile; the next scan finds that child.
    #
    # When is an empty scan enough? A process of ours alive when a scan starts is either
    # read (found) or gone before it is read (``vanished``); a child it forked meanwhile
    # may have been missed by the listing, so a scan that saw anything vanish is repeated
    # at once. Two clean scans in a row end the search (the second covers pid
    # wrap-around). Where processes keep vanishing (a busy host), the search ends as it
    # did before this rule: a last scan LEFTOVER_QUIET after the last one.
    clean = 0
    for _ in range(LEFTOVER_ROUNDS):
        found, vanished = _scan(tokens, proc)
        found = [pid for pid in found if _alive(pid)]
        if not found:
            clean = 0 if vanished else clean + 1
            if clean == 2:
                break
            continue
        clean = 0
        left = _kill(found, killed, end)
        if left:
            break
    else:
        if not left:
            time.sleep(LEFTOVER_QUIET)
            found = [pid for pid in _scan(tokens, proc)[0] if _alive(pid)]
            left = _kill(found, killed, end) if found else []
    if killed:
        (log or _log).warning(why + " (pids %s)", len(killed),
                              ", ".join(map(str, killed[:20])))
    if left:
        (log or _log).warning("%d leftover processes did not exit within %.0fs: %s", len(left),
                     deadline, left)
    return len(killed)


def _kill(found: List[int], killed: List[int], end: float) -> List[int]:
    """SIGKILL ``found`` (added to ``killed``); the ones still alive at ``end``."""
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed += [pid for pid in found if pid not in killed]
    left = found
    while left and time.monotonic() < end:
        time.sleep(0.005)  # polled: processes we do not own cannot be waited for
        left = [pid for pid in left if _alive(pid)]
    return left


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _ancestors() -> Set[int]:
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        try:
            with open("/proc/%d/stat" % pid, "rb") as handle:
                pid = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        pids.add(pid)
    return pids
