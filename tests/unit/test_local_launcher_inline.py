"""LocalLauncher spawns plain commands in the event loop's thread (no thread handoff) and the
rest in its spawner threads, and either way: processes are created in launch order, every
callback comes from the event loop after ``launch`` returned, a spawn that fails is told
through ``on_error``."""

import os
import threading

import pytest

from qcgflow.runtime.eventloop import EventLoop
from qcgflow.runtime.launch import local
from qcgflow.runtime.launch.local import INLINE_PER_TURN, LocalLauncher, ProcessSpec

DEADLINE = 30


@pytest.fixture
def spawns(monkeypatch):
    """(argv[-1], thread name) of every process created, in creation order."""
    created = []
    real_create = local._create

    def create(spec, cwd, spares):
        created.append((spec.argv[-1], threading.current_thread().name))
        return real_create(spec, cwd, spares)

    monkeypatch.setattr(local, "_create", create)
    return created


def run(launcher, loop, specs):
    """Launch ``specs`` in one turn of the loop; returns (events, calls made inside
    launch()). Every spec must end (on_exit or on_error) before the deadline."""
    events, inside = [], []
    pending = set(range(len(specs)))
    launching = [False]

    def note(event):
        (inside if launching[0] else events).append(event)

    def end(i, event):
        note(event)
        pending.discard(i)
        if not pending:
            loop.stop()

    def launch_all():
        launching[0] = True
        for i, spec in enumerate(specs):
            launcher.launch(spec, lambda pid, i=i: note(("started", i)),
                            lambda info, i=i: end(i, ("exited", i, info.exit_code)),
                            lambda message, i=i: end(i, ("error", i, message)))
        launching[0] = False

    loop.call_soon(launch_all)
    timer = loop.call_later(DEADLINE, loop.stop)
    loop.run()
    timer.cancel()
    assert not pending, "not every launch ended within %d s" % DEADLINE
    return events, inside


@pytest.fixture
def loop_and_launcher():
    loop = EventLoop()
    launcher = LocalLauncher(loop, spawners=2)
    yield loop, launcher
    launcher.close()
    loop.close()


def plain(name, **fields):
    return ProcessSpec(["/bin/sh", "-c", "exit 0", name], dict(os.environ), os.getcwd(),
                       **fields)


def test_a_burst_starts_inline_then_in_the_threads_in_launch_order(loop_and_launcher, spawns):
    loop, launcher = loop_and_launcher
    names = ["p%d" % i for i in range(INLINE_PER_TURN + 4)]
    events, inside = run(launcher, loop, [plain(name) for name in names])
    assert inside == []  # nothing is told from inside launch()
    assert [name for name, _ in spawns] == names
    where = [thread for _, thread in spawns]
    main = threading.current_thread().name
    assert where[:INLINE_PER_TURN] == [main] * INLINE_PER_TURN
    assert all(thread.startswith("qcgflow-spawner-") for thread in where[INLINE_PER_TURN:])
    started = [event[1] for event in events if event[0] == "started"]
    assert started == list(range(len(names)))
    assert sorted(event[1:] for event in events if event[0] == "exited") == [
        (i, 0) for i in range(len(names))]
    assert len(launcher) == 0


def test_a_command_with_files_or_another_directory_goes_to_a_thread(loop_and_launcher,
                                                                    spawns, tmp_path):
    loop, launcher = loop_and_launcher
    specs = [plain("out", stdout=str(tmp_path / "out")),
             ProcessSpec(["/bin/true", "cwd"], dict(os.environ), str(tmp_path))]
    events, _ = run(launcher, loop, specs)
    assert [name for name, _ in spawns] == ["out", "cwd"]
    assert all(thread.startswith("qcgflow-spawner-") for _, thread in spawns)
    assert sorted(event for event in events if event[0] == "exited") == [
        ("exited", 0, 0), ("exited", 1, 0)]


def test_one_turn_after_another_stays_in_the_loop(loop_and_launcher, spawns):
    loop, launcher = loop_and_launcher
    for turn in range(3):
        events, _ = run(launcher, loop, [plain("t%d" % turn)])
        assert ("exited", 0, 0) in events
    main = threading.current_thread().name
    assert spawns == [("t0", main), ("t1", main), ("t2", main)]


def test_a_missing_program_spawned_inline_is_an_error_from_the_loop(loop_and_launcher, spawns):
    loop, launcher = loop_and_launcher
    missing = ProcessSpec(["qcgflow-no-such-program-here"], {"PATH": "/nonexistent"},
                          os.getcwd())
    events, inside = run(launcher, loop, [missing, plain("after")])
    assert inside == []
    assert spawns[0] == ("qcgflow-no-such-program-here", threading.current_thread().name)
    errors = [event for event in events if event[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == 0
    assert "qcgflow-no-such-program-here" in errors[0][2]
    assert ("exited", 1, 0) in events and ("started", 0) not in events


def test_kill_all_reaches_a_process_created_but_not_yet_reported(loop_and_launcher):
    loop, launcher = loop_and_launcher
    ended = []

    def end(info):
        ended.append(info.exit_code)
        loop.stop()

    launcher.launch(ProcessSpec(["/bin/sleep", "60"], dict(os.environ), os.getcwd()),
                    lambda pid: None, end, lambda message: ended.append(message))
    assert len(launcher) == 1  # created inline, its start not told yet
    launcher.kill_all()
    timer = loop.call_later(DEADLINE, loop.stop)
    loop.run()
    timer.cancel()
    assert ended == [-9]


def test_a_plain_command_gets_dev_null_and_no_other_descriptor_of_ours(loop_and_launcher,
                                                                       tmp_path):
    loop, launcher = loop_and_launcher
    out = tmp_path / "fds"
    # the shell's own descriptors, read before it opens any
    script = ('fds="$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2; ls /proc/$$/fd)"; '
              'echo "$fds" > "%s"' % out)
    events, _ = run(launcher, loop,
                    [ProcessSpec(["/bin/sh", "-c", script], dict(os.environ), os.getcwd())])
    assert ("exited", 0, 0) in events
    lines = out.read_text().split()
    assert lines[:3] == [os.devnull] * 3
    null_fd = local._null[0][1]  # the service's own /dev/null (close-on-exec)
    assert null_fd > 3 and str(null_fd) not in lines[3:]
