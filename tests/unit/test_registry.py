"""Unit tests of qcgflow.runtime.jobs (states, TRANSITIONS) and qcgflow.runtime.registry."""

import itertools
import pickle

import pytest

from factories import make_registry, spec
from qcgflow.runtime import registry as registry_module
from qcgflow.runtime.clock import FakeClock
from qcgflow.runtime.jobs import (FINAL_STATES, TRANSITIONS, Edge, IllegalTransition, JobState,
                                  allowed)

S = JobState
Q, SC, EX, OK, FA, CA, OM = (S.QUEUED, S.SCHEDULED, S.EXECUTING, S.SUCCEED, S.FAILED,
                             S.CANCELED, S.OMITTED)

# A shortest legal path from QUEUED to each state.
PATHS = {Q: [], SC: [SC], EX: [SC, EX], OK: [SC, EX, OK], FA: [SC, EX, FA],
         CA: [SC, EX, CA], OM: [OM]}

LEGAL = sorted(((a, b) for a, b in itertools.product(S, S) if allowed(a, b)), key=str)
ILLEGAL = sorted(((a, b) for a, b in itertools.product(S, S) if not allowed(a, b)), key=str)
RESTORABLE = sorted(((a, b) for a, b in itertools.product(S, S)
                     if allowed(a, b, Edge.RESTORE)), key=str)
UNRESTORABLE = sorted(((a, b) for a, b in itertools.product(S, S)
                       if not allowed(a, b, Edge.RESTORE) and not a.is_final), key=str)


def single(name="a", clock=None):
    reg = make_registry(clock)
    return reg, reg.add(spec(name))


def iterative(count, name="a", clock=None, start=0):
    reg = make_registry(clock)
    return reg, reg.add(spec(name, iteration={"start": start, "stop": start + count}))


def walk(reg, job, position, states):
    for state in states:
        reg.transition(job, position, state)


# =============================================================================== the table

def test_final_states():
    assert FINAL_STATES == {OK, FA, CA, OM}


@pytest.mark.parametrize("state", list(S))
def test_is_final_matches_the_table(state):
    assert state.is_final is (not TRANSITIONS[state])


def edges(kind):
    return {a: {b for b in S if allowed(a, b, kind)} for a in S}


def test_run_edges_of_the_table():
    assert edges(Edge.RUN) == {
        Q: {SC, OM, CA, FA},
        SC: {EX, FA, CA},
        EX: {OK, FA, CA},
        OK: set(), FA: set(), CA: set(), OM: set(),
    }


def test_restore_edges_of_the_table_lead_from_queued_to_every_final_state():
    assert edges(Edge.RESTORE) == {Q: set(FINAL_STATES), SC: set(), EX: set(), OK: set(),
                                   FA: set(), CA: set(), OM: set()}


def test_every_edge_of_the_table_has_a_kind():
    assert all(kinds for finishes in TRANSITIONS.values() for kinds in finishes.values())


# =============================================================================== single jobs

@pytest.mark.parametrize("old, new", LEGAL, ids=["%s->%s" % (a.name, b.name) for a, b in LEGAL])
def test_legal_moves_of_a_job(old, new):
    reg, job = single()
    walk(reg, job, None, PATHS[old])
    reg.transition(job, None, new)
    assert job.state is new


@pytest.mark.parametrize("old, new", ILLEGAL,
                         ids=["%s->%s" % (a.name, b.name) for a, b in ILLEGAL])
def test_illegal_moves_of_a_job_raise(old, new):
    reg, job = single()
    walk(reg, job, None, PATHS[old])
    with pytest.raises(IllegalTransition, match="a: %s -> %s" % (old.name, new.name)):
        reg.transition(job, None, new)


@pytest.mark.parametrize("old, new", ILLEGAL[:6],
                         ids=["%s->%s" % (a.name, b.name) for a, b in ILLEGAL[:6]])
def test_illegal_move_changes_nothing(old, new):
    reg, job = single()
    walk(reg, job, None, PATHS[old])
    before = (job.state, list(job.history))
    with pytest.raises(IllegalTransition):
        reg.transition(job, None, new)
    assert (job.state, job.history) == before


@pytest.mark.parametrize("old, new", ILLEGAL,
                         ids=["%s->%s" % (a.name, b.name) for a, b in ILLEGAL])
def test_illegal_moves_of_an_iteration_raise(old, new):
    reg, job = iterative(3, start=5)
    walk(reg, job, 1, PATHS[old])
    with pytest.raises(IllegalTransition, match="a:6: %s -> %s" % (old.name, new.name)):
        reg.transition(job, 1, new)


