#!/usr/bin/env python3
"""MPI ensemble: the graph API against a plain requests file, in one Slurm allocation.

Runs on the dev cluster (``bash ci/dev-cluster/dev-cluster.sh up``)::

    python benchmarks/ensemble_bench.py [--members 8] [--steps 20000] [--repeat 3]

It builds a small Open MPI program (``--steps`` MPI_Allreduce calls, then it prints its
host name per rank), takes one allocation (``salloc -N2 --exclusive``: 2 nodes x 2 CPUs)
and inside it runs, ``--repeat`` times each:

* ``requests``: ``qcgflow service --file-path`` on one iterative job of ``--members``
  iterations, ``numCores: 2``, model openmpi;
* ``graph``: ``qcgflow.run(qcgflow.mpi(ring, cores=2).map(range(members)))`` in a Python
  process; the wall inside ``qcgflow.run`` and the whole process are both printed.

Prints the median walls, the ratio graph/requests, and how many members ran within one
node (packing: a 2-core member without ``nodes`` gets one node when one has room).
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

RING = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int rank, size, i, n = argc > 1 ? atoi(argv[1]) : 20000;
    double x = 1.0, sum = 0.0;
    char host[64];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (i = 0; i < n; i++) {
        MPI_Allreduce(&x, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        x = sum / size;
    }
    gethostname(host, sizeof host);
    printf("ring rank=%d host=%s\n", rank, host);
    MPI_Finalize();
    return 0;
}
"""

GRAPH = """
import sys, time
import qcgflow
ring = qcgflow.mpi(sys.argv[1], args=[sys.argv[2]], cores=2, model="openmpi")
start = time.monotonic()
qcgflow.run(ring.map(range(int(sys.argv[3]))), wd=sys.argv[4])
print("inside %.3f" % (time.monotonic() - start))
"""


def inside(args) -> None:
    """The measurement, run inside the allocation; prints one JSON line."""
    work = args.work
    requests = [{"request": "submit", "jobs": [{
        "name": "md", "iteration": {"stop": args.members},
        "execution": {"exec": os.path.join(work, "ring"), "args": [str(args.steps)],
                      "model": "openmpi", "stdout": "md.${it}.out"},
        "resources": {"numCores": {"exact": 2}}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}]
    with open(os.path.join(work, "req.json"), "w") as handle:
        json.dump(requests, handle)
    with open(os.path.join(work, "graph.py"), "w") as handle:
        handle.write(GRAPH)
    walls = {"requests": [], "graph": [], "graph_process": []}
    one_node = 0
    for run in range(args.repeat):
        wd = os.path.join(work, "req%d" % run)
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--file-path",
                        os.path.join(work, "req.json"), "--wd", wd, "--id", "b"], check=True)
        walls["requests"].append(time.monotonic() - start)
        for it in range(args.members):
            with open(os.path.join(wd, "md.%d.out" % it)) as handle:
                hosts = {line.split("host=")[1].strip() for line in handle if "host=" in line}
            one_node += len(hosts) == 1
        start = time.monotonic()
        out = subprocess.run([sys.executable, os.path.join(work, "graph.py"),
                              os.path.join(work, "ring"), str(args.steps), str(args.members),
                              os.path.join(work, "graph%d" % run)], check=True,
                             capture_output=True, text=True).stdout
        walls["graph_process"].append(time.monotonic() - start)
        walls["graph"].append(float(out.split("inside")[1].split()[0]))
    print(json.dumps({"walls": walls, "members_on_one_node": one_node,
                      "members": args.members * args.repeat}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inside", metavar="WORK", dest="work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        inside(args)
        return 0
    work = tempfile.mkdtemp(prefix="qcgflow-ensemble-bench-")
    with open(os.path.join(work, "ring.c"), "w") as handle:
        handle.write(RING)
    subprocess.run(["mpicc", "-O2", "-o", os.path.join(work, "ring"),
                    os.path.join(work, "ring.c")], check=True)
    command = [sys.executable, os.path.abspath(__file__), "--members", str(args.members),
               "--steps", str(args.steps), "--repeat", str(args.repeat), "--inside", work]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    done = subprocess.run(["salloc", "-N2", "--exclusive", "-J", "qcgflow-ensemble-bench"]
                          + command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        print("failed: %s\n%s" % (shlex.join(command), done.stderr[-2000:]), file=sys.stderr)
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    medians = {name: statistics.median(values) for name, values in result["walls"].items()}
    for name, value in medians.items():
        print("%-14s median %.2f s  (%s)" % (name, value, ", ".join(
            "%.2f" % v for v in result["walls"][name])))
    print("graph/requests %.2fx (inside qcgflow.run), %.2fx (whole Python process)" % (
        medians["graph"] / medians["requests"], medians["graph_process"] / medians["requests"]))
    print("members on one node: %d of %d" % (result["members_on_one_node"], result["members"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
