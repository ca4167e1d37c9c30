"""The ``qcg.pilotjob`` shim of the upstream-suite runner (tests/compat/upstream_suite/).

Its modules must BE qcgflow's, and its service process must report the address the service
itself chose and stop the service on ``terminate()``. The upstream suite is needed only for
the helpers; without it the shim's own modules are still checked.
"""

import json
import subprocess
import sys
from pathlib import Path

SHIM = Path(__file__).resolve().parent / "upstream_suite" / "shim"


def run_with_shim(code, timeout=60):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env={"PYTHONPATH": str(SHIM), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_api_modules_are_qcgflows_own():
    out = run_with_shim("""
import json
import qcg.pilotjob.api.manager as m, qcg.pilotjob.api.job as j, qcg.pilotjob.api.errors as e
from qcg.pilotjob.executor_api.qcgpj_executor import QCGPJExecutor
from qcg.pilotjob.executor_api.templates.basic_template import BasicTemplate
import qcgflow.runtime.api.manager, qcgflow.runtime.api.job, qcgflow.runtime.api.errors
import qcgflow.runtime.executor_api as x
print(json.dumps([m is qcgflow.runtime.api.manager, j is qcgflow.runtime.api.job,
                  e is qcgflow.runtime.api.errors, QCGPJExecutor is x.QCGPJExecutor,
                  BasicTemplate is x.BasicTemplate]))
""")
    assert out == [True] * 5


def test_service_process_reports_the_address_and_terminate_stops_it(tmp_path):
    out = run_with_shim("""
import json, multiprocessing as mp, psutil, sys
from qcg.pilotjob.service import QCGPMServiceProcess
mp.set_start_method("fork", force=True)
queue = mp.Queue()
proc = QCGPMServiceProcess(["--net", "--nodes", "2", "--wd", %r], queue)
proc.start()
conf = queue.get(timeout=30)
service = [c for c in psutil.Process(proc.pid).children() if "service" in c.cmdline()]
proc.terminate()
proc.join(30)
gone, alive = psutil.wait_procs(service, timeout=15)
print(json.dumps({"conf": conf, "exit": proc.exitcode, "services": len(service),
                  "alive": len(alive)}))
""" % str(tmp_path))
    # the address the service reports: by default an owner-only ipc:// socket
    assert out["conf"]["zmq_addresses"][0].startswith("ipc:///"), out
    assert out["services"] == 1 and out["alive"] == 0, out