def test_history_is_stamped_with_the_clock_in_order():
    clock = FakeClock(1000.0)
    reg, job = single(clock=clock)
    for state in (SC, EX, OK):
        clock.advance(2.5)
        reg.transition(job, None, state)
    assert job.history == [(Q, 1000.0), (SC, 1002.5), (EX, 1005.0), (OK, 1007.5)]


def test_transition_returns_the_unit_when_final():
    reg, job = single()
    walk(reg, job, None, [SC, EX])
    assert reg.transition(job, None, OK) == [(job, None)]


@pytest.mark.parametrize("state", [SC, EX])
def test_transition_returns_nothing_when_not_final(state):
    reg, job = single()
    walk(reg, job, None, PATHS[state][:-1])
    assert reg.transition(job, None, state) == []


def test_messages_accumulate():
    reg, job = single()
    reg.transition(job, None, SC, "first")
    reg.transition(job, None, FA, "second")
    assert job.messages == "first; second"


def test_mark_executing_of_a_job():
    reg, job = single()
    reg.transition(job, None, SC)
    reg.mark_executing(job, None)
    assert job.state is EX


def test_listeners_see_every_change_in_order():
    seen = []
    reg = make_registry(listeners=[lambda job, pos, state: seen.append((job.name, pos, state))])
    job = reg.add(spec("a"))
    walk(reg, job, None, [SC, EX, OK])
    assert seen == [("a", None, Q), ("a", None, SC), ("a", None, EX), ("a", None, OK)]


# =============================================================================== membership

def test_add_registers_in_submission_order():
    reg = make_registry()
    jobs = [reg.add(spec(name)) for name in ("c", "a", "b")]
    assert ([j.name for j in reg], [j.seq for j in jobs]) == (["c", "a", "b"], [1, 2, 3])


def test_add_of_a_duplicate_name_raises():
    reg = make_registry()
    reg.add(spec("a"))
    with pytest.raises(KeyError):
        reg.add(spec("a"))


def test_remove_then_lookup():
    reg, job = single()
    assert (reg.remove("a"), reg.get("a"), "a" in reg, len(reg)) == (job, None, False, 0)


def test_counts_per_state():
    reg = make_registry()
    a, b = reg.add(spec("a")), reg.add(spec("b"))
    reg.add(spec("c"))
    walk(reg, a, None, [SC, EX, OK])
    reg.transition(b, None, OM)
    counts = reg.counts()
    assert (counts[Q], counts[OK], counts[OM], counts[FA], sum(counts.values())) == (1, 1, 1, 0, 3)


# =============================================================================== iterations

def test_iteration_states_start_queued_and_compact():
    reg, job = iterative(5)
    assert (job.total, bytes(job.iter_states), job.records, job.iteration_state(4)) == (
        5, bytes(5), {}, Q)


@pytest.mark.parametrize("start, position, name", [(0, 0, "a:0"), (2, 0, "a:2"), (2, 3, "a:5"),
                                                   (-1, 0, "a:-1")])
def test_unit_name_uses_the_index(start, position, name):
    reg, job = iterative(4, start=start)
    assert job.unit_name(position) == name


def test_unit_name_of_the_parent():
    reg, job = iterative(2)
    assert job.unit_name(None) == "a"


def test_first_scheduled_iteration_schedules_the_parent():
    reg, job = iterative(3)
    reg.transition(job, 1, SC)
    assert (job.state, job.iteration_state(1), job.iteration_state(0)) == (SC, SC, Q)


def test_first_executing_iteration_lifts_the_parent():
    reg, job = iterative(3)
    walk(reg, job, 0, [SC, EX])
    assert job.state is EX


def test_mark_executing_of_an_iteration_lifts_the_parent():
    reg, job = iterative(3)
    reg.transition(job, 0, SC)
    reg.mark_executing(job, 0)
    assert (job.state, job.iteration_state(0)) == (EX, EX)


def finish_all(reg, job, finals):
    for position, final in enumerate(finals):
        walk(reg, job, position, PATHS[final])


@pytest.mark.parametrize("finals, parent", [
    ([OK, OK, OK], OK),
    ([OK, FA, OK], FA),
    ([OK, OK, CA], FA),
    ([OM, OK, OK], FA),
    ([FA, FA, FA], FA),
    ([OK], OK),
    ([FA], FA),
])
def test_parent_state_derived_from_iterations(finals, parent):
    reg, job = iterative(len(finals))
    finish_all(reg, job, finals)
    assert job.state is parent


def test_parent_waits_for_the_last_iteration():
    reg, job = iterative(3)
    finish_all(reg, job, [OK, OK])
    assert not job.state.is_final


def test_parent_counts_finished_and_failed():
    reg, job = iterative(4)
    finish_all(reg, job, [OK, FA, OM])
    assert (job.finished, job.failed, job.active) == (3, 2, 0)


