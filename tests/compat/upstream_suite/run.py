"""Run QCG-PilotJob's own test suite, unmodified, against qcgflow and print a table.

    python tests/compat/upstream_suite/run.py [--mode local|slurm|both] [-j 2] [--json OUT]

Upstream's test files (``$QCGFLOW_UPSTREAM_SUITE`` or ``<repo>/../shared/upstream-suite``,
never copied into the project) run with ``shim/`` first on ``PYTHONPATH``: its ``qcg.pilotjob``
package is qcgflow's API under upstream's names (see ``shim/qcg/pilotjob/__init__.py``).

- ``local``: the tests that need no allocation, one pytest per file, ``-j`` files at a time;
- ``slurm``: the tests that need a Slurm allocation of >= 2 nodes, inside one
  ``salloc -N2 -n4`` on the dev cluster (SLURM_CONF from the environment), files in turn.

Each pytest runs in its own fresh directory with its own ``--basetemp``; upstream's shared
``/data`` is a fresh directory too (every virtual node of the dev cluster is this host). Each
file runs under a child-subreaper wrapper, so whatever a test leaves running (a service, an
agent) is found and killed when its file ends, and counted as a failure of the run.

Exit status: 0 when every applicable test passed or failed as expected (``shim/
qcgflow_upstream_expected.py``); 1 on any other failure, an unexpected pass, a file pytest
could not run, or a leftover process; 0 with a "skipped" line when the suite is absent
(``--require`` makes that an error).
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim"
REPO = HERE.parents[2]
INI = HERE / "upstream.ini"

CORE = "core/qcg/pilotjob/tests/"
# longest first, so two workers finish together
LOCAL_FILES = [CORE + "test_api.py", CORE + "test_fileinterface.py", CORE + "test_governor.py",
               CORE + "test_resume.py", CORE + "test_localmanager.py", CORE + "test_requests.py",
               "executor_api/qcg/pilotjob/tests/test_qcgpj_executor.py"]
SLURM_FILES = [CORE + "test_slurmenv.py", CORE + "test_slurmenv_api.py", CORE + "test_api.py",
               CORE + "test_governor.py"]
TEST_TIMEOUT = 240          # seconds per test (pytest-timeout): a hang is a failure, not a stall
FILE_TIMEOUT = 1500         # seconds per file, a last resort
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 10         # seconds a file's processes get to end by themselves
ONLY = [part for part in os.environ.get("QCGFLOW_UPSTREAM_ONLY", "").split(",") if part]


def suite_root() -> Path:
    """``$QCGFLOW_UPSTREAM_SUITE``, else ``shared/upstream-suite`` beside the clone (CI), else
    beside an ancestor of it (a git worktree nested one level deeper)."""
    env = os.environ.get("QCGFLOW_UPSTREAM_SUITE")
    if env:
        return Path(env)
    for parent in REPO.parents:
        candidate = parent / "shared" / "upstream-suite"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "upstream-suite"


# ---------------------------------------------------------------- one file (subreaper) ----

def _descendants():
    import psutil
    return psutil.Process().children(recursive=True)


def run_one(args) -> int:
    """Run pytest on one file as our child; then kill and report anything left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    suite = suite_root()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SHIM)] + ([env["PYTHONPATH"]] if env.get(
        "PYTHONPATH") else []))
    env.update(PYTHONDONTWRITEBYTECODE="1", QCGFLOW_UPSTREAM_SUITE=str(suite),
               QCGFLOW_UPSTREAM_MODE=args.mode, QCGFLOW_UPSTREAM_RESULTS=args.results,
               QCGFLOW_UPSTREAM_SHARED=args.shared)
    cmd = [sys.executable, "-m", "pytest", "-c", str(INI), "--rootdir", str(suite),
           "-o", "timeout=%d" % TEST_TIMEOUT, "--basetemp", args.basetemp, "-q", "-rfE",
           str(suite / args.one)]
    with open(args.log, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=args.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(FILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            log.write(b"\n[run.py] file timeout: pytest killed\n")
    import psutil
    # what is still shutting down (node agents noticing their manager is gone) may take a
    # few seconds; what outlives LEFTOVER_GRACE is a leftover: named, killed, reported
    _gone, left = psutil.wait_procs(_descendants(), timeout=LEFTOVER_GRACE)
    left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    named = []
    for child in left:
        try:
            named.append("%d %s" % (child.pid, " ".join(child.cmdline())[:120]))
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)
    _descendants() and psutil.wait_procs(_descendants(), timeout=1)  # reap zombies
    with open(args.results, "a", encoding="utf-8") as out:
        out.write(json.dumps({"file": args.one, "pytest_exit": code,
                              "leftover": named}) + "\n")
    return 0


# ------------------------------------------------------------------------ a mode ----------

def run_mode(mode: str, workers: int, work: Path) -> list:
    """Run the files of a mode; returns the JSON entries of every file."""
    files = [f for f in (LOCAL_FILES if mode == "local" else SLURM_FILES)
             if not ONLY or any(part in f for part in ONLY)]
    shared = work / ("shared-" + mode)
    shared.mkdir(parents=True, exist_ok=True)

    def one(path: str) -> list:
        name = Path(path).stem
        base = work / mode / name
        (base / "cwd").mkdir(parents=True, exist_ok=True)
        results = base / "results.jsonl"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", path, "--mode", mode,
               "--results", str(results), "--shared", str(shared), "--cwd", str(base / "cwd"),
               "--basetemp", str(base / "tmp"), "--log", str(base / "pytest.log")]
        started = time.monotonic()
        subprocess.call(cmd)
        entries = [json.loads(line) for line in results.read_text().splitlines()] \
            if results.exists() else []
        for entry in entries:
            entry.setdefault("mode", mode)
        print("  %-28s %-5s %5.0f s  (log: %s)" % (name, mode, time.monotonic() - started,
                                                   base / "pytest.log"), flush=True)
        return entries

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [e for chunk in pool.map(one, files) for e in chunk]


