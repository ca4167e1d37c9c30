#!/usr/bin/env python3
"""Resume benchmark: SIGKILL at random points, then --resume; and the journal's overhead.

    python benchmarks/resume_bench.py kills [--kills 20] [--iterations 500] [--seed 1]
    python benchmarks/resume_bench.py overhead [--repeat 7] [--iterations 2000]
    (both: [--json OUT] [--tmp DIR])

kills: one iterative job of N iterations on ``--nodes 2``; every iteration appends its index
to ``starts`` when it begins and ``<index> <time ns>`` to ``ends`` when it is done. A clean
run gives the duration T; then, for each of K kill points drawn uniformly in [0.05 T,
0.9 T], a fresh run is SIGKILLed at that point and resumed to the end. Reported per kill:
iterations that SUCCEED after the resume, iterations whose final state was journaled before
the kill and ran again (the guarantee: must be 0), iterations whose task had written its end
mark before the kill and ran again (the task was done but the service had not yet recorded
its exit: the unavoidable window), and the leftover processes the resume killed. Kill points
count from the moment the service has journaled the submission.

overhead: W1 of benchmarks/runtime_bench.py (N x /bin/true, one iterative job, --nodes 2),
journal on and off (--no-journal) alternately, median wall time of each.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]
DEFAULT_TMP = "/tmp/qcgflow-bench/resume"
SERVICE_ID = "bench"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


def _requests(path, job):
    with open(path, "w") as handle:
        json.dump([{"request": "submit", "jobs": [job]}], handle)


def counting_job(iterations):
    body = 'echo ${it} >> starts; sleep 0.01; echo "${it} $(date +%s%N)" >> ends'
    return {"name": "job", "iteration": {"start": 0, "stop": iterations},
            "execution": {"exec": "/bin/sh", "args": ["-c", body]}}


def _fresh(tmp, name):
    path = os.path.join(tmp, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(path, "wd"))
    return path


def _run(argv, timeout=600, cpu=False):
    """Run a service to its end: wall seconds (and, with ``cpu``, the CPU seconds of the
    service and the tasks it reaped, from wait4)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit("service failed (%d): %s" % (proc.returncode, err[-2000:]))
    return (wall, usage.ru_utime + usage.ru_stime) if cpu else wall


def _journal(wd):
    path = os.path.join(wd, ".qcgpjm-service-%s" % SERVICE_ID, "journal.jsonl")
    records = []
    with open(path) as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except ValueError:
                break
    return records


def _accepted(path):
    try:
        with open(path) as handle:
            return '"k":"submit"' in handle.read()
    except OSError:
        return False


def _finished(records):
    return {r["it"]: r["state"] for r in records
            if r.get("k") == "end" and "it" in r and not r.get("stop")}


def _starts(wd):
    path = os.path.join(wd, "starts")
    if not os.path.exists(path):
        return Counter()
    with open(path) as handle:
        return Counter(handle.read().split())


def _ends(wd):
    out = {}
    path = os.path.join(wd, "ends")
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2:
                    out.setdefault(parts[0], int(parts[1]))
    return out


# ------------------------------------------------------------------------------- kills