def test_active_counts_scheduled_and_executing():
    reg, job = iterative(4)
    reg.transition(job, 0, SC)
    walk(reg, job, 1, [SC, EX])
    assert job.active == 2


def test_parent_failure_message_counts_iterations():
    reg, job = iterative(3)
    finish_all(reg, job, [OK, FA, CA])
    assert job.messages == "2 of 3 iterations did not succeed"


def test_parent_of_all_omitted_iterations_goes_from_queued_to_failed():
    reg, job = iterative(2)
    finish_all(reg, job, [OM, OM])
    assert [state for state, _ in job.history] == [Q, FA]


def test_parent_history_order_with_iterations():
    clock = FakeClock(0.0)
    reg, job = iterative(2, clock=clock)
    for position in (0, 1):
        clock.advance(1)
        reg.transition(job, position, SC)
        clock.advance(1)
        reg.mark_executing(job, position)
        clock.advance(1)
        reg.transition(job, position, OK)
    assert job.history == [(Q, 0.0), (SC, 1.0), (EX, 2.0), (OK, 6.0)]


def test_iteration_record_history_starts_with_the_parent_queued_time():
    clock = FakeClock(10.0)
    reg, job = iterative(2, clock=clock)
    clock.advance(5)
    walk(reg, job, 1, [SC, EX])
    assert job.record(1).history == [(Q, 10.0), (SC, 15.0), (EX, 15.0)]


def test_iteration_record_keeps_index_and_message():
    reg, job = iterative(3, start=4)
    walk(reg, job, 2, [SC, EX])
    reg.transition(job, 2, FA, "exit code 3")
    record = job.record(2)
    assert (record.position, record.index, record.state, record.messages) == (
        2, 6, FA, "exit code 3")


def test_last_iteration_returns_itself_and_the_parent():
    reg, job = iterative(2)
    finish_all(reg, job, [OK])
    walk(reg, job, 1, [SC, EX])
    assert reg.transition(job, 1, OK) == [(job, 1), (job, None)]


def test_iteration_final_returns_only_itself_before_the_last():
    reg, job = iterative(2)
    walk(reg, job, 0, [SC, EX])
    assert reg.transition(job, 0, OK) == [(job, 0)]


def test_listeners_see_iterations_and_parent():
    seen = []
    reg = make_registry(listeners=[lambda job, pos, state: seen.append((pos, state))])
    job = reg.add(spec("a", iteration={"stop": 1}))
    reg.transition(job, 0, SC)
    reg.mark_executing(job, 0)
    reg.transition(job, 0, OK)
    assert sorted(seen, key=str) == sorted(
        [(None, Q), (None, SC), (0, SC), (None, EX), (0, EX), (0, OK), (None, OK)], key=str)


def test_listeners_hear_the_parent_final_state_last():
    seen = []
    reg = make_registry(listeners=[lambda job, pos, state: seen.append((pos, state))])
    job = reg.add(spec("a", iteration={"stop": 2}))
    finish_all(reg, job, [OK, FA])
    assert seen[-2:] == [(1, FA), (None, FA)]


# =============================================================================== compact storage

def test_small_job_keeps_records_of_succeeded_iterations():
    reg, job = iterative(registry_module.KEEP_RECORDS_UP_TO)
    walk(reg, job, 0, [SC, EX, OK])
    assert job.record(0).state is OK


def test_big_job_drops_records_of_succeeded_iterations():
    reg, job = iterative(registry_module.KEEP_RECORDS_UP_TO + 1)
    walk(reg, job, 0, [SC, EX, OK])
    assert (job.record(0), job.iteration_state(0)) == (None, OK)


@pytest.mark.parametrize("final", [FA, CA, OM])
def test_big_job_keeps_records_of_iterations_that_did_not_succeed(final):
    reg, job = iterative(registry_module.KEEP_RECORDS_UP_TO + 1)
    walk(reg, job, 3, PATHS[final])
    assert job.record(3).state is final


def test_big_job_keeps_records_only_while_alive():
    reg, job = iterative(registry_module.KEEP_RECORDS_UP_TO + 1)
    for position in range(100):
        walk(reg, job, position, [SC, EX, OK])
    walk(reg, job, 100, [SC, EX])
    assert list(job.records) == [100]


def test_million_iterations_cost_a_byte_each():
    reg, job = iterative(1_000_000)
    assert (type(job.iter_states), len(job.iter_states), job.records) == (bytearray, 1_000_000, {})


# =============================================================================== restore edges

@pytest.mark.parametrize("old, new", RESTORABLE,
                         ids=["%s->%s" % (a.name, b.name) for a, b in RESTORABLE])
