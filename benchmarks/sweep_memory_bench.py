#!/usr/bin/env python3
"""Memory and files of a large /bin/true sweep: workflow file vs plain requests file.

    python benchmarks/sweep_memory_bench.py [--n 50000 100000 1000000] [--nodes 2]
        [--tmp DIR] [--only wf|req] [--timeout S] [--json OUT]

For each N, two runs in fresh directories under --tmp (the VM's disk by default):

* ``wf``: ``qcgflow run sweep.yaml --wd DIR --nodes K`` where sweep.yaml is one task
  ``exec: /bin/true`` with ``foreach: {i: {range: [0, N]}}``;
* ``req``: ``qcgflow service --file-path requests.json --wd DIR --nodes K`` with the same
  iterative job written by hand (what issue #19 calls "a plain requests file").

Peak RSS is over ALL processes of the run: the process tree of the command is sampled
every 50 ms with psutil and the sum of the RSS of its live processes is recorded; the
maximum sum is reported (tasks themselves, /bin/true, are a few hundred kB each and are
rarely caught). A child that shares its parent's address space (``posix_spawn`` uses
vfork: until its exec the child IS the service's memory) is not counted a second time;
without that check a sample taken during a spawn adds a whole copy of the service
(34 MB), which most 50,000-task runs catch at least once. Files created: every file under the run directory after the run.
"""

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_KCMP = 312  # x86_64
_KCMP_VM = 1


def same_memory(pid: int, other: int) -> bool:
    """Whether two processes share one address space (kcmp KCMP_VM): a child made by
    vfork (posix_spawn) before its exec is its parent's memory, not more of it."""
    long = ctypes.c_long  # a variadic call: every argument a full register
    return _libc.syscall(long(_SYS_KCMP), long(pid), long(other), long(_KCMP_VM), long(0),
                         long(0)) == 0


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    pids = {p.pid for p in procs}
    for p in procs:
        try:
            parent = p.ppid()
            if parent in pids and same_memory(parent, p.pid):
                continue  # a spawn in progress: counted with its parent
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def count_files(top: str) -> int:
    return sum(len(files) for _, _, files in os.walk(top))


def measure(command, cwd: str, timeout: float):
    start = time.monotonic()
    popen = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    proc = psutil.Process(popen.pid)
    peak = 0
    while popen.poll() is None:
        peak = max(peak, tree_rss(proc))
        if time.monotonic() - start > timeout:
            for p in [proc] + proc.children(recursive=True):
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            popen.wait()
            return None, peak, time.monotonic() - start, "timeout"
        time.sleep(0.05)
    err = popen.stderr.read().decode(errors="replace").strip().splitlines()
    return popen.returncode, peak, time.monotonic() - start, (err[-1] if err else "")


def qcgflow_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "qcgflow")


def run_wf(n: int, top: str, nodes: str, timeout: float):
    src = os.path.join(top, "src")
    os.makedirs(src)
    path = os.path.join(src, "sweep.yaml")
    with open(path, "w") as handle:
        handle.write("name: sweep\ntasks:\n  t:\n    exec: /bin/true\n"
                     "    foreach:\n      i: {range: [0, %d]}\n" % n)
    wd = os.path.join(top, "wd")
    result = measure([qcgflow_bin(), "run", path, "--wd", wd, "--nodes", nodes], top, timeout)
    return result + (count_files(wd),)


def run_req(n: int, top: str, nodes: str, timeout: float):
    wd = os.path.join(top, "wd")
    os.makedirs(wd)
    path = os.path.join(wd, "requests.json")
    with open(path, "w") as handle:
        json.dump([{"request": "submit", "jobs": [{
            "name": "t", "iteration": {"start": 0, "stop": n},
            "execution": {"exec": "/bin/true"}}]},
            {"request": "control", "command": "finishAfterAllTasksDone"}], handle)
    result = measure([qcgflow_bin(), "service", "--file-path", path, "--wd", wd,
                      "--nodes", nodes], top, timeout)
    return result + (count_files(wd) - 1,)  # the requests file is the input


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50000, 100000, 1000000])
    parser.add_argument("--nodes", default="2")
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--only", choices=("wf", "req"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print("%-4s %9s %6s %10s %9s %9s  %s" % ("kind", "N", "exit", "peak RSS", "wall",
                                           "files", "last stderr line"), flush=True)
    for n in args.n:
        for kind, fn in (("wf", run_wf), ("req", run_req)):
            if args.only and kind != args.only:
                continue
            top = tempfile.mkdtemp(prefix="sweepmem-", dir=args.tmp)
            try:
                code, peak, wall, err, files = fn(n, top, args.nodes, args.timeout)
            finally:
                shutil.rmtree(top, ignore_errors=True)
            rows.append({"kind": kind, "n": n, "exit": code, "peak_rss_mb": peak / 2**20,
                         "wall_s": wall, "files": files, "stderr": err})
            print("%-4s %9d %6s %7.1f MB %8.1fs %9d  %s" % (
                kind, n, code, peak / 2**20, wall, files, err[:60]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
