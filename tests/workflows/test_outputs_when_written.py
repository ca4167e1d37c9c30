"""Default stdout/stderr files exist only when the task wrote to them (issue 19).

The compiler's default names (``<task>.${it}.out``, ``.qcgflow/<job>/stderr.${it}``) are
created only when written, through every launch path: a plain spawn, a task with a working
directory of its own (Popen), a warm Python worker, the zygote's forked children. Names a
workflow file or a requests file gives are created at start, as upstream does. A failed
task's stderr is still shown by the run summary.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from support.services import cli
from workflows_harness import ROOT, write

from qcgflow.runtime.launch import streams


def files_under(top):
    return sorted(os.path.relpath(os.path.join(d, f), top)
                  for d, _, names in os.walk(top) for f in names)


def is_stream(name: str) -> bool:
    """A Python task's stdout/stderr: ``.qcgflow/<job>/stdout[.<it>]`` (a mapped task, or a
    call in a file), or ``.qcgflow/<job>.stdout`` (a plain task whose call is inline in its
    job: docs/graph-api.md, the session's fast path)."""
    return re.search(r"[/.]std(out|err)(\.\d+)?$", name) is not None


def run(tmp_path, workflow, *more):
    return cli("run", workflow, "--nodes", "2", "--wd", tmp_path / "run", *more, cwd=tmp_path)


# --------------------------------------------------------------------------- streams.py

@pytest.fixture(params=["tmpfile", "named"])
def mode(request, monkeypatch):
    """Both ways: O_TMPFILE, and the fallback for file systems without it."""
    if request.param == "named":
        monkeypatch.setattr(streams, "_TMPFILE", 0)
    return request.param


def test_an_output_never_written_leaves_no_file(tmp_path, mode):
    fd, pending = streams.open_output(str(tmp_path / "a.out"), lazy=True)
    streams.finish(pending)
    assert os.listdir(tmp_path) == []


def test_a_written_output_is_at_its_name_after_finish(tmp_path, mode):
    path = tmp_path / "a.out"
    fd, pending = streams.open_output(str(path), lazy=True)
    os.write(fd, b"line 1\n" * 1000)
    streams.finish(pending)
    assert path.read_bytes() == b"line 1\n" * 1000


def test_an_existing_output_is_appended_to_as_an_eager_one_is(tmp_path, mode):
    path = tmp_path / "a.out"
    path.write_text("earlier attempt\n")
    fd, pending = streams.open_output(str(path), lazy=True)
    os.write(fd, b"this one\n")
    if pending is None:
        os.close(fd)
    else:
        streams.finish(pending)
    assert path.read_text() == "earlier attempt\nthis one\n"


def test_an_output_created_meanwhile_gets_the_bytes_appended(tmp_path):
    path = tmp_path / "a.out"
    fd, pending = streams.open_output(str(path), lazy=True)
    os.write(fd, b"late\n")
    path.write_text("someone else\n")
    streams.finish(pending)
    assert path.read_text() == "someone else\nlate\n"


def test_an_eager_output_exists_before_anything_is_written(tmp_path):
    fd, pending = streams.open_output(str(tmp_path / "a.out"), lazy=False)
    os.close(fd)
    assert (pending, os.listdir(tmp_path)) == (None, ["a.out"])


def test_a_missing_directory_is_an_error_naming_the_file(tmp_path, mode):
    with pytest.raises(FileNotFoundError, match="nowhere/a.out"):
        streams.open_output(str(tmp_path / "nowhere" / "a.out"), lazy=True)


# --------------------------------------------------------------------------- workflow files

SWEEP = """
tasks:
  t:
    script: |
      if [ $((${it} % 10)) = 3 ]; then echo "out ${it}"; fi
      if [ ${it} = 7 ]; then echo "boom ${it}" >&2; exit 3; fi
    foreach:
      i: {range: [0, 40]}
"""


def test_a_sweep_leaves_only_the_outputs_that_were_written(tmp_path):
    result = run(tmp_path, write(tmp_path, "wf.yaml", SWEEP), "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    outputs = [name for name in files_under(tmp_path / "run") if name.startswith("t.")]
    assert outputs == ["t.13.out", "t.23.out", "t.3.out", "t.33.out", "t.7.err"]
    assert (tmp_path / "run" / "t.23.out").read_text() == "out 23\n"


def test_what_a_left_process_writes_never_lands_in_a_later_iterations_output(tmp_path):
    """The service's launcher keeps empty unnamed outputs for the next iterations
    (streams.Spares), never one that a process started by an earlier one can write to."""
    workflow = write(tmp_path, "wf.yaml", """
        tasks:
          t:
            script: |
              if [ ${it} = 0 ]; then (sleep 1; echo "late from 0") & fi
              if [ ${it} = 9 ]; then echo "own 9"; fi
              sleep 0.2
            foreach:
              i: {range: [0, 10]}
        """)
    result = cli("run", workflow, "--nodes", "1", "--wd", tmp_path / "run", "--quiet",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = [name for name in files_under(tmp_path / "run") if name.startswith("t.")]
    assert outputs == ["t.9.out"]  # 1-8 ran while "late" was written: not in theirs
    assert (tmp_path / "run" / "t.9.out").read_text() == "own 9\n"


def test_the_summary_shows_the_failed_iterations_stderr(tmp_path):
    out = run(tmp_path, write(tmp_path, "wf.yaml", SWEEP), "--quiet").stdout
    assert "stderr: %s" % (tmp_path / "run" / "t.7.err") in out
    assert "| boom 7" in out


def test_a_failed_task_that_wrote_no_stderr_says_so(tmp_path):
    workflow = write(tmp_path, "wf.yaml", "tasks:\n  quiet:\n    exec: /bin/false\n")
    out = run(tmp_path, workflow, "--quiet").stdout
    assert "stderr: %s (empty: nothing was written, so no file)" % (
        tmp_path / "run" / "quiet.err") in out


def test_a_task_in_its_own_directory_keeps_what_it_wrote(tmp_path):
    # a wd of its own: the Popen path of the launcher, not posix_spawn
    workflow = write(tmp_path, "wf.yaml", """
        tasks:
          t:
            wd: sub
            script: '[ ${it} = 1 ] && echo in sub; true'
            foreach: {i: {range: [0, 3]}}
        """)
    assert run(tmp_path, workflow, "--quiet").returncode == 0
    assert [n for n in files_under(tmp_path / "run") if n.startswith("sub/")] == \
        ["sub/t.1.out"]


def test_names_the_file_gives_are_created_even_when_empty(tmp_path):
    workflow = write(tmp_path, "wf.yaml", """
        tasks:
          t:
            exec: /bin/true
            stdout: t.${it}.log
            foreach: {i: {range: [0, 3]}}
        """)
    assert run(tmp_path, workflow, "--quiet").returncode == 0
    assert [n for n in files_under(tmp_path / "run") if n.startswith("t.")] == \
        ["t.0.log", "t.1.log", "t.2.log"]


def test_a_given_stdout_keeps_stderr_lazy_in_the_compiled_job(tmp_path):
    workflow = write(tmp_path, "wf.yaml", """
        tasks:
          t:
            exec: /bin/true
            stdout: t.log
        """)
    assert cli("compile", workflow, "-o", tmp_path / "req.json").returncode == 0
    job = json.loads((tmp_path / "req.json").read_text())[0]["jobs"][0]
    assert job["attributes"]["qcgflow"]["when_written"] == ["stderr"]


def test_a_sweep_of_silent_tasks_leaves_few_files(tmp_path):
    workflow = write(tmp_path, "wf.yaml", """
        tasks:
          t:
            exec: /bin/true
            foreach: {i: {range: [0, 300]}}
        """)
    assert run(tmp_path, workflow, "--quiet").returncode == 0
    assert len(files_under(tmp_path / "run")) < 30, files_under(tmp_path / "run")


# --------------------------------------------------------------------------- graph API

SCRIPT = """
import sys
import qcgflow

@qcgflow.task
def speak(x):
    if x % 4 == 1:
        print("said", x)
    if x == 6:
        print("warned", x, file=sys.stderr)
    return x

@qcgflow.task
def fail(x):
    print("about to fail", file=sys.stderr)
    raise ValueError("no")

if __name__ == "__main__":
    print(qcgflow.run(speak.map(range(8)), wd=sys.argv[1]))
    try:
        qcgflow.run(fail.bind(1), wd=sys.argv[1] + "-fail")
    except Exception as exc:
        print(type(exc).__name__)
"""


def test_python_tasks_leave_only_the_outputs_they_wrote(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], env=env,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.stdout.splitlines() == ["[0, 1, 2, 3, 4, 5, 6, 7]", "TaskFailed(ValueError)"], \
        result.stdout + result.stderr
    streams_left = [n for n in files_under(tmp_path / "run") if is_stream(n)]
    fail_job = [n for n in files_under(tmp_path / "run-fail") if is_stream(n)]
    job = {n.split("/")[1] for n in streams_left if "speak" in n}.pop()
    base = ".qcgflow/%s/" % job
    assert [n for n in streams_left if "speak" in n] == \
        [base + "stderr.6", base + "stdout.1", base + "stdout.5"]
    assert (tmp_path / "run" / (base + "stdout.5")).read_text() == "said 5\n"
    assert len(fail_job) == 1 and fail_job[0].endswith("stderr")
    text = (tmp_path / "run-fail" / fail_job[0]).read_text()
    assert (text.splitlines()[0], text.splitlines()[-1]) == ("about to fail", "ValueError: no")


# --------------------------------------------------------------------------- requests files

def _json_tool_job(name, lazy):
    """``python -m json.tool`` (the zygote forks it a child: not a reusable module):
    iteration 0 is silent, iteration 1 fails with a message on stderr."""
    job = {"name": name, "iteration": {"values": ["in.json", "missing.json"]},
           "execution": {"exec": sys.executable,
                         "args": ["-m", "json.tool", "${itval}", name + ".${it}.json"],
                         "stdout": name + ".${it}.out", "stderr": name + ".${it}.err"}}
    if lazy:
        job["attributes"] = {"qcgflow": {"when_written": ["stdout", "stderr"]}}
    return job


def test_a_requests_file_says_which_outputs_are_created_only_when_written(tmp_path):
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "in.json").write_text("[1]")
    requests = [{"request": "submit", "jobs": [_json_tool_job("lazy", True),
                                               _json_tool_job("eager", False)]},
                {"request": "control", "command": "finishAfterAllTasksDone"}]
    (tmp_path / "req.json").write_text(json.dumps(requests))
    result = cli("service", "--file-path", tmp_path / "req.json", "--wd", wd, "--nodes", "2",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    left = [n for n in files_under(wd) if n.endswith((".out", ".err"))]
    assert left == ["eager.0.err", "eager.0.out", "eager.1.err", "eager.1.out", "lazy.1.err"]
    assert "missing.json" in (wd / "lazy.1.err").read_text()
    assert (wd / "lazy.1.err").read_text() == (wd / "eager.1.err").read_text()
    assert any(n.endswith("zygote.log") for n in files_under(wd))  # the zygote ran them


SLOW = """
import sys
import time
import qcgflow

@qcgflow.task(wt=1)
def slow(x):
    print("started", x, flush=True)
    print("warned", x, file=sys.stderr, flush=True)
    time.sleep(60)

if __name__ == "__main__":
    try:
        qcgflow.run(slow.bind(5), wd=sys.argv[1])
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_a_python_task_killed_at_its_wall_time_keeps_what_it_wrote(tmp_path):
    # the warm worker dies of the SIGTERM: it names the outputs first
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(SLOW))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], env=env,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "wall time" in result.stdout, result.stdout + result.stderr
    left = {n.rpartition("std")[2]: (tmp_path / "run" / n).read_text()
            for n in files_under(tmp_path / "run") if is_stream(n)}
    assert left == {"out": "started 5\n", "err": "warned 5\n"}


# ------------------------------------------------------------------ a worker's kept files

def task_opens(spares, path, pendings):
    """What a persistent worker does for a task's lazy stdout: (the task's fd, pending)."""
    fd, pending = streams.open_output(str(path), lazy=True, spares=spares)
    pendings.append(pending)
    return streams.task_copy(pending), pending


def test_an_empty_output_is_kept_and_serves_the_next_task_without_a_new_file(tmp_path):
    spares = streams.Spares()
    task_fd, pending = task_opens(spares, tmp_path / "a.out", [])
    inode = os.fstat(pending.fd).st_ino
    os.close(task_fd)  # the task ended
    assert spares.keep(pending)  # nobody else can write to it: kept, not finished
    task_fd, again = task_opens(spares, tmp_path / "b.out", [])
    assert os.fstat(again.fd).st_ino == inode  # the same unnamed file, no new inode
    os.write(task_fd, b"second task\n")
    os.close(task_fd)
    assert not spares.keep(again)  # written: named at the task's own path
    streams.finish(again)
    assert sorted(os.listdir(tmp_path)) == ["b.out"]
    assert (tmp_path / "b.out").read_bytes() == b"second task\n"
    spares.close()


def test_an_output_a_left_behind_process_can_write_to_is_not_kept(tmp_path):
    """A process the task started holds the task's description of the file: the kernel
    refuses the worker a write lease, the file is finished (dropped), never reused, so
    what that process writes later cannot land in a later task's output."""
    spares = streams.Spares()
    task_fd, pending = task_opens(spares, tmp_path / "a.out", [])
    inode = os.fstat(pending.fd).st_ino  # not reused while the child holds that file
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5); "
                              "print('late', flush=True)"], stdout=task_fd)
    os.close(task_fd)  # the task ended; its child did not
    try:
        assert not spares.keep(pending)
        streams.finish(pending)
        task_fd, fresh = task_opens(spares, tmp_path / "b.out", [])
        assert os.fstat(fresh.fd).st_ino != inode  # a new file for the next task
        assert child.wait(timeout=30) == 0  # it wrote "late" meanwhile
        os.close(task_fd)
        assert spares.keep(fresh)
        assert os.listdir(tmp_path) == []  # "late" went to the dropped file
    finally:
        child.kill()
        child.wait()
        spares.close()


