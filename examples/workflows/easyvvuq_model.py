#!/usr/bin/env python3
"""A small external model for the EasyVVUQ example: ``easyvvuq_model.py input.json``.

Reads ``a``, ``b``, ``delay``, ``fail_above`` and ``fail_once`` from the JSON input, sleeps
``delay`` seconds (a stand-in for real work) and writes ``output.csv``: two quantities of
interest ``f`` and ``g``, the number of cores it was given (``QCG_PM_NPROCS``, 1 outside
qcgflow) and of MPI ranks it runs as (1 unless an MPI model started it; rank 0 writes).
Exits with code 3 (and a message on stderr) when ``a > fail_above`` (with ``fail_once``:
only on a run's first try): a way to see how failed runs are reported and retried.
"""

import json
import math
import os
import sys
import time


def _failed_before(params) -> bool:
    """With ``fail_once``, a run fails only on its first try (a marker in its directory)."""
    if not params.get("fail_once"):
        return False
    if os.path.exists(".failed_before"):
        return True
    open(".failed_before", "w").close()
    return False


def main(path: str) -> int:
    with open(path) as handle:
        params = json.load(handle)
    a, b = float(params["a"]), float(params["b"])
    time.sleep(float(params.get("delay", 0.2)))
    if a > float(params.get("fail_above", math.inf)) and not _failed_before(params):
        sys.stderr.write("model: a=%r is above fail_above=%r, giving up\n"
                         % (a, params["fail_above"]))
        return 3
    f = math.exp(a) * math.cos(3.0 * b) + a * b
    g = a * a + math.sin(b)
    cores = int(os.environ.get("QCG_PM_NPROCS", "1"))
    ranks = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE", "1")))
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
    if rank == 0:  # started by an MPI model: one rank writes
        with open("output.csv", "w") as out:
            out.write("f,g,cores,ranks\n%r,%r,%d,%d\n" % (f, g, cores, ranks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "input.json"))
