"""LocalLauncher creates processes in the order they were launched, as upstream does (one
at a time), even when the spawner thread holding the first request is delayed: upstream's
own test_resume expects iteration 3 of equal iterations not to end before iteration 2."""

import os
import threading

from qcgflow.runtime.eventloop import EventLoop
from qcgflow.runtime.launch import local
from qcgflow.runtime.launch.local import LocalLauncher, ProcessSpec

from support.eventually import eventually

DEADLINE = 30


def test_a_delayed_first_spawn_is_still_created_first(tmp_path, monkeypatch):
    real_spawn = local._spawn
    second_spawning = threading.Event()

    def spawn(spec, cwd, spares=None):
        if spec.argv[-1] == "first":
            # hold the first request until the other thread has taken the second one,
            # then give it time to spawn it: without turns it would, now (a bounded wait
            # for something that must NOT happen)
            eventually(launcher._requests.empty, DEADLINE, 0.005, "the second request taken")
            second_spawning.wait(0.5)
        else:
            second_spawning.set()
        return real_spawn(spec, cwd, spares)

    monkeypatch.setattr(local, "_spawn", spawn)
    loop = EventLoop()
    launcher = LocalLauncher(loop, spawners=2)
    started, ended = [], []

    def end(what):
        ended.append(what)
        if len(ended) == 2:
            loop.stop()

    for name in ("first", "second"):
        spec = ProcessSpec(["/bin/echo", name], dict(os.environ), str(tmp_path),
                           stdout=str(tmp_path / name))
        launcher.launch(spec, lambda pid, n=name: started.append(n),
                        lambda info, n=name: end(n), lambda message, n=name: end((n, message)))
    loop.call_later(DEADLINE, loop.stop)
    try:
        loop.run()
    finally:
        launcher.close()
    assert (started, sorted(ended)) == (["first", "second"], ["first", "second"])