def test_a_copy_of_the_workers_own_description_is_never_kept(tmp_path):
    """Where /proc cannot reopen the file the task gets a dup: a lease would not see the
    processes sharing it, so that file is never kept."""
    spares = streams.Spares()
    fd, pending = streams.open_output(str(tmp_path / "a.out"), lazy=True, spares=spares)
    os.close(os.dup(pending.fd))  # what _enter_files gives without spares
    assert pending.shared and not spares.keep(pending)
    streams.finish(pending)
    assert os.listdir(tmp_path) == []


def test_a_kept_file_is_not_used_for_a_directory_that_is_gone(tmp_path):
    spares = streams.Spares()
    (tmp_path / "d").mkdir()
    task_fd, pending = task_opens(spares, tmp_path / "d" / "a.out", [])
    os.close(task_fd)
    assert spares.keep(pending)
    os.rmdir(tmp_path / "d")
    with pytest.raises(FileNotFoundError) as caught:
        streams.open_output(str(tmp_path / "d" / "b.out"), lazy=True, spares=spares)
    assert "b.out" in str(caught.value)
    spares.close()


def test_at_most_a_few_files_are_kept(tmp_path):
    spares = streams.Spares()
    inodes = []
    for i in range(spares.limit + 3):
        task_fd, pending = task_opens(None, tmp_path / ("%d.out" % i), [])
        os.close(task_fd)
        inodes.append(os.fstat(pending.fd).st_ino)
        assert spares.keep(pending)
    taken = []
    for _ in range(spares.limit + 3):
        fd = spares.take(str(tmp_path))
        if fd is None:
            break
        taken.append(os.fstat(fd).st_ino)
        os.close(fd)
    assert taken == inodes[-spares.limit:]  # the newest; the older were closed


def test_without_leases_nothing_is_kept_and_outputs_work_as_before(tmp_path, monkeypatch):
    """NFS and some file systems grant no lease: every file is finished as it was before
    spares existed (dropped when empty, named when written)."""
    real = streams.fcntl.fcntl

    def no_leases(fd, command, *args):
        if command == streams._F_SETLEASE:
            raise OSError(22, "Invalid argument")
        return real(fd, command, *args)
    monkeypatch.setattr(streams.fcntl, "fcntl", no_leases)
    spares = streams.Spares()
    for name, text in (("a.out", b""), ("b.out", b"b\n"), ("c.out", b"")):
        task_fd, pending = task_opens(spares, tmp_path / name, [])
        os.write(task_fd, text)
        os.close(task_fd)
        assert not spares.keep(pending)
        streams.finish(pending)
    assert os.listdir(tmp_path) == ["b.out"]
    assert spares.take(str(tmp_path)) is None
