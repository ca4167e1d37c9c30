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

Guarantees: a line is written only for an accepted job / a final state; ``track.reqs`` is
written before the submit is answered, state lines are buffered and flushed whenever the
service is idle and at ``close()`` (a SIGKILLed service loses at most the last loop turn's:
those units run again on a resume). CANCELED/OMITTED units and iterative parents that end
only because the service is stopping (the journal's ``stop`` mark) are not written, so a
resume runs them again, as from the journal. A failed write (full disk) is logged once and
ends the tracking, never the service.
"""

import json
import logging
import os
from typing import Callable, Optional

from .jobs import FINAL_STATES, JobState

_log = logging.getLogger(__name__)

REQS_FILE = "track.reqs"
STATES_FILE = "track.states"
_DEFAULT_RESOURCES = {"numCores": {"exact": 1}}
_STOPPABLE = frozenset({JobState.CANCELED, JobState.OMITTED})


class TrackFiles:
    """Appends to the two tracker files; a registry listener and an ``on_submit`` hook."""

    def __init__(self, aux_dir: str, stopping: Callable[[], bool] = lambda: False):
        self._stopping = stopping
        self._reqs = open(os.path.join(aux_dir, REQS_FILE), "a", encoding="utf-8")
        self._states = open(os.path.join(aux_dir, STATES_FILE), "a", encoding="utf-8")
        self._broken = False

    def submitted(self, specs) -> None:
        """Accepted jobs (``JobSpec``s): their descriptions, one line each."""
        lines = []
        for spec in specs:
            description = dict(spec.description)
            description.setdefault("resources", _DEFAULT_RESOURCES)
            lines.append(json.dumps(description) + "\n")
        self._write(self._reqs, "".join(lines))
        self._write(self._reqs, None)

    def __call__(self, job, position: Optional[int], state: JobState) -> None:
        if state not in FINAL_STATES:
            return
        if self._stopping() and (state in _STOPPABLE or (position is None and job.iterative)):
            return  # an interruption, not an outcome: a resume runs it again
        if position is None:
            entry = {"task": job.name, "iteration": None, "state": state.value}
        else:
            index = job.spec.iteration.start + position
            entry = {"task": "%s:%d" % (job.name, index), "iteration": index,
                     "state": state.value}
        self._write(self._states, json.dumps(entry) + "\n")

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
