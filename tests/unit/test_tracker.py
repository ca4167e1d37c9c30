"""Reading QCG-PilotJob's tracker files into journal records (qcgflow/runtime/tracker.py)."""

import json

import pytest

from qcgflow.runtime.jobs import JobState
from qcgflow.runtime.journal import EndRecord, JournalError, SubmitRecord
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.tracker import has_track_files, read_track_files

# lines as upstream's Job.to_json() writes them: every execution key spelled out
UPSTREAM_REQS = [
    {"name": "a", "execution": {"exec": "/bin/true", "args": [], "env": {}, "script": None,
                                "model_opts": {}}, "resources": {"numCores": {"exact": 1}}},
    {"name": "s", "execution": {"exec": None, "args": [], "env": {}, "script": "echo S",
                                "model_opts": {}}, "resources": {"numCores": {"exact": 1}}},
    {"name": "it", "execution": {"exec": "/bin/true", "args": ["x"], "env": {"A": "1"},
                                 "script": None, "model_opts": {}},
     "resources": {"numCores": {"exact": 1}}, "iteration": {"start": 0, "stop": 4,
                                                             "values": None}},
    {"name": "c", "execution": {"exec": "/bin/true", "args": [], "env": {}, "script": None,
                                "model_opts": {}}, "resources": {"numCores": {"exact": 1}},
     "dependencies": {"after": ["it"]}},
]
UPSTREAM_STATES = [
    {"task": "a", "iteration": None, "state": "SUCCEED"},
    {"task": "it:0", "iteration": 0, "state": "SUCCEED"},
    {"task": "it:2", "iteration": 2, "state": "FAILED"},
]


def write(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_upstream_track_files_become_one_submit_and_end_records(tmp_path):
    write(tmp_path / "track.reqs", UPSTREAM_REQS)
    write(tmp_path / "track.states", UPSTREAM_STATES)
    assert has_track_files(str(tmp_path))
    records = read_track_files(str(tmp_path))
    assert isinstance(records[0], SubmitRecord) and len(records[0].jobs) == 4
    assert records[1:] == [EndRecord("a", None, JobState.SUCCEED),
                           EndRecord("it", 0, JobState.SUCCEED),
                           EndRecord("it", 2, JobState.FAILED)]
    jobs = {job["name"]: job for job in records[0].jobs}
    assert jobs["s"]["execution"] == {"script": "echo S"}
    assert jobs["it"]["execution"] == {"exec": "/bin/true", "args": ["x"], "env": {"A": "1"}}
    assert jobs["it"]["iteration"] == {"start": 0, "stop": 4}
    for job in records[0].jobs:  # every description is one our parser accepts
        assert parse_job(job, {}).name == job["name"]


def test_states_file_is_optional(tmp_path):
    write(tmp_path / "track.reqs", UPSTREAM_REQS[:1])
    assert [type(r) for r in read_track_files(str(tmp_path))] == [SubmitRecord]


@pytest.mark.parametrize("name, text, message", [
    ("track.reqs", "{not json\n", "track.reqs:1: not JSON"),
    ("track.reqs", '["a"]\n', "track.reqs:1: not a job description"),
    ("track.states", '{"task": "a"}\n', "track.states:1: not a task state line"),
    ("track.states", '{"task": "a", "iteration": null, "state": "DONE"}\n',
     "track.states:1: not a task state line"),
])
def test_bad_lines_are_named(tmp_path, name, text, message):
    write(tmp_path / "track.reqs", UPSTREAM_REQS[:1])
    (tmp_path / name).write_text(text)
    with pytest.raises(JournalError, match=message):
        read_track_files(str(tmp_path))


# ----------------------------------------------------------------- writing track.states

def _job(name, iteration=None):
    import dataclasses
    from qcgflow.runtime.registry import Job
    desc = {"name": "placeholder", "execution": {"exec": "/bin/true"}}
    if iteration is not None:
        desc["iteration"] = iteration
    spec = parse_job(desc, {"rcnt": "1", "uniq": "u", "sname": "local", "date": "d",
                            "time": "t", "dateTime": "dt"})
    # any text, also names the submit rule refuses (quotes, control characters, non-ASCII)
    return Job(dataclasses.replace(spec, name=name), 0)


@pytest.mark.parametrize("name", ["a", "sweep", 'q"uo\\te', "tab\there", "zażółć ✓",
                                  "line\nbreak", "x:3"])
def test_states_lines_are_json_dumps_of_upstreams_entry(tmp_path, name):
    from qcgflow.runtime.tracker import TrackFiles
    track = TrackFiles(str(tmp_path))
    single, sweep = _job(name), _job(name, {"start": -2, "stop": 3})
    expected = []
    for state in (JobState.SUCCEED, JobState.FAILED, JobState.CANCELED):
        track(single, None, state)
        expected.append({"task": name, "iteration": None, "state": state.value})
        for position in (0, 2, 4):
            track(sweep, position, state)
            index = position - 2
            expected.append({"task": "%s:%d" % (name, index), "iteration": index,
                             "state": state.value})
    track(sweep, 1, JobState.EXECUTING)  # not final: no line
    track.close()
    text = (tmp_path / "track.states").read_text()
    assert text == "".join(json.dumps(entry) + "\n" for entry in expected)
