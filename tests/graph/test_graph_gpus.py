"""The gpus= task option end to end: Python tasks see their own GPU ids (issue 18)."""

import os
import time

import pytest

import qcgflow
from qcgflow.errors import RunError

from graph_harness import run_wd

DEADLINE = 60


@qcgflow.task(gpus=1)
def on_gpu(i):
    start = time.time()
    time.sleep(0.3)
    return (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("QCG_PM_GPUS"), start,
            time.time())


@qcgflow.task
def no_gpu():
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


def test_python_tasks_get_distinct_gpus_and_plain_tasks_none(tmp_path):
    runs, plain = qcgflow.run([on_gpu.map(range(4)), no_gpu.bind()], nodes="n0:4:gpus=0+1",
                              wd=run_wd(tmp_path), timeout=DEADLINE)
    assert all(cuda == qcg and cuda in ("0", "1") for cuda, qcg, _, _ in runs), runs
    for a, (cuda_a, _, s_a, e_a) in enumerate(runs):
        for cuda_b, _, s_b, e_b in runs[a + 1:]:
            assert not (cuda_a == cuda_b and s_a < e_b and s_b < e_a), runs
    assert plain == ""


def test_a_gpu_option_too_big_is_refused_naming_the_field(tmp_path):
    with pytest.raises(RunError, match="resources.nodeCrs.gpu asks for 3 GPUs on each "
                                       "node, but no node has more than 2"):
        qcgflow.run(on_gpu.options(gpus=3).map(range(1)), nodes="n0:2:gpus=0+1",
                    wd=run_wd(tmp_path), timeout=DEADLINE)
