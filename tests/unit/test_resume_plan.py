"""Unit tests of the resume decisions: journal records -> plan (pure), the manager restoring
finished units without running them (fake loop and executor, no processes), and the
journal file itself (reading a torn tail, locking, a fresh run's old journal) in tmp_path."""

import json

import pytest

from factories import job_desc, make_manager
from qcgflow.runtime.jobs import JobState
from qcgflow.runtime.journal import (EndRecord, JournalError, JournalWriter, RemoveRecord,
                                     RunRecord, SubmitRecord, parse_record, plan_resume,
                                     read_journal)
from qcgflow.runtime.resume import apply_plan

S = JobState


def submit(*descs):
    return SubmitRecord(tuple(descs))


def end(job, index=None, state=S.SUCCEED, stopped=False, message=None):
    return EndRecord(job, index, state, message, stopped)


def iterative(name, count, **kw):
    return job_desc(name, iteration={"start": 0, "stop": count}, **kw)


# =============================================================================== plan_resume

def test_plan_keeps_every_final_state_that_was_not_caused_by_a_stop():
    plan = plan_resume([submit(iterative("a", 4)), end("a", 0), end("a", 1, S.FAILED),
                        end("a", 2, S.CANCELED)])
    assert [(s.job, s.index, s.state) for s in plan.steps[1:]] == [
        ("a", 0, S.SUCCEED), ("a", 1, S.FAILED), ("a", 2, S.CANCELED)]


def test_plan_treats_units_ended_by_the_stop_as_unfinished():
    plan = plan_resume([submit(iterative("a", 2)), end("a", 0),
                        end("a", 1, S.CANCELED, stopped=True)])
    assert (plan.finished, plan.rerun) == (1, 1)


def test_plan_first_final_state_of_a_unit_wins():
    plan = plan_resume([submit(job_desc("a")), end("a", None, S.FAILED), end("a")])
    assert [s.state for s in plan.steps if isinstance(s, EndRecord)] == [S.FAILED]


def test_plan_unit_interrupted_then_finished_by_a_resume_is_finished():
    plan = plan_resume([submit(job_desc("a")), end("a", None, S.CANCELED, stopped=True),
                        end("a")])
    assert [s.state for s in plan.steps if isinstance(s, EndRecord)] == [S.SUCCEED]


def test_plan_drops_final_states_of_unknown_jobs():
    plan = plan_resume([submit(job_desc("a")), end("ghost")])
    assert plan.finished == 0


def test_plan_collects_run_tokens_in_order():
    plan = plan_resume([RunRecord("t1", 1, False), submit(job_desc("a")),
                        RunRecord("t2", 2, True)])
    assert plan.tokens == ("t1", "t2")


def test_plan_replays_removal_and_forgets_the_removed_jobs_final_states():
    plan = plan_resume([submit(job_desc("a")), end("a"), RemoveRecord(("a",)),
                        submit(job_desc("a")), end("a", None, S.FAILED)])
    assert [type(s).__name__ for s in plan.steps] == [
        "SubmitRecord", "EndRecord", "RemoveRecord", "SubmitRecord", "EndRecord"]


def test_plan_name_submitted_again_implies_the_removal_of_the_earlier_job():
    plan = plan_resume([submit(job_desc("a")), end("a"), submit(job_desc("a"))])
    assert isinstance(plan.steps[2], RemoveRecord)


# =============================================================================== records

@pytest.mark.parametrize("obj, problem", [
    ([], "not a JSON object"),
    ({"k": "end", "state": "SUCCEED"}, "without a job name"),
    ({"k": "end", "job": "a", "state": "RUNNING"}, "unknown state"),
    ({"k": "end", "job": "a", "state": "QUEUED"}, "non-final state"),
    ({"k": "submit", "jobs": "a"}, "list of job descriptions"),
    ({"k": "run", "v": 99}, "format version"),
    ({"k": "what"}, "unknown record kind"),
])
def test_parse_record_rejects_what_is_not_a_record(obj, problem):
    with pytest.raises(ValueError, match=problem):
        parse_record(obj)


def test_read_journal_uses_whole_lines_and_moves_a_torn_tail_aside(tmp_path):
    path = tmp_path / "journal.jsonl"
    whole = (json.dumps({"k": "submit", "jobs": [job_desc("a")]}) + "\n"
             + json.dumps({"k": "end", "job": "a", "state": "SUCCEED"}) + "\n")
    path.write_text(whole + '{"k":"end","job":"b","st')
    records = read_journal(str(path))
    assert (len(records), path.read_text(), (tmp_path / "journal.jsonl.corrupt").read_text()) \
        == (2, whole, '{"k":"end","job":"b","st')


def test_read_journal_stops_at_a_corrupt_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"k":"stop","why":"x"}\nnot json\n{"k":"stop","why":"y"}\n')
    assert len(read_journal(str(path), repair=False)) == 1


# =============================================================================== restoring

def restore(h, records):
    return apply_plan(plan_resume(records), h.manager, "journal.jsonl")


def test_restored_iterations_never_start():
    h = make_manager()
    restore(h, [submit(iterative("a", 4)), end("a", 0), end("a", 2)])
    h.loop.run_pending()
    h.drain()
    assert h.executor.names() == ["a:1", "a:3"]


