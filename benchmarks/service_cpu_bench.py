#!/usr/bin/env python3
"""The service's CPU per iteration of a sweep of short commands (issue 19 item 4), split
into its start and its steady state, for several source trees side by side, against the
kernel's share of creating and reaping a process.

    python benchmarks/service_cpu_bench.py [--tree NAME=PATH ...] [--iterations 2000]
                                           [--repeat 3]

For every tree (default: this one), alternated per repeat:

* **W1**: ``qcgflow service --file-path`` of one iterative job of ``N x /bin/true``, one
  core each, ``--nodes 2``, as ``runtime_bench.py`` runs it. The service's CPU is its
  own user+system time, all threads, children excluded, read from ``/proc/<pid>/stat`` of
  its zombie (before it is reaped: exact, not sampled).
* **start**: the same with one iteration: what a run costs besides its iterations.
* **steady** = (W1 - start) / N: the CPU of one more iteration.

**syscall floor**: one Python loop doing only what the service must do per task in the
kernel: ``posix_spawn`` of ``/bin/true`` with the service's environment size, a pidfd in
an epoll, ``wait4``, two appended lines (journal and track files), two tasks in flight.
What a tree spends per iteration above it is its own Python.

The VM is noisy: trees alternate within each repeat, and the table gives ranges.
"""

import argparse
import json
import os
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _trees import compile_tree
from runtime_bench import W1, _proc_stat_cpu

HERE = os.path.dirname(os.path.abspath(__file__))


def requests_file(path: str, iterations: int) -> None:
    """runtime_bench.py's W1 with ``iterations`` iterations, as a requests file."""
    with open(path, "w") as handle:
        json.dump(W1(iterations).requests(os.path.dirname(path)), handle)


def service_cpu(tree: str, requests: str, workdir: str, home: str) -> tuple:
    """(service CPU seconds, wall seconds) of one file-mode run of ``requests``."""
    env = dict(os.environ, HOME=home, PYTHONPATH=tree)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "qcgflow.cli", "service", "--file-path", requests,
         "--nodes", "2", "--wd", workdir, "--report-format", "json"],
        env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # (cwd: ``python -m`` puts it first on sys.path, before PYTHONPATH's tree)
    # wait for its end without reaping it: its zombie's /proc/<pid>/stat holds the final
    # CPU time of all its threads
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - started
    cpu = _proc_stat_cpu(process.pid)
    if process.wait() != 0:
        sys.exit("the service of %s failed (exit %d)" % (tree, process.returncode))
    return cpu, wall


def check_imports(tree: str, home: str) -> None:
    """Exit unless a service started as ``service_cpu`` starts it loads ``tree``'s qcgflow
    (an editable install or the current directory would win over PYTHONPATH)."""
    found = subprocess.run(
        [sys.executable, "-c", "import qcgflow; print(qcgflow.__file__)"],
        env=dict(os.environ, HOME=home, PYTHONPATH=tree), cwd=home, capture_output=True,
        text=True, check=False).stdout.strip()
    if not os.path.realpath(found).startswith(os.path.realpath(tree) + os.sep):
        sys.exit("PYTHONPATH=%s loads qcgflow from %s, not from that tree" % (tree, found))


