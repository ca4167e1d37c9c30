"""``--resume PATH``: find the journal, end what a dead service left running, replay it.

::

    PATH (aux dir, or a working dir holding .qcgpjm-service-*; the last modified one)
      -> locate_aux_dir -> journal.read_journal (whole records) -> journal.plan_resume (pure)
      -> kill_leftovers(plan.tokens): processes whose environment carries the token of an
         earlier run of this journal (tasks run in their own sessions and outlive a
         SIGKILLed service; so do their children and the warm-worker zygote)
      -> apply_plan(plan, manager): re-submit as accepted, restore finished units without
         running them (dependants see them done), so only unfinished units run.

Leftovers are found through ``/proc/<pid>/environ`` on this host: every process a task
starts inherits ``QCGFLOW_SERVICE_RUN`` unless it clears its environment on purpose.
Processes on other hosts are out of reach (local mode runs everything on this host).
"""

import glob
import logging
import os
import signal
import time
from typing import Iterable, List, Optional, Set

from .errors import RuntimeLayerError
from .journal import (JOURNAL_FILE, RUN_ENV, EndRecord, JournalError, RemoveRecord,
                      ResumePlan, SubmitRecord)

_log = logging.getLogger(__name__)

AUX_PREFIX = ".qcgpjm-service-"
LEFTOVER_DEADLINE = 5.0  # seconds to wait for killed leftovers to disappear
LEFTOVER_QUIET = 0.05  # s between the two empty scans that end the search
LEFTOVER_ROUNDS = 10  # scans of /proc: each kills what the one before missed (new forks)


def locate_aux_dir(path: str) -> str:
    """The aux dir to resume: ``path`` itself, or the last modified aux dir inside it.

    Raises:
        JournalError: nothing resumable at ``path`` (the message says what is missing).
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise JournalError("--resume %s: no such directory" % path)
    if os.path.exists(os.path.join(path, JOURNAL_FILE)):
        return path
    candidates = [d for d in glob.glob(os.path.join(glob.escape(path), AUX_PREFIX + "*"))
                  if os.path.exists(os.path.join(d, JOURNAL_FILE))]
    if not candidates:
        raise JournalError("--resume %s: neither a service directory with %s nor a working "
                           "directory holding one (%s*)" % (path, JOURNAL_FILE, AUX_PREFIX))
    return max(candidates, key=lambda d: os.stat(os.path.join(d, JOURNAL_FILE)).st_mtime)


def service_id_of(aux_dir: str) -> Optional[str]:
    name = os.path.basename(aux_dir.rstrip(os.sep))
    return name[len(AUX_PREFIX):] if name.startswith(AUX_PREFIX) else None


# ============================================================================ leftovers

def find_leftovers(tokens: Iterable[str], proc: str = "/proc") -> List[int]:
    """Pids of this host's processes whose environment holds one of the run ``tokens``."""
    wanted: Set[bytes] = {("%s=%s" % (RUN_ENV, token)).encode() for token in tokens}
    if not wanted:
        return []
    spared = _ancestors()
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) in spared:
            continue
        try:
            with open(os.path.join(proc, entry, "environ"), "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if wanted.intersection(variables):
            found.append(int(entry))
    return found


def kill_leftovers(tokens: Iterable[str], deadline: float = LEFTOVER_DEADLINE,
                   why: str = "resume: killed %d processes left running by the interrupted "
                              "service") -> int:
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
    quiet = False
    for _ in range(LEFTOVER_ROUNDS):
        found = [pid for pid in find_leftovers(tokens) if _alive(pid)]
        if not found:
            if quiet:
                break
            # A process forked a moment ago can be missing from /proc for some ms (seen:
            # up to 11 ms after its parent was reaped): an empty scan counts once confirmed.
            quiet = True
            time.sleep(LEFTOVER_QUIET)
            continue
        quiet = False
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
        if left:
            break
    if killed:
        _log.warning(why + " (pids %s)", len(killed), ", ".join(map(str, killed[:20])))
    if left:
        _log.warning("%d leftover processes did not exit within %.0fs: %s", len(left),
                     deadline, left)
    return len(killed)


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


# ============================================================================ replay

class ResumeError(RuntimeLayerError):
    """The journal cannot be replayed with this configuration (e.g. fewer resources)."""


def apply_plan(plan: ResumePlan, manager, journal_path: str) -> int:
    """Replay ``plan`` into a fresh ``manager`` (before its event loop runs).

    Returns:
        The number of units restored as finished.

    Raises:
        ResumeError: a recorded submission is not accepted any more (say, the job no longer
            fits the resources given to this run); nothing runs then.
    """
    request = 0
    restored = 0
    for step in plan.steps:
        if isinstance(step, SubmitRecord):
            request += 1
            try:
                manager.submit(list(step.jobs))
            except RuntimeLayerError as exc:
                raise ResumeError("resume: submit request %d of %s is not accepted by this "
                                  "service: %s" % (request, journal_path, exc)) from exc
        elif isinstance(step, RemoveRecord):
            try:
                manager.remove(list(step.names))
            except RuntimeLayerError as exc:
                _log.warning("resume: cannot replay the removal of %s: %s",
                             ", ".join(step.names), exc)
        elif isinstance(step, EndRecord):
            restored += manager.restore_final(step.job, step.index, step.state, step.message)
    return restored


__all__ = ["JournalError", "ResumeError", "apply_plan", "find_leftovers", "kill_leftovers",
           "locate_aux_dir", "service_id_of"]
