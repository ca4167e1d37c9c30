#!/usr/bin/env python3
"""Slurm-mode benchmark: task launch through node agents vs one ``srun`` per task, and
Slurm mode with agents vs local mode on the same virtual nodes.

Runs on the dev cluster (``bash ci/dev-cluster/dev-cluster.sh up``)::

    python benchmarks/slurm_bench.py [--tasks 2000] [--srun-tasks 100] [--repeat 3]

It takes one allocation (``salloc -N2 -w n1,n2 --exclusive``: 2 nodes x 2 CPUs) and runs
inside it, one ``qcgflow service --file-path`` run per measurement:

* ``agents``: ``--tasks`` x /bin/true (one iterative job, 1 core each) in Slurm mode;
* ``srun``: ``--srun-tasks`` x /bin/true with ``--disable-nl`` (one srun step per task);
* ``local``: the same as ``agents`` with ``--resources local --nodes n1:2,n2:2``;
* ``startup``: a 1-task run of each mode, subtracted to get the launch throughput.

Throughput = tasks / (wall - the mode's 1-task wall). Figures are medians over --repeat.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]


def _requests(tasks: int) -> list:
    return [{"request": "submit", "jobs": [{
        "name": "t", "iteration": {"stop": tasks},
        "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"exact": 1}}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}]


def _run(tasks: int, options: list) -> float:
    with tempfile.TemporaryDirectory(prefix="qcgflow-slurm-bench-") as wd:
        path = os.path.join(wd, "req.json")
        with open(path, "w") as handle:
            json.dump(_requests(tasks), handle)
        start = time.perf_counter()
        done = subprocess.run(SERVICE + ["--file-path", path, "--wd", wd, "--id", "b"] +
                              options, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit("service failed (%s): %s" % (options, done.stderr.strip()))
        with open(os.path.join(wd, ".qcgpjm-service-b", "jobs.report")) as report:
            states = [json.loads(line)["state"] for line in report]
        if states.count("SUCCEED") != tasks + 1:  # iterations + the job itself
            sys.exit("not every task succeeded (%s)" % options)
        return wall


def _median(values):
    return statistics.median(values)


def inside(args) -> None:
    modes = {
        "agents": ([], args.tasks),
        "srun": (["--disable-nl"], args.srun_tasks),
        "local": (["--resources", "local", "--nodes", "n1:2,n2:2"], args.tasks),
    }
    results = {}
    for name, (options, tasks) in modes.items():
        startup = _median([_run(1, options) for _ in range(args.repeat)])
        wall = _median([_run(tasks, options) for _ in range(args.repeat)])
        rate = (tasks - 1) / max(1e-9, wall - startup)
        results[name] = {"tasks": tasks, "wall": wall, "startup": startup, "rate": rate}
        print("%-7s %5d tasks  wall %7.3f s  one-task run %6.3f s  launch rate %8.1f tasks/s"
              % (name, tasks, wall, startup, rate), flush=True)
    print("agents vs one srun per task: %.1fx the launch rate (goal >= 10x)"
          % (results["agents"]["rate"] / results["srun"]["rate"]))
    print("agents vs local mode, %d tasks: %.2fx the wall (goal <= 1.5x)"
          % (args.tasks, results["agents"]["wall"] / results["local"]["wall"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--srun-tasks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    command = ["salloc", "-N2", "-w", "n1,n2", "--exclusive", sys.executable,
               os.path.abspath(__file__), "--inside", "--tasks", str(args.tasks),
               "--srun-tasks", str(args.srun_tasks), "--repeat", str(args.repeat)]
    if args.json:
        command += ["--json", os.path.abspath(args.json)]
    sys.exit(subprocess.call(command))


if __name__ == "__main__":
    main()
