"""``qcgflow.put`` against passing by value: one 100 MB numpy array to 50 tasks.

    python benchmarks/put_bench.py [--mb 100] [--tasks 50] [--wd DIR]

Prints, for each way, the wall time from the first ``.remote`` to the last result and the
bytes the run wrote under ``<wd>/.qcgflow`` (call, result and stored files). Not a test.
"""

import argparse
import os
import shutil
import tempfile
import time

import numpy

import qcgflow


@qcgflow.task
def first_and_size(array):
    return int(array[0]) + array.nbytes


def stored_bytes(wd):
    total = 0
    for folder, _, files in os.walk(os.path.join(wd, ".qcgflow")):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
    return total


def measure(way, array, tasks, wd):
    with qcgflow.init(nodes=2, wd=wd):
        qcgflow.get(first_and_size.remote(numpy.zeros(1)))  # warm-up: workers started
        before = stored_bytes(wd)
        started = time.monotonic()
        argument = qcgflow.put(array) if way == "put" else array
        refs = [first_and_size.remote(argument) for _ in range(tasks)]
        submitted = time.monotonic() - started
        assert qcgflow.get(refs) == [array.nbytes] * tasks
        wall = time.monotonic() - started
        written = stored_bytes(wd) - before
    print("%-9s %d x %.0f MB: wall %.2f s (submitting %.2f s), written %.1f MB"
          % (way, tasks, array.nbytes / 2**20, wall, submitted, written / 2**20), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--wd", default=None, help="where the run directories go")
    args = parser.parse_args()
    array = numpy.arange(args.mb * 2**20 // 8, dtype=numpy.int64)
    for way in ("put", "by-value"):
        wd = tempfile.mkdtemp(prefix="put-bench-", dir=args.wd)
        try:
            measure(way, array, args.tasks, wd)
        finally:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
