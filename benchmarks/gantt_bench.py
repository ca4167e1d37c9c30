"""Time ``qcgflow report gantt`` / ``gantt-gaps`` on a synthetic run: 2000 tasks, 64 cores.

The run is written as a service would leave it (``.qcgpjm-service-bench/`` with
jobs.report, final_status.json, service.log and rtstats.jsonl): 4 nodes of 16 cores, tasks
of 1, 2 and 4 cores from 8 jobs, 1-20 s each, placed first-fit on the earliest free cores
with a few milliseconds of launch delay. Each plot is made by the real command line in a
new process, so the figures include the interpreter and matplotlib start-up.

    python benchmarks/gantt_bench.py [--tasks 2000] [--nodes 4] [--cores 16] [--keep DIR]

The issue's target: under 10 s per chart.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = 1_800_000_000.0


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).isoformat()


def synthesize(wd: str, tasks: int, nodes: int, cores: int, seed: int = 7) -> str:
    """Write the working files of a fake run into ``wd``; returns the aux dir."""
    rng = random.Random(seed)
    aux = os.path.join(wd, ".qcgpjm-service-bench")
    os.makedirs(aux, exist_ok=True)
    free_at = {(n, c): START + 0.3 for n in range(nodes) for c in range(cores)}
    jobs = [("job%d" % j, (1, 1, 2, 4, 1, 2, 1, 1)[j]) for j in range(8)]
    report, rt = [], []
    counters = {name: 0 for name, _ in jobs}
    for _ in range(tasks):
        name, width = rng.choice(jobs)
        index = counters[name]
        counters[name] += 1
        # the ``width`` earliest free cores of one node
        node = min(range(nodes), key=lambda n: sorted(free_at[(n, c)]
                                                      for c in range(cores))[width - 1])
        chosen = sorted(range(cores), key=lambda c: free_at[(node, c)])[:width]
        scheduled = max(free_at[(node, c)] for c in chosen)
        start = scheduled + rng.uniform(0.001, 0.005)
        end = start + rng.uniform(1.0, 20.0)
        finished = end + rng.uniform(0.0005, 0.003)
        for c in chosen:
            free_at[(node, c)] = finished
        unit = "%s:%d" % (name, index)
        allocation = "n%d[%s]" % (node, ":".join(map(str, sorted(chosen))))
        report.append({"name": unit, "state": "SUCCEED", "history": [
            {"state": "QUEUED", "date": iso(START + 0.2)},
            {"state": "SCHEDULED", "date": iso(scheduled)},
            {"state": "EXECUTING", "date": iso(start + 0.0005)},
            {"state": "SUCCEED", "date": iso(finished)}],
            "runtime": {"allocation": allocation, "wd": wd, "rtime": "%.6f" % (end - start),
                        "exit_code": "0", "pid": str(10000 + len(report)), "pname": "app"}})
        rt.append({"name": unit, "allocation": allocation, "pid": 10000 + len(rt),
                   "start": iso(start), "end": iso(end), "exit_code": 0, "utime": 0.0,
                   "stime": 0.0, "maxrss_kb": 0})
    finish = max(free_at.values()) + 0.2
    with open(os.path.join(aux, "jobs.report"), "w") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in report)
    with open(os.path.join(aux, "rtstats.jsonl"), "w") as handle:
        header = {"resources": {"n%d" % n: list(range(cores)) for n in range(nodes)}}
        handle.write(json.dumps(header) + "\n")
        handle.writelines(json.dumps(r) + "\n" for r in rt)
    with open(os.path.join(aux, "final_status.json"), "w") as handle:
        json.dump({"System": {"Started": str(datetime.fromtimestamp(START)),
                              "Generated": str(datetime.fromtimestamp(finish))},
                   "Resources": {"TotalNodes": nodes, "TotalCores": nodes * cores}}, handle)
    with open(os.path.join(aux, "service.log"), "w") as handle:
        handle.write("%s INFO qcgflow.runtime.service: resources: %d nodes, %d cores (%s)\n"
                     % (datetime.fromtimestamp(START).strftime("%Y-%m-%d %H:%M:%S,000"),
                        nodes, nodes * cores,
                        ", ".join("n%d:%d" % (n, cores) for n in range(nodes))))
    return aux


def timed(argv):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - began
    if done.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(argv), done.stderr))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--keep", help="write the run and the charts here (kept)")
    args = parser.parse_args()
    base = args.keep or tempfile.mkdtemp(prefix="gantt-bench-")
    wd = os.path.join(base, "wd")
    synthesize(wd, args.tasks, args.nodes, args.cores)
    print("%d tasks on %d cores (%d nodes) in %s" % (args.tasks, args.nodes * args.cores,
                                                      args.nodes, wd))
    cli = [sys.executable, "-m", "qcgflow.cli", "report"]
    for command, ext in (("stats", None), ("rusage", None), ("gantt", "png"), ("gantt", "pdf"),
                         ("gantt", "svg"), ("gantt-gaps", "png")):
        argv = cli + [command, wd] + ([os.path.join(base, "%s.%s" % (command, ext))]
                                      if ext else [])
        seconds = timed(argv)
        print("  %-10s %-4s %6.2f s" % (command, ext or "", seconds))
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
