"""jobs.report after a SIGKILL: the journal's ``rep`` records and the repair at resume.

The report is written in batches (0.25 s at most apart), the journal at once: a service
killed with SIGKILL leaves end records without report lines. ``journal.report_gap`` tells
which, from the last ``rep`` record; ``JobsReport.add_missing`` writes a line for those the
file does not hold after that record's length.
"""

import json

import pytest

from factories import job_desc, make_manager
from qcgflow.runtime.jobs import JobState
from qcgflow.runtime.journal import (FORMAT_VERSION, EndRecord, JournalWriter, ReportedRecord,
                                     RunRecord, parse_record, read_journal, report_gap,
                                     tail_report_gap)
from qcgflow.runtime.reports import JobsReport
from qcgflow.runtime.resume import complete_report

S = JobState


def end(job, index=None, state=S.SUCCEED, message=None):
    return EndRecord(job, index, state, message)


# ================================================================ records and the gap (pure)

def test_rep_records_are_parsed_and_checked():
    assert parse_record({"k": "rep", "ends": 3, "size": 120}) == ReportedRecord(3, 120)
    for bad in ({"k": "rep"}, {"k": "rep", "ends": -1, "size": 0},
                {"k": "rep", "ends": 1, "size": "9"}):
        with pytest.raises(ValueError, match="'rep' record"):
            parse_record(bad)


@pytest.mark.parametrize("version", [1, 2])
def test_journals_of_both_formats_are_read(version):
    assert parse_record({"k": "run", "v": version, "run": "t"}) == RunRecord("t", 0, False)
    assert FORMAT_VERSION == 2


def test_no_rep_record_tells_nothing():
    assert report_gap([RunRecord("t", 1, False), end("a", 0), end("a", 1)]) is None


def test_the_gap_is_every_end_record_after_the_count_of_the_last_rep_record():
    records = [RunRecord("t1", 1, False), ReportedRecord(0, 0), end("a", 0), end("a", 1),
               ReportedRecord(2, 200), end("a", 2), end("a", 3, S.FAILED, "exit code 1")]
    assert report_gap(records) == (200, [end("a", 2), end("a", 3, S.FAILED, "exit code 1")])


def test_the_count_runs_over_all_runs_of_the_journal():
    # run 1 killed with a:1 unreported; run 2 (its resume) repaired it, then was killed too
    records = [RunRecord("t1", 1, False), ReportedRecord(0, 0), end("a", 0),
               ReportedRecord(1, 100), end("a", 1),
               RunRecord("t2", 2, True), ReportedRecord(2, 150), end("a", 2), end("a")]
    assert report_gap(records) == (150, [end("a", 2), end("a")])


def test_a_resume_killed_before_its_own_rep_record_leaves_the_same_gap():
    records = [RunRecord("t1", 1, False), ReportedRecord(0, 0), end("a", 0), end("a", 1),
               RunRecord("t2", 2, True)]
    assert report_gap(records) == (0, [end("a", 0), end("a", 1)])


# ================================================================ the writer counts

def test_the_writer_counts_its_end_records_and_writes_rep_records(tmp_path):
    path = tmp_path / "journal.jsonl"
    writer = JournalWriter(str(path), None, resumed=False)
    writer.start()
    harness = make_manager()
    harness.manager.add_listener(writer, finals_only=True)
    harness.submit(job_desc("x"), job_desc("y"))
    harness.finish("x")
    writer.reported(321)
    harness.finish("y", S.FAILED, "exit code 3")
    writer.close()
    records = read_journal(str(path))
    assert ReportedRecord(1, 321) in records
    assert report_gap(records) == (321, [end("y", None, S.FAILED, "exit code 3")])


# ================================================================ the repair

def _report(tmp_path, fmt="json"):
    return JobsReport(str(tmp_path / "jobs.report"), fmt)


def _names(path):
    return [json.loads(line)["name"] for line in path.read_text().splitlines()]


def test_missing_lines_are_added_once_and_present_ones_kept(tmp_path):
    path = tmp_path / "jobs.report"
    earlier = '{"name":"old:0","state":"SUCCEED","history":[]}\n'
    flushed = '{"name":"a:2","state":"SUCCEED","history":[]}\n'
    path.write_text(earlier + flushed)
    report = _report(tmp_path)
    gap = [end("a", 2), end("a", 3, S.FAILED, "exit code 1"), end("a")]
    assert report.add_missing(len(earlier), gap) == 2
    assert report.add_missing(len(earlier), gap) == 0  # a resume killed while repairing
    report.close()
    assert _names(path) == ["old:0", "a:2", "a:3", "a"]
    added = json.loads(path.read_text().splitlines()[2])
    assert added == {"name": "a:3", "state": "FAILED", "history": [],
                     "messages": "exit code 1"}


def test_a_line_the_kill_cut_short_is_replaced(tmp_path):
    path = tmp_path / "jobs.report"
    path.write_text('{"name":"a:0","state":"SUCCEED","history":[]}\n{"name":"a:1","sta')
    report = _report(tmp_path)
    assert report.add_missing(0, [end("a", 0), end("a", 1)]) == 1
    report.close()
    assert _names(path) == ["a:0", "a:1"]


def test_names_before_the_recorded_length_do_not_count(tmp_path):
    # iteration names repeat from one fresh run to the next in the same directory
    path = tmp_path / "jobs.report"
    earlier = '{"name":"a:0","state":"FAILED","history":[]}\n'
    path.write_text(earlier)
    report = _report(tmp_path)
    assert report.add_missing(len(earlier), [end("a", 0)]) == 1
    report.close()
    assert _names(path) == ["a:0", "a:0"]


