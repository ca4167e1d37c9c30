"""The resume journal: accepted submissions and final states, appended to ``journal.jsonl``.

::

    Manager.submit --on_submit--> JournalWriter.submitted --.
    Manager.remove --on_remove--> JournalWriter.removed   --+-- write(2) now --> journal.jsonl
    Registry.transition (finals) --listener--> __call__   --'                    (aux dir, O_APPEND)
                  sync thread: fdatasync at most every FSYNC_INTERVAL, and at close

    --resume: read_journal(path) -> records (whole lines only) -> plan_resume(records)
              (pure: which units are finished) -> resume.apply_plan(manager)

One JSON object per line, ``"k"`` says which record it is (format version 1):

* ``{"k":"run","v":1,"run":TOKEN,"pid":N,"host":H,"at":T,"resumed":B}``: a service started
  writing (the first run and every resume). TOKEN is also put into every task's environment
  (``QCGFLOW_SERVICE_RUN``) so that a resume can find processes left by a killed service.
* ``{"k":"submit","jobs":[...]}``: one accepted submit request, each job description as
  accepted (submit-stage variables already substituted), whatever interface it came from.
* ``{"k":"end","job":NAME,"it":INDEX,"state":S,"msg":M,"stop":1}``: a job (no ``it``) or an
  iteration reached a final state. ``stop`` marks CANCELED/OMITTED units (and iterative
  parents) that ended only because the service was stopping (signal or ``finish``): they are
  not finished for a resume.
* ``{"k":"remove","jobs":[...]}``: removed jobs. ``{"k":"stop","why":W}``: a clean stop.

Durability (the sync thread runs ``fdatasync`` so that the event loop never waits for the
disk): every record is written (``write(2)``, so it survives the death of the service
process) in the callback that caused it: a submit before the request is answered, a final
state in the same callback that recorded the process's exit (one small write, a few
microseconds; measured cheaper than batching per loop turn). ``fdatasync`` runs at most
every ``FSYNC_INTERVAL`` seconds while records arrive, and at close, so a machine crash
loses at most that much of the tail (those units run again on resume).
"""

import fcntl
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from .errors import RuntimeLayerError
from .jobs import FINAL_STATES, JobState
from .tokens import uuid4_hex

_log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.jsonl"
FORMAT_VERSION = 2  # 2: "rep" records (jobs.report's progress); 1 is read as well
READABLE_VERSIONS = (1, 2)
FSYNC_INTERVAL = 0.5  # seconds: the most a machine crash can lose of the journal's tail
RUN_ENV = "QCGFLOW_SERVICE_RUN"  # carries the run token into every task's environment

_STOPPABLE = (JobState.CANCELED, JobState.OMITTED)


class JournalError(RuntimeLayerError):
    """The journal cannot be used (missing, locked by a running service, unreadable)."""


# ============================================================================ records

@dataclass(frozen=True)
class RunRecord:
    """A service run began (``resumed``: by ``--resume``)."""

    token: str
    pid: int
    resumed: bool


@dataclass(frozen=True)
class SubmitRecord:
    """Jobs were accepted (their raw descriptions)."""

    jobs: Tuple[dict, ...]


@dataclass(frozen=True)
class EndRecord:
    """A job or one of its iterations reached a final state."""

    job: str
    index: Optional[int]  # the iteration's index (not position); None for the whole job
    state: JobState
    message: Optional[str] = None
    stopped: bool = False  # ended only because the service was stopping


@dataclass(frozen=True)
class RemoveRecord:
    """Jobs were removed (``removeJob``)."""

    names: Tuple[str, ...]


@dataclass(frozen=True)
class StopRecord:
    """The service stopped, and why."""

    why: str


@dataclass(frozen=True)
class ReportedRecord:
    """jobs.report holds a line for each of the journal's first ``ends`` end records (all
    runs counted), and was ``size`` bytes long when that was true."""

    ends: int
    size: int


Record = Union[RunRecord, SubmitRecord, EndRecord, RemoveRecord, StopRecord, ReportedRecord]