def test_restored_iterative_job_ends_succeed_when_the_rest_succeeds():
    h = make_manager()
    restore(h, [submit(iterative("a", 3)), end("a", 0)])
    h.loop.run_pending()
    h.drain()
    assert (h.state("a"), h.job("a").finished, h.manager.unfinished) == (S.SUCCEED, 3, 0)


def test_restored_failed_iteration_keeps_its_parent_failed():
    h = make_manager()
    restore(h, [submit(iterative("a", 2)), end("a", 0, S.FAILED, message="exit code 1")])
    h.loop.run_pending()
    h.drain()
    assert (h.state("a"), h.job("a").iteration_state(0)) == (S.FAILED, S.FAILED)


def test_a_whole_cancel_journaled_after_its_iterations_is_restored_canceled():
    """A canceled iterative job ends after its iterations (journal order: iterations,
    then the parent); resumed, it is CANCELED again, not derived FAILED."""
    h = make_manager()
    restore(h, [submit(iterative("a", 2), job_desc("b", after=["a"])),
                end("a", 0, S.CANCELED, message="canceled by user"),
                end("a", 1, S.CANCELED, message="canceled by user"),
                end("a", None, S.CANCELED, message="canceled by user"),
                end("b", None, S.OMITTED, message="dependency 'a' CANCELED")])
    h.loop.run_pending()
    assert (h.state("a"), h.job("a").messages, h.state("b"), h.executor.names()) == (
        S.CANCELED, "canceled by user", S.OMITTED, [])


def test_fully_restored_job_releases_its_dependant_without_running():
    h = make_manager()
    restore(h, [submit(job_desc("a"), job_desc("b", after=["a"])), end("a")])
    h.loop.run_pending()
    assert h.executor.names() == ["b"]


def test_restored_failure_omits_the_dependant_again():
    h = make_manager()
    restore(h, [submit(job_desc("a"), job_desc("b", after=["a"])), end("a", None, S.FAILED)])
    h.loop.run_pending()
    assert (h.executor.names(), h.state("b")) == ([], S.OMITTED)


def test_per_iteration_dependant_runs_only_its_unfinished_iterations():
    h = make_manager()
    restore(h, [submit(iterative("a", 3), iterative("b", 3, after=["a:${it}"])),
                end("a", 0), end("a", 1), end("b", 0)])
    h.loop.run_pending()
    h.drain()
    assert h.executor.names() == ["a:2", "b:1", "b:2"]


def test_dependant_submitted_later_sees_a_restored_predecessor_as_done():
    h = make_manager()
    restore(h, [submit(iterative("a", 2)), end("a", 0), end("a", 1), end("a"),
                submit(job_desc("c", after=["a"]))])
    h.loop.run_pending()
    assert (h.state("a"), h.executor.names()) == (S.SUCCEED, ["c"])


def test_restored_units_are_not_reported_to_listeners():
    h = make_manager()
    seen = []
    h.registry.listeners.append(lambda job, position, state: seen.append(state))
    restore(h, [submit(job_desc("a")), end("a")])
    assert seen == [S.QUEUED]


def test_whole_job_ended_by_the_stop_runs_again():
    h = make_manager()
    restore(h, [submit(job_desc("a")), end("a", None, S.CANCELED, stopped=True)])
    h.loop.run_pending()
    assert h.executor.names() == ["a"]


# =============================================================================== the writer

def test_a_second_writer_on_a_locked_journal_is_refused(tmp_path):
    path = str(tmp_path / "journal.jsonl")
    first = JournalWriter(path, None, resumed=False)
    try:
        with pytest.raises(JournalError, match="in use by a running service"):
            JournalWriter(path, None, resumed=True)
    finally:
        first.close()


def test_a_fresh_run_moves_an_old_journal_aside(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"k":"stop","why":"old"}\n')
    writer = JournalWriter(str(path), None, resumed=False)
    writer.start()
    writer.close()
    assert ((tmp_path / "journal.jsonl.prev").read_text(),
            [type(r).__name__ for r in read_journal(str(path))]) == (
        '{"k":"stop","why":"old"}\n', ["RunRecord"])


def test_a_resumed_writer_appends_to_the_journal(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"k":"stop","why":"old"}\n')
    writer = JournalWriter(str(path), None, resumed=True)
    writer.start()
    writer.close()
    assert [type(r).__name__ for r in read_journal(str(path))] == ["StopRecord", "RunRecord"]


# =============================================================================== walltime

def timed(name, wt=None):
    resources = {"numCores": {"exact": 1}}
    if wt is not None:
        resources["wt"] = wt
    return job_desc(name, resources=resources)


def test_jobs_whose_wall_time_outlasts_the_allocation_stay_queued():
    h = make_manager()
    h.manager.deadline = h.clock.now() + 60
    h.submit(timed("long", "2m"), timed("short", "30s"), timed("unknown"))
    assert (h.executor.names(), h.state("long")) == (["short", "unknown"], S.QUEUED)


def test_without_a_known_allocation_end_wall_time_does_not_hold_jobs_back():
    h = make_manager()
    h.submit(timed("long", "2h"))
    assert h.executor.names() == ["long"]


def test_a_journal_that_cannot_be_written_ends_with_an_error_logged(caplog):
    writer = JournalWriter("/dev/full", None, resumed=False)  # every write: ENOSPC
    writer.start()
    writer.stopped("x")
    writer.close()
    assert [r.message.split(" (")[0] for r in caplog.records if r.levelname == "ERROR"] == [
        "cannot write the journal /dev/full"]
