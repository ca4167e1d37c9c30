#!/usr/bin/env python3
"""EasyVVUQ campaign wall time: ThreadPoolExecutor vs qcgflow's Pool vs the native path vs
EasyVVUQ's own QCGPJPool (QCG-PilotJob 0.13), side by side.

    VENV=${QCGFLOW_TEST_VENVS:-/tmp/qcgflow-test-venvs}/easyvvuq   # made by tests/easyvvuq
    PYTHONPATH=$PWD $VENV/bin/python benchmarks/easyvvuq_bench.py [--repeat 3] [--modes ...]
        [--pool-from OLD_CHECKOUT]

Each measurement is one run of examples/workflows/easyvvuq_pce.py (a 16-run PCE campaign,
two uniform parameters, order 3, a 0.2 s external model, 2 cores) in its own process; the
modes alternate within a repeat, so a busy host slows them alike. ``wall`` is the
campaign's ``execute(...).collate()``; ``start`` the pool's start before it (Pool: the
service and the warm-up that gives the warm workers easyvvuq; QCGPJPool: its manager);
``script`` the whole script's process (interpreter, ``import easyvvuq``, campaign, pool,
runs, analysis, shutdown). Each ``x`` column is the median over the ThreadPoolExecutor's
median. Prints a table and, with ``--json``, the raw figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "workflows", "easyvvuq_pce.py")
MODES = ("thread", "pool", "native", "qcgpj")


def measure(mode: str, cores: int, delay: float, timeout: float, repo: str = REPO) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="evq-bench-") as work:
        began = time.monotonic()
        done = subprocess.run([sys.executable, EXAMPLE, "--mode", mode, "--cores", str(cores),
                               "--delay", str(delay), "--wd", work], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
        script = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError("%s failed (exit code %d): %s" % (mode, done.returncode,
                                                              done.stderr[-2000:]))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["failed"] or report["collated"] != report["runs"]:
        raise RuntimeError("%s: runs failed: %s" % (mode, report["failed"]))
    return {"wall": report["wall"], "start": report["start"], "script": script}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pool-from", metavar="DIR",
                        help="also measure mode pool with the qcgflow of another checkout "
                             "(e.g. `git archive` of an older commit), as pool@old")
    args = parser.parse_args()
    plan = [(mode, mode, REPO) for mode in args.modes]
    if args.pool_from:
        plan.append(("pool@old", "pool", os.path.abspath(args.pool_from)))
    figures = {label: [] for label, _, _ in plan}
    for _ in range(args.repeat):
        for label, mode, repo in plan:
            figures[label].append(measure(mode, args.cores, args.delay, args.timeout, repo))
    base = statistics.median(f["wall"] for f in figures.get("thread", [])) \
        if "thread" in figures else None
    runs = figures.get("thread", [])
    base_total = statistics.median(r["start"] + r["wall"] for r in runs) if runs else None
    base_script = statistics.median(r["script"] for r in runs) if runs else None
    print("%-8s %-18s %-18s %-6s %-18s %-6s %-18s %-6s" % (
        "mode", "wall (s) each", "start (s) each", "x", "start+wall each", "x",
        "script (s) each", "x"))
    for mode, runs in figures.items():
        walls = [r["wall"] for r in runs]
        totals = [r["start"] + r["wall"] for r in runs]
        scripts = [r["script"] for r in runs]

        def ratio(values, over):
            return "%.2f" % (statistics.median(values) / over) if over else "-"

        def each(values):
            return " ".join("%.2f" % v for v in values)

        print("%-8s %-18s %-18s %-6s %-18s %-6s %-18s %-6s" % (
            mode, each(walls), each([r["start"] for r in runs]), ratio(walls, base),
            each(totals), ratio(totals, base_total), each(scripts),
            ratio(scripts, base_script)))
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
