"""What ``qcgflow run`` does in a run directory that already holds a run.

::

    qcgflow run WF --wd DIR             DIR holds an earlier run (qcgflow-run.json, the
                                        records of .qcgflow/, a .qcgpjm-service-* dir):
                                        refused, naming --resume (nothing is appended to
                                        the old run's files, nothing is created)
    qcgflow run WF --wd DIR --resume    refused while the service of an earlier run in DIR
                                        is alive (a ``qcgflow run`` killed alone leaves it
                                        running); the tasks a killed service left running
                                        are killed (their environment carries the run token
                                        of its journal), then qcgflow.session.cache plans the run

The service's pid is kept in ``qcgflow-run.json`` (``service_pid``) when it starts.
"""

import json
import os
from typing import List, Optional

from qcgflow.runtime.client.spawn import SERVICE_MODULE
from qcgflow.runtime.client.workdir import service_dirs

RUN_INFO = "qcgflow-run.json"


def holds_run(wd: str) -> bool:
    """Whether ``wd`` holds (part of) an earlier run."""
    return os.path.exists(os.path.join(wd, RUN_INFO)) or \
        os.path.exists(os.path.join(wd, ".qcgflow", "memo.jsonl")) or bool(service_dirs(wd))


def note_service(wd: str, pid: int) -> None:
    """Add the service's pid to ``qcgflow-run.json``."""
    path = os.path.join(wd, RUN_INFO)
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        info["service_pid"] = pid
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
    except (OSError, ValueError):
        pass  # only a later --resume's check of a live service needs it


def live_service(wd: str) -> Optional[int]:
    """The pid of the service of the last run in ``wd`` when it is still running."""
    try:
        with open(os.path.join(wd, RUN_INFO), encoding="utf-8") as handle:
            pid = int(json.load(handle).get("service_pid"))
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    # started by `qcgflow run` (runtime/client/spawn.py), or an older run's `-m qcgflow.cli`
    started = os.fsencode(SERVICE_MODULE) in argv or b"qcgflow.cli" in argv
    if started and b"service" in argv and os.fsencode(wd) in argv:
        return pid  # the pid of a dead service may have been reused: the command line says
    return None


def _tokens(wd: str) -> List[str]:
    """Run tokens of the earlier services in ``wd`` that did not finish."""
    tokens = []
    for aux in service_dirs(wd):
        if os.path.exists(os.path.join(aux, "final_status.json")):
            continue
        try:
            with open(os.path.join(aux, "journal.jsonl"), encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("k") == "run" and record.get("run"):
                        tokens.append(record["run"])
        except OSError:
            continue
    return tokens


def check_wd(wd: str, resume: bool, keyed: bool, workflow: str = "WORKFLOW") -> Optional[str]:
    """None when a run may start in ``wd``, else why not (the usage error to print).
    With ``resume``, the tasks a killed service of an earlier run left running are killed
    first. ``keyed``: the run is a workflow file (a requests file cannot be resumed)."""
    if not os.path.isdir(wd) or not holds_run(wd):
        return None
    if not resume:
        return ("%s holds an earlier run; %s, or give a new --wd (qcgflow never appends to "
                "an earlier run's files)" % (wd, "add --resume to run only what did not "
                "complete there (qcgflow run %s --wd %s --resume)" % (workflow, wd)
                if keyed else "a requests file cannot be resumed"))
    pid = live_service(wd)
    if pid is not None:
        return ("the service of an earlier run in %s is still running (pid %d; 'qcgflow "
                "status %s' shows it): wait for it to end, or stop it (kill %d), then run "
                "--resume again" % (wd, pid, wd, pid))
    tokens = _tokens(wd)
    if tokens:
        from qcgflow.runtime.resume import kill_leftovers
        kill_leftovers(tokens)
    return None
