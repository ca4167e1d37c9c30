"""The Python API: the sweep of sweep.yaml written with qcgflow.shell and @qcgflow.task.

    qcgflow run examples/workflows/api_sweep.py      (or: python examples/workflows/api_sweep.py)

It prints the sum of the results; the run directory is given below (wd=).
"""

import os
import tempfile

import qcgflow

simulate = qcgflow.shell("echo $(( ${itval} * ${itval} )) > result_${it}.txt", cores=1,
                         wt="1m")


@qcgflow.task
def total(results):
    """Fan-in: `results` is the list of the sweep's CommandResult (one per iteration)."""
    return sum(int(open(os.path.join(r.wd, "result_%d.txt" % i)).read())
               for i, r in enumerate(results))


if __name__ == "__main__":
    wd = os.environ.get("QCGFLOW_EXAMPLE_WD") or tempfile.mkdtemp(prefix="qcgflow-api-")
    runs = simulate.map(range(1, 9))
    print("sum of squares:", qcgflow.run(total.bind(runs), nodes=2, wd=wd))
