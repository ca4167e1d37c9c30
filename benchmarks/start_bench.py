#!/usr/bin/env python3
"""What starting and ending costs: one tiny task, whole process, side by side, alternated.

    python benchmarks/start_bench.py [--repeat 5] [--before SRC] [--only ...]

Workloads (each is one fresh process, timed from its spawn to its exit):

- ``SVC``: a file-mode service run of ONE ``/bin/true`` job (``--file-path``, ``--nodes 2``):
  ``qcgflow service`` (this tree; ``before``: the tree ``SRC``, e.g. a ``git archive`` of an
  earlier commit) and upstream's ``qcg-pm-service`` (QCG-PilotJob 0.14.2 in a side venv).
  The floor is ``python -c`` starting ``/bin/true`` once.
- ``SESSION``: a script that starts a session, gets one trivial task's result and shuts
  down: ``qcgflow.init()`` / ``.remote`` / ``get`` / ``shutdown()`` beside ``ray.init()`` /
  ``.remote`` / ``ray.get`` / ``ray.shutdown()`` (Ray in a side venv). The floor is
  ``python -c`` starting one more Python interpreter and reading the value it prints.

It prints median [min-max] per system and the ratio to the floor. Nothing is written in the
repository; run directories go under ``--dir`` (default: a new temporary directory).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _trees import compile_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM = "/tmp/qcgflow-test-venvs/qcgpj-0.14.2/bin/qcg-pm-service"
RAY_PYTHON = "/tmp/qcgflow-bench/venv-ray/bin/python"
JOB = {"name": "one", "execution": {"exec": "/bin/true"},
       "resources": {"numCores": {"exact": 1}}}
REQUESTS = [{"request": "submit", "jobs": [JOB]},
            {"request": "control", "command": "finishAfterAllTasksDone"}]

SVC_FLOOR = "import subprocess; subprocess.run(['/bin/true'], check=True)"
SESSION_FLOOR = ("import subprocess, sys\n"
                 "out = subprocess.run([sys.executable, '-c', 'print(1)'], check=True,\n"
                 "                     capture_output=True, text=True).stdout\n"
                 "assert out.strip() == '1'\n")
QCGFLOW_SESSION = ("import qcgflow\n"
                   "@qcgflow.task\ndef f(x):\n    return x\n"
                   "qcgflow.init(wd=%r)\n"
                   "assert qcgflow.get(f.remote(1)) == 1\n"
                   "qcgflow.shutdown()\n")
RAY_SESSION = ("import ray\n"
               "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
               "@ray.remote\ndef f(x):\n    return x\n"
               "assert ray.get(f.remote(1)) == 1\n"
               "ray.shutdown()\n")


def _timed(argv, env=None, cwd=None):
    """Wall seconds of one process from spawn to exit (None when it failed)."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print("  failed (%d): %s: %s" % (done.returncode, " ".join(argv[:4]),
                                         done.stderr.strip()[-300:]), file=sys.stderr)
        return None
    return wall


def _tree_env(src):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _svc_run(system, rundir, src):
    wd = os.path.join(rundir, "wd")
    os.makedirs(wd)
    reqs = os.path.join(rundir, "reqs.json")
    with open(reqs, "w", encoding="utf-8") as handle:
        json.dump(REQUESTS, handle)
    common = ["--file-path", reqs, "--nodes", "2", "--wd", wd]
    if system == "upstream":
        return _timed([UPSTREAM] + common, cwd=rundir)
    return _timed([sys.executable, "-m", "qcgflow.cli", "service"] + common,
                  env=_tree_env(src), cwd=rundir)


def _session_run(system, rundir, src):
    if system == "ray":
        return _timed([RAY_PYTHON, "-c", RAY_SESSION], cwd=rundir)
    code = QCGFLOW_SESSION % os.path.join(rundir, "wd")
    return _timed([sys.executable, "-c", code], env=_tree_env(src), cwd=rundir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", metavar="SRC", help="also run this source tree")
    parser.add_argument("--only", default="floor,qcgflow,before,upstream,ray",
                        help="systems (comma-separated)")
    parser.add_argument("--dir", help="parent of the run directories")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    if not args.before:
        wanted.discard("before")
    if "upstream" in wanted and not os.path.exists(UPSTREAM):
        print("no upstream service at %s: python3 -m venv %s && %s/pip install "
              "qcg-pilotjob==0.14.2 (skipped)" % (UPSTREAM, os.path.dirname(os.path.dirname(
                  UPSTREAM)), os.path.dirname(UPSTREAM)))
        wanted.discard("upstream")
    if "ray" in wanted and not os.path.exists(RAY_PYTHON):
        print("no Ray interpreter at %s: python3 -m venv /tmp/qcgflow-bench/venv-ray && "
              "/tmp/qcgflow-bench/venv-ray/bin/pip install ray (skipped)" % RAY_PYTHON)
        wanted.discard("ray")
    compile_tree(REPO)  # .pyc files on both sides (_trees.py): starts are timed here
    if args.before:
        compile_tree(os.path.abspath(args.before))
    parent = args.dir or tempfile.mkdtemp(prefix="start-bench-")
    plans = {
        "SVC": [("floor", lambda d: _timed([sys.executable, "-c", SVC_FLOOR])),
                ("qcgflow", lambda d: _svc_run("qcgflow", d, REPO)),
                ("before", lambda d: _svc_run("qcgflow", d, args.before)),
                ("upstream", lambda d: _svc_run("upstream", d, None))],
        "SESSION": [("floor", lambda d: _timed([sys.executable, "-c", SESSION_FLOOR])),
                    ("qcgflow", lambda d: _session_run("qcgflow", d, REPO)),
                    ("before", lambda d: _session_run("qcgflow", d, args.before)),
                    ("ray", lambda d: _session_run("ray", d, None))],
    }
    times = {}
    for rep in range(args.repeat):
        for workload, systems in plans.items():
            order = systems if rep % 2 == 0 else list(reversed(systems))  # alternated
            for system, run in order:
                if system not in wanted:
                    continue
                rundir = tempfile.mkdtemp(prefix="%s-%s-" % (workload, system), dir=parent)
                wall = run(rundir)
                shutil.rmtree(rundir, ignore_errors=True)
                if wall is not None:
                    times.setdefault((workload, system), []).append(wall)
    print("\n%-8s %-9s %-26s %s" % ("workload", "system", "wall [s] median [min-max]",
                                    "x floor"))
    for workload, systems in plans.items():
        floor = times.get((workload, "floor"))
        for system, _ in systems:
            got = times.get((workload, system))
            if not got:
                continue
            median = statistics.median(got)
            ratio = "%.1fx" % (median / statistics.median(floor)) if floor else "-"
            print("%-8s %-9s %.3f [%.3f-%.3f]       %s" % (workload, system, median,
                                                           min(got), max(got), ratio))
    if not args.dir:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