def run_slurm(args, work: Path) -> list:
    """Re-run this script with ``--mode slurm-inside`` in one ``salloc -N2 -n4``."""
    if not shutil.which("salloc"):
        print("slurm: skipped (no salloc; start the dev cluster: bash "
              "ci/dev-cluster/dev-cluster.sh up, then eval its env)")
        return []
    out = work / "slurm.json"
    # --immediate: a busy cluster fails the stage after 10 minutes instead of blocking CI
    cmd = ["salloc", "-N2", "-n4", "--time=30", "--immediate=600", sys.executable,
           str(Path(__file__).resolve()), "--mode", "slurm-inside", "--json", str(out),
           "--work", str(work)]
    code = subprocess.call(cmd)
    if not out.exists():
        print("slurm: the allocation did not run the suite (salloc exit %s)" % code)
        return [{"file": "(salloc)", "mode": "slurm", "pytest_exit": code or 1,
                 "leftover": []}]
    return json.loads(out.read_text())


# ------------------------------------------------------------------------ the table -------

OUTCOMES = ("passed", "failed", "skipped", "expected failure")


def table(entries: list) -> tuple:
    """Print the table; returns (ok, text)."""
    lines = ["%-6s %10s %7s %7s %8s %9s %15s" % (
        "mode", "applicable", "passed", "failed", "skipped", "expected", "not applicable")]
    ok = True
    problems = []
    for mode in ("local", "slurm"):
        tests = [e for e in entries if e.get("mode") == mode and "test" in e]
        files = [e for e in entries if e.get("mode") == mode and "file" in e]
        if not tests and not files:
            continue
        counts = {o: sum(1 for e in tests if e["outcome"] == o) for o in OUTCOMES}
        na = sum(1 for e in tests if e["outcome"] == "not applicable")
        lines.append("%-6s %10d %7d %7d %8d %9d %15d" % (
            mode, sum(counts.values()), counts["passed"], counts["failed"], counts["skipped"],
            counts["expected failure"], na))
        for e in tests:
            if e["outcome"] == "failed":
                problems.append("  FAILED  [%s] %s: %s" % (mode, e["test"], e.get("message", "")))
        for e in files:
            if e.get("pytest_exit") not in (0, 1):  # 1 = some test failed (listed above)
                problems.append("  ERROR   [%s] %s: pytest exit %s" % (
                    mode, e["file"], e.get("pytest_exit")))
            if e.get("leftover"):
                problems.append("  LEFTOVER [%s] %s: %d processes killed: %s" % (
                    mode, e["file"], len(e["leftover"]), "; ".join(e["leftover"][:3])))
    ok = not problems
    text = "\n".join(lines + (["", "problems:"] + problems if problems else []))
    return ok, text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="local",
                        choices=["local", "slurm", "both", "slurm-inside"])
    parser.add_argument("-j", "--workers", type=int, default=2)
    parser.add_argument("--json", help="write every outcome to this file")
    parser.add_argument("--require", action="store_true",
                        help="fail (not skip) when the upstream suite is absent")
    parser.add_argument("--only", help="comma-separated parts of file names to run (default: "
                        "all); also $QCGFLOW_UPSTREAM_ONLY")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    for hidden in ("--one", "--results", "--shared", "--cwd", "--basetemp", "--log"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return run_one(args)
    if args.only:
        ONLY[:] = args.only.split(",")
        os.environ["QCGFLOW_UPSTREAM_ONLY"] = args.only  # for the salloc re-run

    suite = suite_root()
    if not (suite / CORE).is_dir():
        print("upstream suite: skipped, %s is absent (QCG-PilotJob's tests are expected in "
              "../shared/upstream-suite beside the clone, or in $QCGFLOW_UPSTREAM_SUITE)" % suite)
        return 1 if args.require else 0

    if args.mode == "slurm-inside":
        entries = run_mode("slurm", 1, Path(args.work))
        Path(args.json).write_text(json.dumps(entries))
        return 0

    work = Path(tempfile.mkdtemp(prefix="qcgflow-upstream-suite."))
    started = time.monotonic()
    entries = []
    try:
        if args.mode in ("local", "both"):
            entries += run_mode("local", args.workers, work)
        if args.mode in ("slurm", "both"):
            entries += run_slurm(args, work)
        ok, text = table(entries)
        print("\nQCG-PilotJob 0.14.x test suite (%s) against qcgflow, %.0f s:\n%s" % (
            suite, time.monotonic() - started, text))
        if args.json:
            Path(args.json).write_text(json.dumps(entries, indent=1))
        return 0 if ok else 1
    finally:
        if args.keep:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
