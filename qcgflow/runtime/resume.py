"""``--resume PATH``: find the journal, end what a dead service left running, replay it.

::

    PATH (aux dir, or a working dir holding .qcgpjm-service-*; the last modified one)
      -> locate_aux_dir -> journal.read_journal (whole records) -> journal.plan_resume (pure)
      -> kill_leftovers(plan.tokens): processes whose environment carries the token of an
         earlier run of this journal (tasks run in their own sessions and outlive a
         SIGKILLed service; so do their children and the warm-worker zygote)
      -> apply_plan(plan, manager): re-submit as accepted, restore finished units without
         running them (dependants see them done), so only unfinished units run.

``complete_report(aux dir)``: a SIGKILLed service's jobs.report completed from its journal
without resuming it, for readers of the report (``qcgflow run``'s records of what
succeeded), as a resume of it would complete it.

Leftovers are found through ``/proc/<pid>/environ`` on this host: every process a task
starts inherits ``QCGFLOW_SERVICE_RUN`` unless it clears its environment on purpose.
Processes on other hosts are out of reach (local mode runs everything on this host).
"""

import fcntl
import logging
import os
from typing import Optional

from .client.workdir import AUX_PREFIX, REPORT_FILE, service_dirs
from .errors import RuntimeLayerError
from .journal import (JOURNAL_FILE, EndRecord, JournalError, RemoveRecord, ResumePlan,
                      SubmitRecord, tail_report_gap)
from .leftovers import find_leftovers, kill_leftovers  # noqa: F401 (re-exported)
from .tracker import REQS_FILE, has_track_files

_log = logging.getLogger(__name__)


def locate_aux_dir(path: str) -> str:
    """The aux dir to resume: ``path`` itself, or the last modified aux dir inside it.

    Raises:
        JournalError: nothing resumable at ``path`` (the message says what is missing).
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise JournalError("%s: no such directory" % _not_valid(path))
    if _resumable(path):
        return path
    candidates = [d for d in service_dirs(path) if _resumable(d)]
    if not candidates:
        raise JournalError("%s: neither a service directory with %s (or QCG-PilotJob's %s) "
                           "nor a working directory holding one (%s*)" % (
                               _not_valid(path), JOURNAL_FILE, REQS_FILE, AUX_PREFIX))
    return max(candidates, key=os.path.getmtime)


def _resumable(path: str) -> bool:
    """qcgflow's journal, or (an upstream run) upstream's track.reqs."""
    return os.path.exists(os.path.join(path, JOURNAL_FILE)) or has_track_files(path)


def _not_valid(path: str) -> str:
    # upstream's wording first: scripts and upstream's tests match it
    return ("--resume: Resume directory %s not exists or is not valid QCG-PilotJob auxiliary "
            "directory" % path)


def service_id_of(aux_dir: str) -> Optional[str]:
    name = os.path.basename(aux_dir.rstrip(os.sep))
    return name[len(AUX_PREFIX):] if name.startswith(AUX_PREFIX) else None


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
    settled = _parent_ends(plan.steps)
    for number, step in enumerate(plan.steps):
        if isinstance(step, SubmitRecord):
            request += 1
            try:
                manager.submit(list(step.jobs), substituted=True)
            except RuntimeLayerError as exc:
                raise ResumeError("resume: submit request %d of %s is not accepted by this "
                                  "service: %s" % (request, journal_path, exc)) from exc
            for end in settled.get(number, ()):
                # a whole cancel (omission) is journaled after the iterations it ended:
                # decide the parent's state before they are restored, or it would be
                # derived from them (FAILED)
                manager.settle_parent(end.job, end.state, end.message)
        elif isinstance(step, RemoveRecord):
            try:
                manager.remove(list(step.names))
            except RuntimeLayerError as exc:
                _log.warning("resume: cannot replay the removal of %s: %s",
                             ", ".join(step.names), exc)
        elif isinstance(step, EndRecord):
            restored += manager.restore_final(step.job, step.index, step.state, step.message)
    return restored


def _parent_ends(steps) -> dict:
    """Submit step number -> the whole-job EndRecords of the jobs it registered."""
    submitted_by, found = {}, {}
    for number, step in enumerate(steps):
        if isinstance(step, SubmitRecord):
            for job in step.jobs:
                submitted_by[job.get("name")] = number
        elif isinstance(step, EndRecord) and step.index is None and step.job in submitted_by:
            found.setdefault(submitted_by[step.job], []).append(step)
    return found


def complete_report(aux_dir: str) -> int:
    """Add to the jobs.report of the service that worked in ``aux_dir`` a line for each
    unit its journal ended after the report's last batch (a SIGKILL lost that batch), as
    a resume of it would (``JobsReport.add_missing``). Returns how many lines were added:
    0 also when there is no journal, one older than its ``rep`` records, or a live service
    holding it (the journal's lock is held here meanwhile, so no service starts on it)."""
    try:
        fd = os.open(os.path.join(aux_dir, JOURNAL_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # a live service works there: its own report is being written
        try:  # the journal's tail only: this runs at the end of every `qcgflow run`
            gap = tail_report_gap(os.path.join(aux_dir, JOURNAL_FILE))
        except JournalError:
            return 0
        if gap is None or not gap[1]:
            return 0
        from .reports import JobsReport  # noqa: PLC0415 - only when lines are missing
        path = os.path.join(aux_dir, REPORT_FILE)
        report = JobsReport(path, _report_format(path))
        try:
            return report.add_missing(*gap)
        finally:
            report.close()
    finally:
        os.close(fd)  # (drops the lock)


def _report_format(path: str) -> str:
    """``json`` or ``text``, by the report's first character (empty: the default, json)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return "json"
    return "json" if not head or head.startswith(b"{") else "text"


__all__ = ["JournalError", "ResumeError", "apply_plan", "complete_report", "find_leftovers",
           "kill_leftovers", "locate_aux_dir", "service_id_of"]