def one_kill(tmp, index, iterations, at):
    rundir = _fresh(tmp, "kill-%02d" % index)
    wd = os.path.join(rundir, "wd")
    reqs = os.path.join(rundir, "reqs.json")
    _requests(reqs, counting_job(iterations))
    proc = subprocess.Popen(SERVICE + ["--file-path", reqs, "--wd", wd, "--nodes", "2", "--id",
                                       SERVICE_ID], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    journal = os.path.join(wd, ".qcgpjm-service-%s" % SERVICE_ID, "journal.jsonl")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _accepted(journal):
        time.sleep(0.005)  # kill points count from the moment the work was accepted
    time.sleep(at)  # the kill point itself is what is measured
    kill_ns = time.time_ns()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    journaled = {str(i) for i in _finished(_journal(wd))}
    starts_at_kill = _starts(wd)
    ended_before = {i for i, ns in _ends(wd).items() if ns < kill_ns}
    _run(SERVICE + ["--resume", wd, "--nodes", "2"])
    starts = _starts(wd)
    final = _finished(_journal(wd))
    with open(os.path.join(wd, ".qcgpjm-service-%s" % SERVICE_ID, "service.log")) as handle:
        log = handle.read()
    killed = re.search(r"killed (\d+) processes left running", log)
    result = {
        "kill_at_s": round(at, 3),
        "journaled_before_kill": len(journaled),
        "ended_before_kill": len(ended_before),
        "succeed": sum(1 for s in final.values() if s == "SUCCEED"),
        "rerun_journaled": sorted(i for i in journaled if starts[i] > starts_at_kill[i]),
        "rerun_ended": sorted(i for i in ended_before if starts[i] > starts_at_kill[i]),
        "executions": sum(starts.values()),
        "leftovers_killed": int(killed.group(1)) if killed else 0,
    }
    shutil.rmtree(rundir, ignore_errors=True)
    return result


def bench_kills(args):
    rng = random.Random(args.seed)
    base = _fresh(args.tmp, "clean")
    reqs = os.path.join(base, "reqs.json")
    _requests(reqs, counting_job(args.iterations))
    clean = _run(SERVICE + ["--file-path", reqs, "--wd", os.path.join(base, "wd"), "--nodes",
                            "2", "--id", SERVICE_ID])
    print("clean run of %d iterations: %.2f s" % (args.iterations, clean))
    runs = []
    for index in range(args.kills):
        at = rng.uniform(0.05 * clean, 0.9 * clean)
        result = one_kill(args.tmp, index, args.iterations, at)
        runs.append(result)
        print("kill %2d at %5.2fs: journaled %3d, ended %3d, SUCCEED after resume %d/%d, "
              "re-run journaled %d, re-run ended-before-kill %d, leftovers killed %d"
              % (index + 1, at, result["journaled_before_kill"], result["ended_before_kill"],
                 result["succeed"], args.iterations, len(result["rerun_journaled"]),
                 len(result["rerun_ended"]), result["leftovers_killed"]))
    total = args.iterations * len(runs)
    summary = {
        "iterations": args.iterations, "kills": len(runs), "clean_run_s": round(clean, 3),
        "succeed_pct": 100.0 * sum(r["succeed"] for r in runs) / total,
        "rerun_journaled": sum(len(r["rerun_journaled"]) for r in runs),
        "rerun_ended_before_kill": sum(len(r["rerun_ended"]) for r in runs),
        "ended_before_kill": sum(r["ended_before_kill"] for r in runs),
        "runs": runs,
    }
    print("SUCCEED %.1f%%; re-executions of iterations journaled before the kill: %d; of "
          "iterations whose task had ended before the kill: %d of %d"
          % (summary["succeed_pct"], summary["rerun_journaled"],
             summary["rerun_ended_before_kill"], summary["ended_before_kill"]))
    return summary


# ------------------------------------------------------------------------------- overhead

def bench_overhead(args):
    job = {"name": "job", "iteration": {"start": 0, "stop": args.iterations},
           "execution": {"exec": "/bin/true"}}
    walls = {"journal": [], "no-journal": []}
    cpus = {"journal": [], "no-journal": []}
    for rep in range(args.repeat):
        for mode in (("journal", "no-journal") if rep % 2 == 0 else ("no-journal", "journal")):
            rundir = _fresh(args.tmp, "w1-%s-%d" % (mode, rep))
            reqs = os.path.join(rundir, "reqs.json")
            _requests(reqs, job)
            argv = SERVICE + ["--file-path", reqs, "--wd", os.path.join(rundir, "wd"),
                              "--nodes", "2"] + (["--no-journal"] if mode == "no-journal" else [])
            wall, cpu = _run(argv, cpu=True)
            walls[mode].append(wall)
            cpus[mode].append(cpu)
            shutil.rmtree(rundir, ignore_errors=True)
    on, off = statistics.median(walls["journal"]), statistics.median(walls["no-journal"])
    con, coff = statistics.median(cpus["journal"]), statistics.median(cpus["no-journal"])
    summary = {"iterations": args.iterations, "repeat": args.repeat,
               "median_journal_s": round(on, 3), "median_no_journal_s": round(off, 3),
               "overhead_pct": round(100.0 * (on - off) / off, 1),
               "median_cpu_journal_s": round(con, 3), "median_cpu_no_journal_s": round(coff, 3),
               "cpu_overhead_pct": round(100.0 * (con - coff) / coff, 1),
               "walls": {k: [round(v, 3) for v in vs] for k, vs in walls.items()},
               "cpus": {k: [round(v, 3) for v in vs] for k, vs in cpus.items()}}
    print("W1 (%d x /bin/true), medians of %d: wall journal %.3f s, no journal %.3f s "
          "(%+.1f%%); CPU (service + tasks) journal %.3f s, no journal %.3f s (%+.1f%%)"
          % (args.iterations, args.repeat, on, off, summary["overhead_pct"], con, coff,
             summary["cpu_overhead_pct"]))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("kills", "overhead"))
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tmp", default=DEFAULT_TMP)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.what == "kills":
        args.iterations = args.iterations or 500
        summary = bench_kills(args)
    else:
        args.iterations = args.iterations or 2000
        summary = bench_overhead(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