def parse_record(obj) -> Record:
    """One decoded journal line -> a typed record.

    Raises:
        ValueError: the object is not a record of this format (the message says why).
    """
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    kind = obj.get("k")
    if kind == "end":
        job, index, state = obj.get("job"), obj.get("it"), obj.get("state")
        if not isinstance(job, str) or not (index is None or isinstance(index, int)):
            raise ValueError("'end' record without a job name or with a bad iteration")
        try:
            final = JobState(state)
        except ValueError:
            raise ValueError("'end' record with unknown state %r" % (state,)) from None
        if final not in FINAL_STATES:
            raise ValueError("'end' record with non-final state %s" % state)
        return EndRecord(job, index, final, obj.get("msg"), bool(obj.get("stop")))
    if kind == "submit":
        jobs = obj.get("jobs")
        if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
            raise ValueError("'submit' record without a list of job descriptions")
        return SubmitRecord(tuple(jobs))
    if kind == "run":
        if obj.get("v") not in READABLE_VERSIONS:
            raise ValueError("journal format version %r (this qcgflow reads %s)"
                             % (obj.get("v"), " and ".join(map(str, READABLE_VERSIONS))))
        return RunRecord(str(obj.get("run")), int(obj.get("pid") or 0), bool(obj.get("resumed")))
    if kind == "remove":
        names = obj.get("jobs")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'remove' record without a list of names")
        return RemoveRecord(tuple(names))
    if kind == "stop":
        return StopRecord(str(obj.get("why")))
    if kind == "rep":
        ends, size = obj.get("ends"), obj.get("size")
        if not (isinstance(ends, int) and isinstance(size, int) and ends >= 0 and size >= 0):
            raise ValueError("'rep' record without counts")
        return ReportedRecord(ends, size)
    raise ValueError("unknown record kind %r" % (kind,))


# ============================================================================ the plan (pure)

@dataclass(frozen=True)
class ResumePlan:
    """What a resume replays, in journal order.

    Attributes:
        steps: ``SubmitRecord`` (re-submit as accepted), ``RemoveRecord`` and ``EndRecord``
            (a unit that is finished: restore its state, never run it again).
        tokens: run tokens of every earlier service that wrote this journal.
        finished: number of ``EndRecord`` steps.
        rerun: units that ended only because the service stopped (they run again).
    """

    steps: Tuple[Union[SubmitRecord, RemoveRecord, EndRecord], ...]
    tokens: Tuple[str, ...]
    finished: int
    rerun: int


def plan_resume(records: Iterable[Record]) -> ResumePlan:
    """Decide what a resumed service re-submits and which units count as finished.

    Rules: a unit (job or iteration) is finished when the journal has its final state,
    whatever that state is (SUCCEED, FAILED, CANCELED, OMITTED stay as they were, as
    upstream re-runs only unfinished iterations), except a CANCELED or OMITTED state (or an
    iterative parent's state) that was caused by the service stopping: that unit is
    unfinished. The first final state of a unit wins. Submissions are replayed in order;
    a name submitted again without a recorded removal implies the removal of the earlier job.
    A final state of a job that no replayed submission registered is dropped.
    """
    steps: List[Union[SubmitRecord, RemoveRecord, EndRecord]] = []
    tokens: List[str] = []
    live: set = set()
    done: set = set()
    finished = rerun = 0
    for record in records:
        if isinstance(record, RunRecord):
            tokens.append(record.token)
        elif isinstance(record, SubmitRecord):
            names = [job.get("name") for job in record.jobs]
            again = tuple(name for name in names if name in live)
            if again:
                steps.append(RemoveRecord(again))
                _forget(again, live, done)
            live.update(names)
            steps.append(record)
        elif isinstance(record, RemoveRecord):
            names = tuple(name for name in record.names if name in live)
            if names:
                steps.append(RemoveRecord(names))
                _forget(names, live, done)
        elif isinstance(record, EndRecord):
            key = (record.job, record.index)
            if record.job not in live or key in done:
                continue
            if record.stopped:
                rerun += 1
                continue
            done.add(key)
            steps.append(record)
            finished += 1
    return ResumePlan(tuple(steps), tuple(tokens), finished, rerun)


def _forget(names, live: set, done: set) -> None:
    gone = set(names)
    live.difference_update(gone)
    for key in [key for key in done if key[0] in gone]:
        done.discard(key)


def report_gap(records: Iterable[Record]) -> Optional[Tuple[int, List[EndRecord]]]:
    """The end records that jobs.report may lack, and where its lines for them would start.

    jobs.report is written in batches (reports.py) and the journal at once, so a service
    killed with SIGKILL leaves the journal ahead of the report by up to one batch. After
    each batch reached the file, a ``rep`` record counts the end records it covers. Returns
    ``(size, ends)``: the report's length at the last ``rep`` record and the end records
    after the ones it counts (all runs counted, in journal order); None when the journal
    has no ``rep`` record (written by a qcgflow before them: nothing can be told).
    """
    ends: List[EndRecord] = []
    last: Optional[ReportedRecord] = None
    for record in records:
        if isinstance(record, EndRecord):
            ends.append(record)
        elif isinstance(record, ReportedRecord):
            last = record
    if last is None:
        return None
    return last.size, ends[last.ends:]


