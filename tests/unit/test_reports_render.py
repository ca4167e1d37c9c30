"""jobs.report rendering: the fast renderer writes the very bytes of the reference algorithm.

The reference below is the original renderer (a dict per entry, ``json.dumps`` and
``datetime.fromtimestamp(t).isoformat()`` per history item), kept here as the golden
definition of the format; the tests render many entries both ways through a real
``JobsReport`` writing a real file and compare the text.
"""

import dataclasses
import json
import random
from datetime import datetime

import pytest

from qcgflow.runtime.jobs import FINAL_STATES, JobState
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.registry import IterationRecord, Job
from qcgflow.runtime.reports import IsoDates, JobsReport

SUBMIT_VARS = {"rcnt": "1", "uniq": "u", "sname": "local", "date": "d", "time": "t",
               "dateTime": "dt"}


# ----------------------------------------------------------------- the reference algorithm

def reference_entry(name, state, history, runtime, messages) -> dict:
    entry = {"name": name, "state": state.name,
             "history": [{"state": s.name, "date": datetime.fromtimestamp(t).isoformat()}
                         for s, t in history]}
    if runtime:
        entry["runtime"] = dict(runtime)
    if messages:
        entry["messages"] = messages
    return entry


def reference_render(fmt, entry) -> str:
    if fmt == "json":
        return json.dumps(entry, separators=(",", ":")) + "\n"
    lines = ["%s (%s)%s" % (entry["name"], entry["state"],
                            " - " + entry["messages"] if "messages" in entry else "")]
    lines += ["    %s: %s" % (h["date"], h["state"]) for h in entry["history"]]
    lines += ["    %s: %s" % (key, value) for key, value in entry.get("runtime", {}).items()]
    return "\n".join(lines) + "\n"


def reference_line(fmt, job, position, state) -> str:
    if position is None:
        entry = reference_entry(job.name, state, job.history, job.runtime, job.messages)
    else:
        record = job.records.get(position)
        history = record.history if record is not None else [(state, 0.0)]
        entry = reference_entry(job.unit_name(position), state, history,
                                record.runtime if record is not None else {},
                                record.messages if record is not None else None)
    return reference_render(fmt, entry)


# ----------------------------------------------------------------- the cases

NAMES = ["a", "job_7", 'quo"te', "back\\slash", "zażółć", "日本", "semi;colon\\t",
         "emoji\U0001F600", "ctrl\x01"]
MESSAGES = [None, "", "exit code 1", 'said "no"', "ünïcödé \u2028 line", "multi\nline"]
RUNTIMES = [{}, {"allocation": "n0[0]", "wd": "/tmp/w", "rtime": "0:00:00.009",
                 "exit_code": "0", "pid": "8350", "pname": "echo"},
            {"wd": "/tmp/żółw \"q\"", "exit_code": "-9"}, {"pid": 123, "ok": True},
            {"nested": {"a": [1, 2.5, None]}}]
BASE = 1_700_000_000.0


def times(rng: random.Random):
    """History times: whole seconds (no microseconds), rounding edges, ordinary floats."""
    yield BASE  # microseconds 0: omitted by isoformat
    yield 0.0
    yield BASE + 0.9999997  # rounds up to the next second
    yield BASE + 0.0000004  # rounds down to the whole second
    yield BASE + 0.5
    yield BASE + 0.000001
    for _ in range(20):
        yield BASE + rng.random() * 100000


def spec(name, iteration=None):
    desc = {"name": "placeholder", "execution": {"exec": "/bin/true"}}
    if iteration is not None:
        desc["iteration"] = iteration
    # The name is set afterwards: the renderer must escape any text, also names the
    # job-name rule refuses at submit (control characters).
    return dataclasses.replace(parse_job(desc, dict(SUBMIT_VARS)), name=name)


def cases():
    """(job, position, state) triples covering names, messages, runtimes and times."""
    rng = random.Random(7)
    all_times = list(times(rng))
    finals = sorted(FINAL_STATES, key=lambda s: s.name)
    result = []
    for number, name in enumerate(NAMES):
        for index, messages in enumerate(MESSAGES):
            runtime = RUNTIMES[(number + index) % len(RUNTIMES)]
            state = finals[(number + index) % len(finals)]
            job = Job(spec("%s%d" % (name, index)), number)
            stamps = rng.sample(all_times, 3)
            job.history = [(JobState.QUEUED, stamps[0]), (JobState.EXECUTING, stamps[1]),
                           (state, stamps[2])]
            job.runtime = dict(runtime)
            job.messages = messages
            result.append((job, None, state))
            iterative = Job(spec("%s-it%d" % (name, index), {"start": 3, "stop": 6}), number)
            record = IterationRecord(1, 4)
            record.history = [(JobState.QUEUED, stamps[0]), (state, stamps[2])]
            record.runtime = dict(runtime)
            record.messages = messages
            iterative.records[1] = record
            result.append((iterative, 1, state))
            result.append((iterative, 2, state))  # no record: the placeholder history
    return result


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_rendering_matches_the_reference_byte_for_byte(tmp_path, fmt):
    path = tmp_path / "jobs.report"
    report = JobsReport(str(path), fmt)
    expected = []
    for job, position, state in cases():
        report(job, position, state)
        expected.append(reference_line(fmt, job, position, state))
    report.close()
    assert path.read_text(encoding="utf-8") == "".join(expected)


def test_the_json_lines_parse_back_to_the_reference_entries(tmp_path):
    path = tmp_path / "jobs.report"
    report = JobsReport(str(path), "json")
    for job, position, state in cases():
        report(job, position, state)
    report.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["name"] for line in lines[:2]] == ["a0", "a-it0:4"]


def test_a_non_final_state_writes_nothing(tmp_path):
    path = tmp_path / "jobs.report"
    report = JobsReport(str(path), "json")
    job = Job(spec("running"), 0)
    job.history = [(JobState.QUEUED, BASE)]
    report(job, None, JobState.EXECUTING)
    report.close()
    assert path.read_text(encoding="utf-8") == ""


def test_iso_dates_match_fromtimestamp_on_many_floats():
    rng = random.Random(11)
    dates = IsoDates()
    stamps = [BASE + rng.random() * 1e6 for _ in range(20000)]
    stamps += [BASE + k + f for k in range(3) for f in (0.0, 0.5e-6, 1.5e-6, 0.9999995,
                                                        0.99999949, 0.25)]
    stamps += [-1.5, -0.0000004, 1e-7, 86399.9999996]
    assert [dates(t) for t in stamps] == [datetime.fromtimestamp(t).isoformat()
                                          for t in stamps]


def test_a_whole_second_has_no_microseconds():
    assert IsoDates()(BASE) == datetime.fromtimestamp(BASE).isoformat()


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="xml"):
        JobsReport(str(tmp_path / "r"), "xml")
