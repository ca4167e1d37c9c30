"""Helpers of the fault tests (tests/faults): real signals, a real memory cgroup, a real
full file system.

* Services come from support.services (``NetService``, ``run_service``).
* ``memory_cgroup(limit_bytes)``: a context manager giving a fresh memory cgroup
  directory (cgroup v2, or the v1 memory controller), removed afterwards; the test is
  skipped, saying why, when no memory controller is writable here (needs root).
* ``small_tmpfs(path, size, inodes=None)``: mount a tmpfs of ``size`` at ``path`` for the
  test (unmounted afterwards); skipped, saying why, when mounting is not allowed.
"""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from support.eventually import eventually
from support.processes import kill, processes_under

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _memory_parent():
    """(directory under which a memory cgroup can be made, version) or (None, reason)."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return CGROUP_ROOT, 2
    v1 = CGROUP_ROOT / "memory"
    if (v1 / "memory.limit_in_bytes").exists():
        return v1, 1
    return None, "no memory controller under /sys/fs/cgroup (neither cgroup v2 with " \
                 "'memory' in cgroup.controllers nor the v1 memory hierarchy)"


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int):
    parent, version = _memory_parent()
    if parent is None:
        pytest.skip(version)
    path = parent / ("qcgflow-test-%d-%d" % (os.getpid(), time.monotonic_ns()))
    try:
        path.mkdir()
        limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
        (path / limit_file).write_text(str(limit_bytes))
        if version == 2:
            (path / "memory.swap.max").write_text("0")
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.rmdir()
        pytest.skip("cannot create a memory cgroup in %s (%s): run the tests as root on a "
                    "host whose cgroup file system is writable" % (parent, exc.strerror))
    try:
        yield path
    finally:
        procs = path / "cgroup.procs"
        eventually(lambda: not procs.read_text().split(), 10, message="the cgroup to empty")
        path.rmdir()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str, inodes: int = None):
    path.mkdir(parents=True, exist_ok=True)
    options = "size=%s" % size + (",nr_inodes=%d" % inodes if inodes else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "qcgflow-test", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): %s"
                    % result.stderr.strip())
    try:
        yield path
    finally:
        kill(processes_under(path))
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> None:
    """Fill the file system of ``directory``: data blocks first, then inodes."""
    with contextlib.suppress(OSError):
        with open(directory / "filler.bin", "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    count = 0
    while True:
        try:
            (directory / ("empty-%d" % count)).touch()
        except OSError:
            return
        count += 1