def test_a_report_shorter_than_the_journal_says_is_left_alone(tmp_path):
    path = tmp_path / "jobs.report"
    path.write_text('{"name":"a:0","state":"SUCCEED","history":[]}\n')
    report = _report(tmp_path)
    assert report.add_missing(10_000, [end("a", 1)]) == 0
    report.close()
    assert _names(path) == ["a:0"]


def test_the_text_format_is_repaired_too(tmp_path):
    path = tmp_path / "jobs.report"
    path.write_text("a:0 (SUCCEED)\n    2026-12-08T00:00:00: SUCCEED\n    exit_code: 0\n")
    report = _report(tmp_path, "text")
    assert report.add_missing(0, [end("a", 0), end("a", 1, S.FAILED, "exit code 2")]) == 1
    report.close()
    assert path.read_text().splitlines()[-1] == "a:1 (FAILED) - exit code 2"


def test_each_batch_written_is_told_with_the_files_length(tmp_path):
    report, told = _report(tmp_path), []
    report.on_written(told.append)
    report.add_missing(0, [end("a", 0)])
    assert told == [(tmp_path / "jobs.report").stat().st_size]
    report.close()


def test_a_report_that_cannot_be_written_is_not_said_to_be_complete(tmp_path):
    report = _report(tmp_path)
    assert report.all_written()
    report._out._file.close()  # every write fails from here on, as on a full disk
    report._out._file = open(tmp_path / "jobs.report", "r")  # noqa: SIM115 - read-only
    report.add_missing(0, [end("a", 0)])
    assert not report.all_written()
    report._out._file.close()


# ================================================================ the journal's tail, a dead service's report

def _journal(directory, ends_before=3, ends_after=2, noted_every=1):
    """A journal like a killed service's: a ``rep`` record (report length 10 bytes a line)
    after every ``noted_every`` of the first ``ends_before`` iterations' ends, then
    ``ends_after`` ends (the last one's parent's too) that no batch reached the report
    with. Returns (path, the last rep record's length)."""
    path = directory / "journal.jsonl"
    writer = JournalWriter(str(path), None, resumed=False)
    writer.start()
    writer.reported(0)
    harness = make_manager(nodes=(("n0", tuple(range(64))),))
    harness.manager.add_listener(writer, finals_only=True)
    harness.submit(job_desc("a", iteration={"start": 0, "stop": ends_before + ends_after}))
    for i in range(ends_before):
        harness.finish("a:%d" % i)
        if (i + 1) % noted_every == 0 or i == ends_before - 1:
            writer.reported(10 * (i + 1))
    for i in range(ends_before, ends_before + ends_after):
        harness.finish("a:%d" % i)
    writer.close()
    return path, 10 * ends_before


def _line_of(size):
    """A report line (an earlier unit's) of ``size`` bytes."""
    line = '{"name":"old","p":"%s"}\n'
    return line % ("x" * (size - len(line % "")))


def test_the_tail_of_the_journal_gives_the_same_gap_as_all_of_it(tmp_path):
    path, size = _journal(tmp_path, ends_before=3000, ends_after=7, noted_every=25)
    whole = report_gap(read_journal(str(path)))
    assert whole == (size, [end("a", i) for i in range(3000, 3007)] + [end("a")])
    assert tail_report_gap(str(path)) == whole


@pytest.mark.parametrize("after", [1400, 1457, 3000])
def test_a_last_rep_record_several_blocks_back_is_found(tmp_path, after):
    # ~45 bytes an end record: 64 KiB blocks; the rep line lands at different offsets
    path, size = _journal(tmp_path, ends_before=5, ends_after=after)
    gap = tail_report_gap(str(path))
    assert gap == report_gap(read_journal(str(path)))
    assert gap[0] == size and len(gap[1]) == after + 1


def test_a_torn_last_line_is_left_out_of_the_tail(tmp_path):
    path, size = _journal(tmp_path)
    with open(path, "a") as handle:
        handle.write('{"k":"end","job":"a","it":9,"sta')
    assert tail_report_gap(str(path)) == (size, [end("a", 3), end("a", 4), end("a")])


def test_a_tail_without_rep_records_tells_nothing(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"k":"run","v":1,"run":"t"}\n{"k":"end","job":"a","state":"SUCCEED"}\n')
    assert tail_report_gap(str(path)) is None


def test_a_dead_services_report_is_completed_once_and_a_live_ones_not(tmp_path):
    aux = tmp_path / ".qcgpjm-service-x"
    aux.mkdir()
    _, size = _journal(aux)
    report = aux / "jobs.report"
    report.write_text(_line_of(size))  # what the last rep record counted
    assert complete_report(str(aux)) == 3
    assert complete_report(str(aux)) == 0
    assert report.read_text().splitlines()[1:] == [
        '{"name":"a:3","state":"SUCCEED","history":[]}',
        '{"name":"a:4","state":"SUCCEED","history":[]}',
        '{"name":"a","state":"SUCCEED","history":[]}']
    holder = JournalWriter(str(aux / "journal.jsonl"), None, resumed=True)  # a live service
    try:
        report.write_text(_line_of(size))
        assert complete_report(str(aux)) == 0
    finally:
        holder.close()
    assert complete_report(str(tmp_path / "no-such-dir")) == 0
