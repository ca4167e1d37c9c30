#!/usr/bin/env python3
"""EasyVVUQ campaign wall time: ThreadPoolExecutor vs qcgflow's Pool vs the native path vs
EasyVVUQ's own QCGPJPool (QCG-PilotJob 0.13), side by side.

    VENV=${QCGFLOW_TEST_VENVS:-/tmp/qcgflow-test-venvs}/easyvvuq   # made by tests/easyvvuq
    PYTHONPATH=$PWD $VENV/bin/python benchmarks/easyvvuq_bench.py [--repeat 3] [--modes ...]

Each measurement is one run of examples/workflows/easyvvuq_pce.py (a 16-run PCE campaign,
two uniform parameters, order 3, a 0.2 s external model, 2 cores) in its own process; the
modes alternate within a repeat, so a busy host slows them alike. ``wall`` is the
campaign's ``execute(...).collate()``; ``start`` the pool's start before it (Pool: the
service and the warm-up that teaches the warm worker easyvvuq; QCGPJPool: its manager).
Prints a table and, with ``--json``, the raw figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "workflows", "easyvvuq_pce.py")
MODES = ("thread", "pool", "native", "qcgpj")


def measure(mode: str, cores: int, delay: float, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="evq-bench-") as work:
        done = subprocess.run([sys.executable, EXAMPLE, "--mode", mode, "--cores", str(cores),
                               "--delay", str(delay), "--wd", work], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("%s failed (exit code %d): %s" % (mode, done.returncode,
                                                              done.stderr[-2000:]))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["failed"] or report["collated"] != report["runs"]:
        raise RuntimeError("%s: runs failed: %s" % (mode, report["failed"]))
    return {"wall": report["wall"], "start": report["start"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = {mode: [] for mode in args.modes}
    for _ in range(args.repeat):
        for mode in args.modes:
            figures[mode].append(measure(mode, args.cores, args.delay, args.timeout))
    base = statistics.median(f["wall"] for f in figures.get("thread", [])) \
        if "thread" in figures else None
    print("%-8s %-22s %-10s %-22s" % ("mode", "wall (s) each", "x thread", "start (s) each"))
    for mode, runs in figures.items():
        walls = [r["wall"] for r in runs]
        ratio = "%.2f" % (statistics.median(walls) / base) if base else "-"
        print("%-8s %-22s %-10s %-22s" % (mode, " ".join("%.2f" % w for w in walls), ratio,
                                          " ".join("%.2f" % r["start"] for r in runs)))
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