_REP_LINE = b'{"k":"rep",'  # how JournalWriter writes a rep record's line start
_TAIL_LIMIT = 16 << 20  # bytes read back at most for the last rep record


def tail_report_gap(path: str) -> Optional[Tuple[int, List[EndRecord]]]:
    """``report_gap`` of the journal at ``path``, read from its end back to its last
    ``rep`` record only (the service writes one at its start and after every report
    batch: a batch of end records, not the whole journal). None also when no ``rep``
    record is in its last ``_TAIL_LIMIT`` bytes; a torn last line is left out.

    Raises:
        JournalError: the file cannot be read.
    """
    pattern = b"\n" + _REP_LINE
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            start, data, step = end, b"", 0
            while True:
                # only the block read last (and where it meets the rest) is new to search
                found = data.rfind(pattern, 0, step + len(pattern))
                if found >= 0:
                    data = data[found + 1:]
                    break
                if start == 0:
                    if not data.startswith(_REP_LINE):
                        return None
                    break
                if end - start >= _TAIL_LIMIT:
                    return None
                step = min(start, 1 << 16)
                start -= step
                handle.seek(start)
                data = handle.read(step) + data
    except OSError as exc:
        raise JournalError("cannot read the journal %s: %s" % (path, exc)) from exc
    lines = data.split(b"\n")[:-1]  # the last piece: empty, or a torn line
    try:
        records = [parse_record(json.loads(line)) for line in lines]
    except ValueError:
        return None
    # records[0] is the last rep record: the gap is every end record after it
    return records[0].size, [r for r in records[1:] if isinstance(r, EndRecord)]


# ============================================================================ reading

def read_journal(path: str, repair: bool = True) -> List[Record]:
    """The whole records of a journal file, in order.

    A torn or corrupt line ends the usable part: everything before it counts, a one-line
    warning names the file and the line, and (``repair``) the rest is moved to
    ``<path>.corrupt`` and the file is cut after the last whole record, so that new records
    follow whole ones.

    Raises:
        JournalError: the file cannot be read.
    """
    records: List[Record] = []
    good_end = 0
    problem = None
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.endswith(b"\n"):
                    problem = "line %d is truncated (%d bytes without an end of line)" % (
                        number, len(line))
                    break
                try:
                    records.append(parse_record(json.loads(line)))
                except ValueError as exc:
                    problem = "line %d is not a valid record (%s)" % (number, exc)
                    break
                good_end += len(line)
    except OSError as exc:
        raise JournalError("cannot read the journal %s: %s" % (path, exc)) from exc
    if problem is not None:
        _log.warning("journal %s: %s; using the %d whole records before it", path, problem,
                     len(records))
        if repair:
            _cut(path, good_end)
    return records


def _cut(path: str, size: int) -> None:
    with open(path, "rb") as handle:
        handle.seek(size)
        rest = handle.read()
    with open(path + ".corrupt", "wb") as handle:
        handle.write(rest)
    os.truncate(path, size)
    _log.warning("journal %s: the unusable tail (%d bytes) was moved to %s.corrupt", path,
                 len(rest), path)


# ============================================================================ writing


