"""``qcgflow run`` interrupted at a random point of a sweep (Ctrl-C: SIGINT to its process
group; a kill: SIGKILL to its process group, the service included, tasks surviving in
their own sessions), then ``--resume``: every output, the fan-ins included, equals a clean
run's, and no iteration the interrupted run finished runs again.

The sweeps append (``>>``) to their files, so an iteration run twice, or a file of an
earlier run appended to, shows as an extra line. The random point is printed with the seed
in every failure message.
"""

import json
import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from rerun_harness import outputs
from support.eventually import eventually
from support.processes import pid_alive
from support.results import words
from support.services import cli, start_cli
from workflows_harness import DEADLINE, write

N = 20

SHELL = """
name: interrupted
tasks:
  each:
    foreach: {range: [0, %d]}
    script: echo ${it} >> calls.txt; sleep 0.15; echo ${itval} >> each_${it}.txt; echo ${itval}
    outputs: ["each_${it}.txt"]
  shared:
    foreach: {range: [0, %d]}
    script: echo s${it} >> calls.txt; sleep 0.05; echo ${itval} >> shared.txt
    outputs: [shared.txt]
  fanin:
    script: cat each_*.txt | sort -n > fanin.txt; sort -n shared.txt > shared_fanin.txt
    after: [each, shared]
    outputs: [fanin.txt, shared_fanin.txt]
""" % (N, N)

PYTHON = """
name: interrupted_python
tasks:
  each:
    python: work:each
    foreach: {range: [0, %d]}
    outputs: ["each_${it}.txt"]
  fanin:
    python: work:fanin
    args: [%d]
    after: [each]
    outputs: [fanin.txt]
""" % (N, N)

WORK = """
import time


def each(x):
    with open("calls.txt", "a") as handle:
        handle.write("%d\\n" % x)
    time.sleep(0.15)
    with open("each_%d.txt" % x, "a") as handle:
        handle.write("%d\\n" % x)
    return x * x


def fanin(n):
    text = "".join(open("each_%d.txt" % i).read() for i in range(n))
    with open("fanin.txt", "w") as handle:
        handle.write(text)
    return len(text.split())
"""

KINDS = {"shell": SHELL, "python": PYTHON}


def _project(tmp_path: Path, kind: str) -> Path:
    write(tmp_path, "wf.yaml", KINDS[kind])
    write(tmp_path, "work.py", WORK)
    return tmp_path / "wf.yaml"


def _without_calls(wd: Path):
    found = outputs(wd)
    found.pop("calls.txt", None)
    return found


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The outputs of an uninterrupted run of each kind."""
    found = {}
    for kind in KINDS:
        base = tmp_path_factory.mktemp("clean-" + kind)
        done = cli("run", _project(base, kind), "--nodes", "2", "--wd", base / "run",
                   "--quiet", cwd=base)
        assert done.returncode == 0, done.stdout + done.stderr
        found[kind] = _without_calls(base / "run")
    return found


def _finished(wd: Path, job: str):
    """Iterations of ``job`` the service(s) of ``wd`` reported as succeeded."""
    done = set()
    for report in wd.glob(".qcgpjm-service-*/jobs.report"):
        for line in report.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            name = str(entry.get("name"))
            if name.startswith(job + ":") and entry.get("state") == "SUCCEED":
                done.add(name.split(":")[1])
    return done


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_an_interrupted_sweep_resumes_to_the_outputs_of_a_clean_run(tmp_path, kind, signum,
                                                                    clean):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    after, extra = rng.randrange(0, N), rng.uniform(0.0, 0.4)
    where = "seed %d: %s after %d finished iterations + %.2fs" % (seed, signum.name, after,
                                                                 extra)
    wd = tmp_path / "run"
    workflow = _project(tmp_path, kind)
    proc = start_cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", cwd=tmp_path)
    try:
        eventually(lambda: len(list(wd.glob("each_*.txt"))) >= after or proc.poll() is not None,
                   DEADLINE, message="%d finished iterations" % after)
        try:
            proc.wait(timeout=extra)  # the rest of the random point
        except subprocess.TimeoutExpired:
            pass  # still running: the usual case
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass  # it finished before the random point: resume must then run nothing
        proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    finished = _finished(wd, "each")
    before = Counter(words(wd / "calls.txt"))

    resumed = cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", "--resume",
                  cwd=tmp_path)
    assert resumed.returncode == 0, where + "\n" + resumed.stdout + resumed.stderr
    assert _without_calls(wd) == clean[kind], where
    again = sorted(i for i in finished if Counter(words(wd / "calls.txt"))[i] > before[i])
    assert again == [], "%s: iterations finished before the interruption ran again" % where


def test_a_killed_qcgflow_run_takes_its_service_along_and_resume_continues(tmp_path, clean):
    """SIGKILL of ``qcgflow run`` alone: its service sees the owner pipe close and stops
    with its tasks (nothing is left running, docs/security.md); --resume then continues
    what it left. (While an earlier service still lives, --resume refuses: rerun.py.)"""
    wd = tmp_path / "run"
    workflow = _project(tmp_path, "shell")
    proc = start_cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", cwd=tmp_path)
    try:
        eventually(lambda: len(list(wd.glob("each_*.txt"))) >= 3, DEADLINE,
                   message="3 iterations")
        proc.kill()
        proc.communicate(timeout=DEADLINE)
        pid = json.loads((wd / "qcgflow-run.json").read_text())["service_pid"]
        eventually(lambda: not pid_alive(pid), DEADLINE,
                   message="the service of the killed client to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    finished = _finished(wd, "each")
    before = Counter(words(wd / "calls.txt"))
    resumed = cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", "--resume",
                  cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _without_calls(wd) == clean["shell"]
    # what the stopped service interrupted runs again; what had finished does not
    again = sorted(i for i in finished if Counter(words(wd / "calls.txt"))[i] > before[i])
    assert again == []


def test_ctrl_c_twice_ends_qcgflow_run_with_130_and_no_traceback(tmp_path):
    """A second SIGINT while ``qcgflow run`` waits for its interrupted service (an impatient
    user, or ``timeout`` forwarding the signal it got) raised KeyboardInterrupt out of that
    wait: a traceback instead of the one-line ending. Now it passes the second signal on
    (the service then kills its tasks at once) and ends as the first would."""
    wd = tmp_path / "run"
    workflow = write(tmp_path, "slow.yaml", """