def test_restore_moves_a_queued_job_to_its_final_state(old, new):
    reg, job = single()
    assert (reg.restore(job, None, new), job.state) == ([(job, None)], new)


def test_queued_to_succeed_is_a_restore_edge_only():
    reg, job = single()
    with pytest.raises(IllegalTransition):
        reg.transition(job, None, OK)


@pytest.mark.parametrize("old, new", UNRESTORABLE,
                         ids=["%s->%s" % (a.name, b.name) for a, b in UNRESTORABLE])
def test_restore_past_the_table_raises(old, new):
    reg, job = single()
    walk(reg, job, None, PATHS[old])
    with pytest.raises(IllegalTransition, match="not a restore edge"):
        reg.restore(job, None, new)


def test_restore_of_a_running_iteration_raises():
    reg, job = iterative(3)
    walk(reg, job, 1, [SC, EX])
    with pytest.raises(IllegalTransition, match="a:1: EXECUTING -> SUCCEED"):
        reg.restore(job, 1, OK)


def test_restore_of_a_final_unit_changes_nothing():
    reg, job = single()
    reg.restore(job, None, FA)
    assert (reg.restore(job, None, OK), job.state) == ([], FA)


def test_restore_is_not_told_to_listeners():
    reg, job = single()
    heard = []
    reg.listeners.append(lambda j, position, state: heard.append(state))
    reg.restore(job, None, OK)
    assert heard == []


@pytest.mark.parametrize("position", [None, 1])
def test_final_listeners_hear_final_states_only_and_first(position):
    reg, job = single() if position is None else iterative(3)
    heard = []
    reg.listeners.append(lambda j, p, state: heard.append(("every", p, state)))
    reg.final_listeners.append(lambda j, p, state: heard.append(("final", p, state)))
    walk(reg, job, position, [SC, EX, OK])
    # an iteration's first move also moves its parent (position None): only those two
    # moves are told to the listener of every state
    expected = [("every", position, SC), ("every", position, EX),
                ("final", position, OK), ("every", position, OK)]
    if position is not None:
        expected[0:0] = [("every", None, SC)]
        expected[2:2] = [("every", None, EX)]
    assert heard == expected


def test_a_finals_only_listener_hears_the_parent_end_with_its_last_iteration():
    reg, job = iterative(2)
    heard = []
    reg.final_listeners.append(lambda j, p, state: heard.append((p, state)))
    walk(reg, job, 0, [SC, EX, OK])
    walk(reg, job, 1, [SC, EX, FA])
    assert heard == [(0, OK), (1, FA), (None, FA)]


def test_restoring_every_iteration_restores_the_parent():
    reg, job = iterative(2)
    reg.restore(job, 0, OK)
    finals = reg.restore(job, 1, OK)
    assert (finals, [state for state, _ in job.history]) == (
        [(job, 1), (job, None)], [Q, OK])


def test_restored_units_count_as_finished():
    reg, job = iterative(3)
    reg.restore(job, 0, OK)
    reg.restore(job, 2, FA)
    stats = reg.unit_stats
    assert (job.finished, job.failed, stats.finished, stats.failed, stats.active) == (
        2, 1, 2, 1, 0)


# =============================================================================== the error

def illegal_move():
    clock = FakeClock(1000.0)
    reg, job = single(clock=clock)
    clock.advance(2.0)
    reg.transition(job, None, SC)
    with pytest.raises(IllegalTransition) as caught:
        reg.transition(job, None, OM)
    return caught.value


def test_illegal_transition_carries_its_fields():
    error = illegal_move()
    assert (error.unit, error.start, error.finish, error.edge, error.history) == (
        "a", SC, OM, Edge.RUN, ((Q, 1000.0), (SC, 1002.0)))


def test_illegal_transition_text_names_unit_move_and_history():
    assert str(illegal_move()) == ("a: SCHEDULED -> OMITTED is not a run edge of the "
                                   "transition table (history: QUEUED at 1000.000, "
                                   "SCHEDULED at 1002.000)")


def test_illegal_transition_history_is_a_copy():
    error = illegal_move()
    assert isinstance(error.history, tuple)


def test_illegal_transition_of_a_queued_iteration_has_the_parent_queued_time():
    clock = FakeClock(50.0)
    reg, job = iterative(2, clock=clock, start=3)
    with pytest.raises(IllegalTransition) as caught:
        reg.transition(job, 1, EX)
    assert (caught.value.unit, caught.value.history) == ("a:4", ((Q, 50.0),))


def test_illegal_transition_pickles_with_its_fields():
    error = pickle.loads(pickle.dumps(illegal_move()))
    assert (error.unit, error.start, error.finish, error.history[-1]) == (
        "a", SC, OM, (SC, 1002.0))