def journal_in_use(aux_dir: str) -> Optional[bool]:
    """Whether a live service works in ``aux_dir``: it holds the flock of its journal
    (``JournalWriter``). None when that cannot be told (no readable journal)."""
    try:
        fd = os.open(os.path.join(aux_dir, JOURNAL_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # held
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False

class JournalWriter:
    """Appends records to the journal; a registry listener for final states.

    The file is locked (``flock``) for as long as the writer is open, so a second service
    cannot write to it (a resume of a run that is still alive is refused).
    """

    def __init__(self, path: str, loop, *, resumed: bool):
        self.path = path
        self.token = uuid4_hex()
        self.resumed = resumed
        self.stopping = False  # set when the service stops: CANCELED/OMITTED get "stop"
        self._loop = loop
        self._pending: List[str] = []
        self._sync_timer = None
        self._broken = False  # a write failed: nothing more is written (see write)
        self._syncer: Optional[threading.Thread] = None
        self._sync_wanted = threading.Event()
        self._closing = False
        self._names = {}
        # end records in the file, all runs counted (a resume sets the earlier runs'):
        # what a ``rep`` record counts
        self.ends = 0
        self._fd = self._open(path, fresh=not resumed)

    def start(self) -> None:
        """Write this run's ``run`` record (after a resume has read and repaired the file)."""
        self._write_line({"k": "run", "v": FORMAT_VERSION, "run": self.token,
                          "pid": os.getpid(), "host": socket.gethostname(),
                          "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed": self.resumed})

    @staticmethod
    def _open(path: str, fresh: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)  # it holds the jobs' env: owner only
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError("the journal %s is in use by a running service" % path) from None
        if fresh and os.fstat(fd).st_size:
            # a new run with the id of an old one: keep the old journal aside, start anew
            os.replace(path, path + ".prev")
            _log.info("an earlier journal was moved to %s.prev", path)
            os.close(fd)
            return JournalWriter._open(path, fresh=False)
        return fd

    # ---------------------------------------------------------------- listeners
    def submitted(self, specs) -> None:
        """An accepted submit request (``JobSpec``s): written before the reply leaves."""
        self._write_line({"k": "submit", "jobs": [dict(spec.description) for spec in specs]})

    def adopt(self, records: Iterable[Record]) -> None:
        """Write submit and end records read elsewhere (an upstream run's track files), so
        that this journal alone describes the run from now on."""
        for record in records:
            if isinstance(record, SubmitRecord):
                self._write_line({"k": "submit", "jobs": list(record.jobs)})
            elif isinstance(record, EndRecord):
                line = {"k": "end", "job": record.job, "state": record.state.value}
                if record.index is not None:
                    line["it"] = record.index
                self._write_line(line)
                self.ends += 1

    def reported(self, size: int) -> None:
        """jobs.report, ``size`` bytes long now, has a line for every end record so far
        (``report_gap``): called after each of its batches reached the file."""
        self._write_line({"k": "rep", "ends": self.ends, "size": size})

    def removed(self, names: Sequence[str]) -> None:
        self._write_line({"k": "remove", "jobs": list(names)})

    def stopped(self, why: str) -> None:
        self._write_line({"k": "stop", "why": why})

    def __call__(self, job, position: Optional[int], state: JobState) -> None:
        if state not in FINAL_STATES:
            return
        name = self._names.get(job.name)
        if name is None:
            name = self._names[job.name] = json.dumps(job.name)
        parts = ['{"k":"end","job":', name]
        if position is not None:
            parts.append(',"it":%d' % (job.spec.iteration.start + position))
        parts.append(',"state":"%s"' % state.value)
        if state is not JobState.SUCCEED:
            record = job if position is None else job.records.get(position)
            message = record.messages if record is not None else None
            if message:
                parts.append(',"msg":%s' % json.dumps(message))
            if self.stopping and (state in _STOPPABLE or (position is None and job.iterative)):
                parts.append(',"stop":1')
        parts.append("}\n")
        self._pending.append("".join(parts))
        self.ends += 1
        self.write()

    # ---------------------------------------------------------------- output
    def _write_line(self, obj) -> None:
        self._pending.append(json.dumps(obj, separators=(",", ":")) + "\n")
        self.write()

    def write(self) -> None:
        """Write what is pending now (one ``write(2)``); schedule the next fdatasync.

        A failed write (disk full, I/O error) is logged once and ends the journal: the
        service keeps running, and a resume re-runs what ended after that point.
        """
        if not self._pending or self._fd < 0 or self._broken:
            return
        data = "".join(self._pending).encode()
        self._pending.clear()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self._broken = True
            _log.error("cannot write the journal %s (%s): it ends here; a resume would run "
                       "again what ends from now on", self.path, exc)
            return
        if self._sync_timer is None and self._loop is not None:
            self._sync_timer = self._loop.call_later(FSYNC_INTERVAL, self._sync)

    def _sync(self) -> None:
        """Timer: ask the sync thread for an fdatasync (it can take tens of milliseconds
        on a busy disk, which the event loop must not wait for)."""
        self._sync_timer = None
        if self._fd >= 0 and not self._broken:
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_thread, daemon=True,
                                                name="qcgflow-journal-sync")
                self._syncer.start()
            self._sync_wanted.set()

    def _sync_thread(self) -> None:
        while True:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            if self._closing:
                return
            self._fdatasync()

    def _fdatasync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            _log.warning("cannot sync the journal %s: %s", self.path, exc)

    def close(self) -> None:
        """Write what is pending, sync, release the lock."""
        if self._fd < 0:
            return
        self.write()
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._syncer is not None:
            self._closing = True
            self._sync_wanted.set()
            self._syncer.join()
        if not self._broken:
            self._fdatasync()
        os.close(self._fd)
        self._fd = -1