def syscall_floor(tasks: int, env_size: int, scratch: str) -> float:
    """CPU seconds per task of the kernel work a service must do (see the docstring)."""
    env = dict(os.environ)
    for i in range(max(0, env_size - len(env))):
        env["QCGFLOW_BENCH_%d" % i] = "x" * 24
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    journal = os.open(os.path.join(scratch, "journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    track = open(os.path.join(scratch, "track"), "a", buffering=1)
    epoll = select.epoll()
    running = {}

    def spawn():
        pid = os.posix_spawn("/bin/true", ["/bin/true"], env, file_actions=actions,
                             setsid=True)
        fd = os.pidfd_open(pid)
        epoll.register(fd, select.EPOLLIN)
        running[fd] = pid

    before = resource.getrusage(resource.RUSAGE_SELF)
    spawn()
    spawn()
    spawned = 2
    while running:
        for fd, _ in epoll.poll():
            os.wait4(running.pop(fd), 0)
            epoll.unregister(fd)
            os.close(fd)
            os.write(journal, b'{"k":"end","job":"job","it":1,"state":"SUCCEED"}\n')
            track.write('{"task": "job:1", "iteration": 1, "state": "SUCCEED"}\n')
            if spawned < tasks:
                spawn()
                spawned += 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    epoll.close()
    os.close(journal)
    track.close()
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / tasks


def span(values, scale=1.0, fmt="%.3f"):
    low, high = min(values) * scale, max(values) * scale
    return fmt % low if fmt % low == fmt % high else (fmt + "-" + fmt) % (low, high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=PATH of a source tree holding qcgflow/ (repeatable); "
                        "default: this checkout")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trees = [item.split("=", 1) for item in args.tree] or [["this", os.path.dirname(HERE)]]
    for _, path in trees:
        if not os.path.isdir(os.path.join(path, "qcgflow")):
            sys.exit("no qcgflow/ in %s" % path)
        compile_tree(path)

    scratch = tempfile.mkdtemp(prefix="qcgflow-svccpu-")
    try:
        big, one = os.path.join(scratch, "w1.json"), os.path.join(scratch, "one.json")
        requests_file(big, args.iterations)
        requests_file(one, 1)
        home = os.path.join(scratch, "home")
        os.mkdir(home)
        for _, path in trees:
            check_imports(path, home)
        results = {name: {"w1": [], "start": [], "wall": []} for name, _ in trees}
        floors = []
        for repeat in range(args.repeat):
            for name, path in trees:
                for kind, requests in (("w1", big), ("start", one)):
                    workdir = os.path.join(scratch, "wd")
                    cpu, wall = service_cpu(path, requests, workdir, home)
                    shutil.rmtree(workdir, ignore_errors=True)
                    results[name][kind].append(cpu)
                    if kind == "w1":
                        results[name]["wall"].append(wall)
                print("[repeat %d] %-8s W1 %.2f s CPU (wall %.2f s), start %.2f s CPU"
                      % (repeat + 1, name, results[name]["w1"][-1], results[name]["wall"][-1],
                         results[name]["start"][-1]), flush=True)
            floors.append(syscall_floor(args.iterations, len(os.environ) + 15, scratch))
            print("[repeat %d] syscall floor %.3f ms/task" % (repeat + 1, floors[-1] * 1e3),
                  flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    n = args.iterations
    first = trees[0][0]
    first_total = statistics.median(results[first]["w1"]) / n
    first_steady = statistics.median(
        [(w - s) / n for w, s in zip(results[first]["w1"], results[first]["start"])])
    print("\nW1 = %d x /bin/true, one iterative job, --nodes 2; service CPU in ms per "
          "iteration; %d alternated repeats (ranges)" % (n, args.repeat))
    print("%-10s %-16s %-12s %-16s %-12s %-10s" % ("tree", "W1 (start incl.)", "x " + first,
                                                    "steady", "x " + first, "start (s)"))
    for name, _ in trees:
        w1 = [value / n for value in results[name]["w1"]]
        steady = [(w - s) / n for w, s in zip(results[name]["w1"], results[name]["start"])]
        print("%-10s %-16s %-12s %-16s %-12s %-10s" % (
            name, span(w1, 1e3), "%.2fx" % (statistics.median(w1) / first_total),
            span(steady, 1e3), "%.2fx" % (statistics.median(steady) / first_steady),
            span(results[name]["start"], 1.0, "%.2f")))
    print("%-10s %-16s %-12s %-16s" % ("floor", "", "", span(floors, 1e3)))
    print("\nsteady = (W1 - start) / N. floor: the syscalls alone (posix_spawn, pidfd, epoll, "
          "wait4, two appended lines) in one Python loop.")


if __name__ == "__main__":
    main()
