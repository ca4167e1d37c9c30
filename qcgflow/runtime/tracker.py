"""``track.reqs`` / ``track.states``: QCG-PilotJob's tracker files, kept beside the journal.

QCG-PilotJob 0.14.x writes two files in the service directory and resumes from them; tools
and scripts built around it look for them. qcgflow resumes from its own ``journal.jsonl``
(docs/resume.md) and writes these as well, in upstream's format:

- ``track.reqs``: one JSON line per accepted job, its description after submit-time
  substitution (upstream's ``Job.to_json()``: ``name``, ``execution``, ``resources`` -- one
  core when the job named none, as upstream fills it in -- and ``iteration``,
  ``dependencies``, ``attributes`` when given);
- ``track.states``: one JSON line per final state of a job or of one iteration:
  ``{"task": "name" | "name:<it>", "iteration": <it> | null, "state": "SUCCEED"}``.

Guarantees: a line is written only for an accepted job / a final state, with one
``write(2)`` when it happens (``track.reqs`` before the submit is answered), so it survives
the death of the service. CANCELED/OMITTED units and iterative parents that end
only because the service is stopping (the journal's ``stop`` mark) are not written, so a
resume runs them again, as from the journal. A failed write (full disk) is logged once and
ends the tracking, never the service.
"""

import json
import logging
import os
from json.encoder import encode_basestring_ascii as _quote
from typing import Callable, List, Optional

from .jobs import FINAL_STATES, JobState
from .journal import EndRecord, JournalError, Record, SubmitRecord

_log = logging.getLogger(__name__)

REQS_FILE = "track.reqs"
STATES_FILE = "track.states"
_DEFAULT_RESOURCES = {"numCores": {"exact": 1}}
_STOPPABLE = frozenset({JobState.CANCELED, JobState.OMITTED})


class TrackFiles:
    """Appends to the two tracker files; a registry listener and an ``on_submit`` hook."""

    def __init__(self, aux_dir: str, stopping: Callable[[], bool] = lambda: False):
        self._stopping = stopping
        # line-buffered: every line is one write(2) when it happens, so it survives the
        # death of the service (as the journal's records; a few microseconds each)
        self._reqs = open(os.path.join(aux_dir, REQS_FILE), "a", encoding="utf-8", buffering=1)
        self._states = open(os.path.join(aux_dir, STATES_FILE), "a", encoding="utf-8",
                            buffering=1)
        self._broken = False

    def submitted(self, specs) -> None:
        """Accepted jobs (``JobSpec``s): their descriptions, one line each."""
        lines = []
        for spec in specs:
            description = dict(spec.description)
            description.setdefault("resources", _DEFAULT_RESOURCES)
            lines.append(json.dumps(description) + "\n")
        self._write(self._reqs, "".join(lines))

    def __call__(self, job, position: Optional[int], state: JobState) -> None:
        if state not in FINAL_STATES:
            return
        if self._stopping() and (state in _STOPPABLE or (position is None and job.iterative)):
            return  # an interruption, not an outcome: a resume runs it again
        # json.dumps({"task": ..., "iteration": ..., "state": ...}) byte for byte, formatted
        # directly (a dict and the encoder per final state cost more than the write)
        quoted = _quote(job.name)
        if position is None:
            line = '{"task": %s, "iteration": null, "state": "%s"}\n' % (quoted, state.value)
        else:
            index = job.spec.iteration.start + position  # digits and ':' need no escaping
            line = '{"task": %s:%d", "iteration": %d, "state": "%s"}\n' % (
                quoted[:-1], index, index, state.value)
        self._write(self._states, line)

    def flush(self) -> None:
        for handle in (self._reqs, self._states):
            self._write(handle, None)

    def close(self) -> None:
        self.flush()
        for handle in (self._reqs, self._states):
            try:
                handle.close()
            except OSError:
                pass

    def _write(self, handle, text: Optional[str]) -> None:
        if self._broken:
            return
        try:
            if text:
                handle.write(text)
            else:
                handle.flush()
        except OSError as exc:
            self._broken = True
            _log.warning("tracker files (%s, %s): write failed (%s); no more tracking",
                         REQS_FILE, STATES_FILE, exc.strerror or exc)


# ============================================================================ reading

def has_track_files(aux_dir: str) -> bool:
    return os.path.isfile(os.path.join(aux_dir, REQS_FILE))


def _from_upstream(desc: dict) -> dict:
    """Upstream's ``Job.to_dict()`` spells every execution key out (``exec: null`` beside a
    script, ``env: {}``, ``values: null``): drop the empty ones our parser would refuse."""
    desc = dict(desc)
    execution = {key: value for key, value in (desc.get("execution") or {}).items()
                 if value is not None and value != {}}
    if "script" in execution and execution.get("args") == []:
        del execution["args"]
    desc["execution"] = execution
    if isinstance(desc.get("iteration"), dict):
        desc["iteration"] = {k: v for k, v in desc["iteration"].items() if v is not None}
    for key in ("attributes", "dependencies"):
        if desc.get(key) is None:
            desc.pop(key, None)
    return desc


def read_track_files(aux_dir: str) -> List[Record]:
    """An upstream run's ``track.reqs``/``track.states`` as journal records (one submit
    of every job, then the final states in order).

    Raises:
        JournalError: a line is not JSON or lacks a key upstream writes (file and line named).
    """
    records: List[Record] = []
    path = os.path.join(aux_dir, REQS_FILE)
    jobs = []
    for number, entry in _json_lines(path):
        if not isinstance(entry, dict) or "name" not in entry:
            raise JournalError("%s:%d: not a job description" % (path, number))
        jobs.append(_from_upstream(entry))
    if jobs:
        records.append(SubmitRecord(tuple(jobs)))
    path = os.path.join(aux_dir, STATES_FILE)
    if os.path.exists(path):
        for number, entry in _json_lines(path):
            try:
                state = JobState(entry["state"])
                task, index = str(entry["task"]), entry["iteration"]
            except (KeyError, TypeError, ValueError):
                raise JournalError("%s:%d: not a task state line" % (path, number)) from None
            name = task.rsplit(":", 1)[0] if index is not None else task
            if state in FINAL_STATES:
                records.append(EndRecord(name, index, state))
    return records


def _json_lines(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError:
                        raise JournalError("%s:%d: not JSON" % (path, number)) from None
    except OSError as exc:
        raise JournalError("%s: %s" % (path, exc.strerror or exc)) from None
