#!/usr/bin/env python3
"""Content keys and graph-level resume: what they cost.

    python benchmarks/memo_bench.py [--repeat 7] [--run 500]

keys: ``qcgflow.graph.keys.graph_keys`` of a 10,000-node graph (5,000 sources with a small dict
argument, 5,000 two-input tasks; two functions, one helper followed through globals) and
of one ``.map()`` over 10,000 elements; median, min and max of ``--repeat`` (the graph is
built fresh each time, so function digests are not cached between repeats).
run: ``qcgflow.run`` of ``--run`` independent tasks and a fan-in on ``nodes=2``, first in a
new wd (recording), then ``resume=True`` with everything reused, then with only the fan-in's
result file removed (it runs, the rest is reused).
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import qcgflow
from qcgflow.graph.graph import Graph
from qcgflow.graph.keys import graph_keys


def helper(x):
    return x + 1


@qcgflow.task
def source(i, params):
    return helper(i) * params["scale"]


@qcgflow.task
def combine(*values):
    return sum(values)


def timed(build, repeat):
    times = []
    for _ in range(repeat):
        graph = build()
        start = time.perf_counter()
        graph_keys(graph.order)
        times.append(time.perf_counter() - start)
    return "median %.3f s (min %.3f, max %.3f)" % (statistics.median(times), min(times),
                                                   max(times))


def graph_10k():
    sources = [source.bind(i, {"seed": i, "name": "case-%d" % i, "scale": 0.5})
               for i in range(5000)]
    return Graph.build([combine.bind(sources[i], sources[(i + 1) % 5000])
                        for i in range(5000)])


def runs(count):
    wd = tempfile.mkdtemp(prefix="qcgflow-memo-bench-")
    try:
        def target():
            return combine.bind(*[source.bind(i, {"scale": 2}) for i in range(count)])
        out = []
        for label, remove in (("first run (recording)", False), ("resume, all reused", False),
                              ("resume, fan-in result removed", True)):
            if remove:
                os.unlink(os.path.join(wd, ".qcgflow", "combine-0", "result.pkl"))
            start = time.perf_counter()
            qcgflow.run(target(), nodes=2, wd=wd, timeout=600, resume=True)
            out.append("%s %.2f s" % (label, time.perf_counter() - start))
        return "; ".join(out)
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--run", type=int, default=500)
    args = parser.parse_args()
    print("keys, 10,000-node graph:", timed(graph_10k, args.repeat))
    print("keys, .map() over 10,000 elements:",
          timed(lambda: Graph.build(source.map(range(10000), {"scale": 0.5})), args.repeat))
    if args.run:
        print("run of %d tasks + fan-in:" % args.run, runs(args.run))


if __name__ == "__main__":
    main()
