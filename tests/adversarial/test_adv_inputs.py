"""Issue 17, class 4: inputs that would exhaust the machine get one-line errors, quickly.

Endless files (``/dev/zero``, ``/dev/urandom``, a symlink to them), FIFOs without a writer
or with a silent one, files above the size limit, directories, YAML alias bombs and
recursive aliases, self-containing lists and dicts given to ``qcgflow.run``; for the three
ways in: ``qcgflow run FILE``, ``qcgflow service --file-path FILE``, ``qcgflow compile``.
Every case has a deadline and a memory ceiling (the child's maximum resident set size).
"""

import json
import os
import subprocess
import tempfile
import threading
import time

import pytest

import qcgflow
from qcgflow.errors import GraphError, RunError
from qcgflow.runtime import inputfile
from adv_proc_harness import PY
from support.eventually import WaitTimeout, eventually
from support.processes import child_env

DEADLINE = 30.0
MAX_RSS_MB = 300  # a refused input must not have been loaded: far below what it would need


def _cli(args, cwd, timeout=DEADLINE):
    """Run ``qcgflow ARGS``; the result has ``seconds`` and ``peak_mb``: the largest
    resident set of that process and of the descendants it waited for (its own wait4)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([PY, "-m", "qcgflow.cli"] + [str(a) for a in args],
                                cwd=str(cwd), env=child_env(), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)

        def ended():
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            return (status, usage) if pid else None

        try:
            status, usage = eventually(ended, timeout, message="qcgflow %s to end" % args[0])
        except WaitTimeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(proc.args, proc.returncode,
                                           out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))
    done.seconds = time.monotonic() - start
    done.peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return done


def _one_line_error(done, *words):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert done.peak_mb < MAX_RSS_MB, "%.0f MB used" % done.peak_mb
    return lines[0]


def _bomb(levels=9, width=9):
    lines = ['a0: &a0 [%s]' % ", ".join(['"lol"'] * width)]
    for i in range(1, levels + 1):
        lines.append("a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * width)))
    return "name: bomb\n" + "\n".join(lines) + "\ntasks: {}\n"


def _merge_bomb(levels=30):
    lines = ["m0: &m0 {k0: 1, k1: 2}"]
    for i in range(1, levels + 1):
        lines.append("m%d: &m%d {<<: [*m%d, *m%d], x%d: 1}" % (i, i, i - 1, i - 1, i))
    return "name: merge\n" + "\n".join(lines) + "\ntasks: {}\n"


ENDLESS = ["/dev/zero", "/dev/urandom"]


@pytest.mark.parametrize("target", ENDLESS)
@pytest.mark.parametrize("name", ["wf.yaml", "wf.json", "wf.yml"])
def test_workflow_file_linked_to_an_endless_device(tmp_path, target, name):
    (tmp_path / name).symlink_to(target)
    done = _cli(["run", name, "--wd", tmp_path / "run"], tmp_path)
    _one_line_error(done, name, "character device", "refused")


@pytest.mark.parametrize("target", ENDLESS)
def test_requests_file_linked_to_an_endless_device(tmp_path, target):
    (tmp_path / "req.json").symlink_to(target)
    done = _cli(["service", "--file-path", "req.json", "--wd", tmp_path / "wd"], tmp_path)
    _one_line_error(done, "req.json", "character device")


def test_compile_of_an_endless_workflow(tmp_path):
    (tmp_path / "wf.yaml").symlink_to("/dev/zero")
    done = _cli(["compile", "wf.yaml"], tmp_path)
    _one_line_error(done, "wf.yaml", "character device")


@pytest.mark.parametrize("how", ["run", "service", "compile"])
def test_fifo_without_a_writer_does_not_block(tmp_path, how):
    fifo = tmp_path / ("in.json" if how == "service" else "wf.yaml")
    os.mkfifo(fifo)
    args = {"run": ["run", fifo.name, "--wd", tmp_path / "run"],
            "service": ["service", "--file-path", fifo.name, "--wd", tmp_path / "wd"],
            "compile": ["compile", fifo.name]}[how]
    done = _cli(args, tmp_path, timeout=DEADLINE)
    _one_line_error(done, fifo.name, "no writer")
    assert done.seconds < 15


def test_fifo_with_a_writer_is_read(tmp_path):
    """A FIFO is not refused as such: a requests file from a pipe with a writer works."""
    fifo = tmp_path / "in.json"
    os.mkfifo(fifo)
    body = json.dumps([{"request": "submit", "jobs": [
        {"name": "a", "execution": {"exec": "/bin/true"}}]}]).encode()

    def write():
        fd = os.open(fifo, os.O_WRONLY)  # blocks until the service opens it
        os.write(fd, body)
        os.close(fd)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    # the writer must be there before the service opens (else: "no writer")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        done = _cli(["service", "--file-path", fifo.name, "--wd", tmp_path / "wd", "--nodes",
                     "1"], tmp_path)
    finally:
        os.close(fd)
    writer.join(5)
    assert done.returncode == 0, done.stderr


def test_silent_pipe_times_out(tmp_path):
    read_fd, write_fd = os.pipe()
    try:
        start = time.monotonic()
        with pytest.raises(inputfile.InputFileError, match="sent nothing for"):
            inputfile.read_bytes("/proc/self/fd/%d" % read_fd, 1000, pipe_idle=0.5)
        assert time.monotonic() - start < 5
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_pipe_larger_than_the_limit_is_cut(tmp_path):
    read_fd, write_fd = os.pipe()
    stop = threading.Event()

    def flood():
        try:
            while not stop.is_set():
                os.write(write_fd, b"x" * 4096)
        except OSError:
            pass
    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    try:
        with pytest.raises(inputfile.InputFileError, match="larger than the limit"):
            inputfile.read_bytes("/proc/self/fd/%d" % read_fd, 100_000)
    finally:
        stop.set()
        os.close(read_fd)
        writer.join(5)
        os.close(write_fd)


def test_regular_file_above_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    with open(path, "wb") as handle:
        handle.truncate(inputfile.REQUESTS_LIMIT + 1)  # sparse: no disk used
    done = _cli(["service", "--file-path", path.name, "--wd", tmp_path / "wd"], tmp_path)
    _one_line_error(done, "big.json", "larger than the limit of 256 MiB")
    wf = tmp_path / "big.yaml"
    with open(wf, "wb") as handle:
        handle.truncate(inputfile.WORKFLOW_LIMIT + 1)
    done = _cli(["run", wf.name, "--wd", tmp_path / "run"], tmp_path)
    _one_line_error(done, "big.yaml", "larger than the limit of 64 MiB")


@pytest.mark.parametrize("what", ["directory", "socket"])
def test_other_kinds_of_file_are_refused(tmp_path, what):
    path = tmp_path / "x.yaml"
    if what == "directory":
        path.mkdir()
    else:
        import socket
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    done = _cli(["run", path.name, "--wd", tmp_path / "run"], tmp_path)
    _one_line_error(done, "x.yaml")


@pytest.mark.parametrize("text, words", [
    (_bomb(), ["expands to more than", "aliases"]),
    (_bomb(levels=7, width=10), ["expands to more than"]),
    (_merge_bomb(), ["expands to more than"]),
    ("name: rec\ntasks: &t\n  a: *t\n", ["contains it"]),
    ("name: rec\nlist: &l [1, *l]\ntasks: {}\n", ["contains it"]),
])
def test_yaml_alias_bombs_are_refused_before_expansion(tmp_path, text, words):
    (tmp_path / "wf.yaml").write_text(text)
    done = _cli(["run", "wf.yaml", "--wd", tmp_path / "run"], tmp_path)
    _one_line_error(done, "wf.yaml", *words)
    assert done.seconds < 15


def test_small_aliases_still_work(tmp_path):
    (tmp_path / "wf.yaml").write_text(
        "name: ok\ndefaults: &d {cores: 1}\ntasks:\n"
        "  a: {exec: /bin/echo, args: [hi], <<: *d}\n"
        "  b: {exec: /bin/echo, args: [there], after: [a], <<: *d}\n")
    done = _cli(["run", "wf.yaml", "--wd", tmp_path / "run", "--nodes", "1", "--quiet"],
                tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr


@qcgflow.task
def length(value):
    return len(value)


def _cyclic_list():
    items = [length.bind([1])]
    items.append(items)
    return items


def _cyclic_dict():
    d = {"r": length.bind([1])}
    d["self"] = d
    return d


def _cyclic_argument():
    a = [1]
    a.append(a)
    return length.bind(a)


def _deep_cycle():
    a = [[[]]]
    a[0][0].append(a)
    return [length.bind(a)]


@pytest.mark.parametrize("make", [_cyclic_list, _cyclic_dict, _deep_cycle])
def test_self_containing_targets_are_refused_at_once(tmp_path, make):
    result = {}

    def run():
        try:
            qcgflow.run(make(), nodes=1, wd=str(tmp_path / "run"), timeout=20)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "qcgflow.run on a cyclic target did not return"
    assert isinstance(result.get("error"), GraphError), result
    assert "contains itself" in str(result["error"])
    assert "\n" not in str(result["error"])


def test_cyclic_argument_is_refused(tmp_path):
    with pytest.raises(GraphError, match="contains itself"):
        qcgflow.run(_cyclic_argument(), nodes=1, wd=str(tmp_path / "run"), timeout=20)


def test_plain_call_with_a_cyclic_argument_still_works():
    a = [1]
    a.append(a)
    assert length(a) == 2


def test_shared_lists_are_not_cycles(tmp_path):
    shared = [1, 2]
    assert qcgflow.run([length.bind(shared), length.bind(shared), [shared]], nodes=1,
                       wd=str(tmp_path / "run"), timeout=60) == [2, 2, [shared]]


def test_timeout_fires_while_the_service_starts(tmp_path):
    start = time.monotonic()
    with pytest.raises(RunError, match="timeout"):
        qcgflow.run(length.bind([1]), nodes=1, wd=str(tmp_path / "run"), timeout=0.05)
    assert time.monotonic() - start < 10