name: slow
tasks:
  stubborn:
    script: trap "" TERM; echo up > up.txt; sleep 60
""")
    proc = start_cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", cwd=tmp_path)
    try:
        eventually(lambda: (wd / "up.txt").exists(), DEADLINE, message="the task to start")
        proc.send_signal(signal.SIGINT)  # the service is told; its task ignores SIGTERM
        eventually(lambda: any("interrupted by" in log.read_text()
                               for log in wd.glob(".qcgpjm-service-*/service.log")),
                   DEADLINE, 0.002, "the service to be interrupted")  # (it ends soon after)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    # 130, or killed by that SIGINT when it came as the interpreter was ending (Python
    # restores the default handler then): a shell shows 130 for both
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "qcgflow run: interrupted" in err, err
    pid = json.loads((wd / "qcgflow-run.json").read_text())["service_pid"]
    eventually(lambda: not pid_alive(pid), DEADLINE, message="the service to end")


def test_a_sigkilled_service_leaves_no_finished_iteration_to_run_again(tmp_path):
    """The service alone SIGKILLed (the OOM killer, an administrator) while its journal is
    ahead of jobs.report (written in batches): ``qcgflow run`` fills the report in from
    the journal when the service is gone, so that its summary and ``--resume`` know every
    iteration that ended; none of them runs again."""
    count = 3000
    workflow = write(tmp_path, "fast.yaml", """
name: fast
tasks:
  each:
    foreach: {range: [0, %d]}
    exec: /bin/sh
    args: ["-c", "echo ${it} >> calls.txt"]
""" % count)
    wd = tmp_path / "run"
    proc = start_cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", cwd=tmp_path)
    try:
        eventually(lambda: (wd / "qcgflow-run.json").exists()
                   and len(words(wd / "calls.txt")) >= 300, DEADLINE,
                   message="300 iterations")
        pid = json.loads((wd / "qcgflow-run.json").read_text())["service_pid"]
        for _ in range(50):  # stopped where the journal is ahead of the report
            os.kill(pid, signal.SIGSTOP)
            eventually(lambda: _stopped(pid), DEADLINE, message="the service stopped")
            ended = _journaled(wd)
            if ended - _finished(wd, "each"):
                break
            os.kill(pid, signal.SIGCONT)
            eventually(lambda: len(_journaled(wd)) > len(ended), DEADLINE,
                       message="one more journaled iteration")
        assert ended - _finished(wd, "each"), "the journal was never ahead of the report"
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 1, err
    assert ("the service was killed by SIGKILL; what did not finish runs with: qcgflow run "
            "%s --wd %s --resume" % (workflow, wd)) in err
    assert ended <= _finished(wd, "each"), "the report was not filled in from the journal"
    before = Counter(words(wd / "calls.txt"))
    resumed = cli("run", workflow, "--nodes", "2", "--wd", wd, "--quiet", "--resume",
                  cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    calls = Counter(words(wd / "calls.txt"))
    assert set(calls) == {str(i) for i in range(count)}
    assert sorted(i for i in ended if calls[i] > before[i]) == []


def _stopped(pid: int) -> bool:
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


def _journaled(wd: Path):
    """Iterations of ``each`` the service's journal has as SUCCEED."""
    done = set()
    for journal in wd.glob(".qcgpjm-service-*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            if line.startswith('{"k":"end","job":"each","it":') and '"SUCCEED"' in line:
                done.add(str(json.loads(line)["it"]))
    return done
