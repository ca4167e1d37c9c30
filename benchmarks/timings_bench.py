#!/usr/bin/env python3
"""Timings the test suite used to assert, measured here instead (issue 15, item 7).

    python benchmarks/timings_bench.py [--jobs 200] [--repeat 3] [--json OUT]

A wall-clock comparison inside a test fails on a loaded machine and proves nothing on an
idle one; the tests now assert the behaviour (tests/workers/test_workers_zygote.py: every
job of a batch ran in a warm worker; tests/integration/test_service_file_mode.py: a run
without jobs ends by itself) and this script prints the figures:

* ``empty``: wall time of ``qcgflow service --file-path <[]> --nodes 2`` (interpreter start
  included; the test once required < 1 s);
* ``warm`` / ``cold``: ``--jobs`` tiny ``python -m tiny`` jobs in one file-mode run, with warm
  workers (forked from the zygote) and with ``--disable-warm-workers``; the ratio
  cold / warm (the test once required > 2).

Each figure is the median of ``--repeat`` runs. Every run is a child process with a
timeout, in a temporary directory removed at the end.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def timed_run(base: str, name: str, requests: list, *options: str, timeout: float = 600) -> float:
    """Wall seconds of one file-mode run (fails loudly unless it exits 0)."""
    wd = os.path.join(base, name)
    os.makedirs(wd)
    with open(os.path.join(wd, "tiny.py"), "w") as handle:
        handle.write("pass\n")
    path = os.path.join(base, name + ".json")
    with open(path, "w") as handle:
        json.dump(requests, handle)
    started = time.perf_counter()
    done = subprocess.run(SERVICE + ["--file-path", path, "--nodes", "2", "--wd", wd,
                                     "--id", name, *options],
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit("%s: exit %d\n%s" % (name, done.returncode, done.stderr[-2000:]))
    return wall


def tiny_jobs(count: int) -> list:
    jobs = [{"name": "t%d" % i, "execution": {"exec": sys.executable, "args": ["-m", "tiny"]}}
            for i in range(count)]
    return [{"request": "submit", "jobs": jobs}]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="tiny jobs per run (200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (3)")
    parser.add_argument("--json", help="write the runs and medians to this file")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.repeat < 1:
        parser.error("--jobs and --repeat take a positive whole number")
    base = tempfile.mkdtemp(prefix="qcgflow-timings-")
    runs = {"empty": [], "warm": [], "cold": []}
    try:
        for index in range(args.repeat):
            runs["empty"].append(timed_run(base, "empty%d" % index, []))
            runs["warm"].append(timed_run(base, "warm%d" % index, tiny_jobs(args.jobs)))
            runs["cold"].append(timed_run(base, "cold%d" % index, tiny_jobs(args.jobs),
                                          "--disable-warm-workers"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    medians = {key: statistics.median(values) for key, values in runs.items()}
    ratio = medians["cold"] / medians["warm"]
    print("run without jobs:         %.3f s (median of %d)" % (medians["empty"], args.repeat))
    print("%d tiny python -m jobs:  warm %.2f s, cold %.2f s, cold/warm x%.2f"
          % (args.jobs, medians["warm"], medians["cold"], ratio))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"jobs": args.jobs, "runs": runs, "medians": medians,
                       "cold_over_warm": ratio}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
