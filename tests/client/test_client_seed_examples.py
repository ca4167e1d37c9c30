"""The seed documentation's API and Executor API examples, unchanged except for imports.

Each runs as a script in a fresh process whose working directory is an empty directory
(it must stay empty: the service runs under $TMPDIR, pointed into tmp_path).
"""

import glob
import os
import subprocess
import sys
import textwrap

from support.processes import child_env

EXAMPLE_API_APPLICATION = '''
from qcgflow.runtime.api.manager import LocalManager

manager = LocalManager()

print('available resources: ', manager.resources())

from qcgflow.runtime.api.job import Jobs
jobs = Jobs().add(script='echo "job ${it} executed at `date` @ `hostname`"', stdout='job.out.${it}', iteration=4)
job_ids = manager.submit(jobs)
print('submited jobs: ', str(job_ids))

job_status = manager.status(job_ids)
print('job status: ', job_status)

manager.wait4(job_ids)

manager.wait4all()

job_info = manager.info(job_ids)
print('job detailed information: ', job_info)

manager.finish()
'''

OPENMP_EXAMPLE = '''
from qcgflow.runtime.api.manager import LocalManager
from qcgflow.runtime.api.job import Jobs

manager = LocalManager()

jobs = Jobs().add(
    name='openmp-example',
    exec='omp_hello',
    stdout='omp.out',
    model='threads',
    numCores=8,
    numNodes=1)

job_ids = manager.submit(jobs)
manager.wait4(job_ids)

manager.finish()
'''

EXECUTOR_MINIMAL_EXAMPLE = '''
from qcgflow.runtime.executor_api import QCGPJExecutor
from qcgflow.runtime.executor_api import BasicTemplate

with QCGPJExecutor() as e:
    f = e.submit(BasicTemplate.template, name='tj', exec='date')
    f.result()
'''


def run_script(tmp_path, source, extra_path=None, timeout=60):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = child_env()
    env["TMPDIR"] = str(temp)
    if extra_path:
        env["PATH"] = str(extra_path) + os.pathsep + env["PATH"]
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(source))
    result = subprocess.run([sys.executable, str(script)], cwd=str(cwd), env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    assert os.listdir(cwd) == [], "the example wrote into its working directory"
    runs = glob.glob(str(temp / "qcgflow-run-*"))
    assert len(runs) == 1, runs
    return result, runs[0]


def test_example_api_application(tmp_path):
    result, run_dir = run_script(tmp_path, EXAMPLE_API_APPLICATION)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("available resources:  {'total_nodes': 1, 'total_cores': %d"
                               % os.cpu_count())
    assert lines[1].startswith("submited jobs:  ['") and len(eval(lines[1].split(":  ")[1])) == 1
    assert lines[2].startswith("job status:  {'jobs': {")
    assert "'iterations': {'start': 0, 'stop': 4, 'total': 4, 'finished': 4, 'failed': 0}" \
        in lines[3]
    outputs = sorted(glob.glob(os.path.join(run_dir, "job.out.*")))
    assert [os.path.basename(p) for p in outputs] == ["job.out.%d" % i for i in range(4)]
    for index, path in enumerate(outputs):
        assert open(path).read().startswith("job %d executed at " % index)
    assert glob.glob(os.path.join(run_dir, ".qcgpjm-service-*", "service.log"))
    assert result.stderr == ""


def test_openmp_example_with_a_stand_in_program(tmp_path):
    """omp_hello is a stand-in script on PATH; on fewer than 8 cores the service is given
    8 (the example asks for numCores=8 and LocalManager() takes the local cores)."""
    source = OPENMP_EXAMPLE
    if (os.cpu_count() or 1) < 8:
        source = source.replace("LocalManager()", "LocalManager(['--nodes', '8'])")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "omp_hello"
    program.write_text('#!/bin/sh\nfor i in $(seq 0 $(($OMP_NUM_THREADS - 1))); do '
                       'echo "Hello World from thread = $i"; done\n')
    program.chmod(0o755)
    _, run_dir = run_script(tmp_path, source, extra_path=bin_dir)
    assert len(open(os.path.join(run_dir, "omp.out")).read().splitlines()) == 8


def test_executor_minimal_example(tmp_path):
    result, run_dir = run_script(tmp_path, EXECUTOR_MINIMAL_EXAMPLE)
    assert open(os.path.join(run_dir, "stdout")).read().strip()  # date's output
    assert os.path.exists(os.path.join(run_dir, "stderr"))
    assert result.stderr == ""


def test_executor_submit_examples(tmp_path):
    """The seed's two submit calls (the second renamed: one service takes a name once)."""
    from qcgflow.runtime.executor_api import BasicTemplate, QCGPJExecutor
    with QCGPJExecutor(wd=str(tmp_path)) as e:
        first = e.submit(BasicTemplate.template, name='tj', exec='date')
        second = e.submit(BasicTemplate.template, name='tj2', exec='sleep', args=['10'])
        assert first.result(10) == {"tj": "SUCCEED"}
        assert second.running() and not second.done()
        assert second.cancel()  # (the seed's second call sleeps 10 s; it is cancelled)
    assert e.qcgpj_manager._process.returncode == 0
