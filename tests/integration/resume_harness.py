"""Helpers of the resume tests: counting task executions, killing and resuming services.

Tasks append their iteration index to ``starts`` when they begin and to ``ends`` when they
are done (files in the service's working directory), so a test can count how many times
each iteration ran. The journal read right after a SIGKILL is exactly what the dead service
had recorded as finished: those units must not start again.
"""

import json
import signal
from collections import Counter
from pathlib import Path
from typing import List, Sequence, Set

from support.results import words
from support.services import DEFAULT_ID, SERVICE_CMD, ServiceProcess


def counting(sleep: float = 0.1, extra: str = "") -> dict:
    """An execution element that records ``job:index`` (``job:`` for a single job) at its
    start and at its end; the job's name comes from ``QCG_JOB`` (see ``counted_job``)."""
    body = ('u="$QCG_JOB:${it}"; echo "$u" >> starts; %s sleep %s; echo "$u" >> ends'
            % (extra, sleep))
    return {"exec": "/bin/sh", "args": ["-c", body]}


def counted_job(name: str, *, sleep: float = 0.1, iteration=None, after: Sequence[str] = (),
                extra: str = "") -> dict:
    execution = counting(sleep, extra)
    execution["env"] = {"QCG_JOB": name}
    desc = {"name": name, "execution": execution}
    if iteration is not None:
        desc["iteration"] = iteration
    if after:
        desc["dependencies"] = {"after": list(after)}
    return desc


def counts(wd: Path, name: str = "starts") -> Counter:
    return Counter(words(wd / name))


def journal_path(wd: Path, service_id: str = DEFAULT_ID) -> Path:
    return wd / (".qcgpjm-service-%s" % service_id) / "journal.jsonl"


def journal_records(wd: Path, service_id: str = DEFAULT_ID) -> List[dict]:
    path = journal_path(wd, service_id)
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def journaled_finished(wd: Path, service_id: str = DEFAULT_ID) -> Set[str]:
    """``job:index`` keys of the units whose final state is in the journal (not ended by
    a stop); iterative parents are left out (they never run themselves)."""
    records = journal_records(wd, service_id)
    iterative = {job["name"] for r in records if r.get("k") == "submit" for job in r["jobs"]
                 if "iteration" in job}
    return {"%s:%s" % (r["job"], "" if r.get("it") is None else r["it"]) for r in records
            if r.get("k") == "end" and not r.get("stop")
            and not (r.get("it") is None and r["job"] in iterative)}


def start_resume(tmp_path: Path, wd: Path, *opts, nodes: str = "2",
                 service_id: str = DEFAULT_ID) -> ServiceProcess:
    """``qcgflow service --resume <wd> --nodes 2 *opts`` in the background."""
    argv = list(SERVICE_CMD) + ["--resume", str(wd), "--nodes", nodes] + [str(o) for o in opts]
    return ServiceProcess(argv, wd, service_id, tmp_path)


def sigkill(proc: ServiceProcess) -> None:
    """SIGKILL the service process only (its tasks live in their own sessions and survive)."""
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(timeout=10)
    proc.result(timeout=1)  # closes the captured output files


def assert_not_rerun(before: Counter, after: Counter, finished) -> None:
    """No unit finished (journaled) before the kill started again after it."""
    again = sorted(u for u in finished if after[u] > before[u])
    assert not again, "units finished before the kill ran again: %s" % again


