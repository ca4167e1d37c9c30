"""A zygote forked from the client (runtime/launch/template.py): the service's Python tasks
start with the client's imports, no task imports them again, and nothing is left behind.

The client runs in a process of its own (a template is only forked by a one-thread
process, and pytest's may have more)."""

import json
import os
import subprocess
import sys

from support.processes import left_after

CLIENT = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[2])
import marker_for_template                   # the client's expensive import
from qcgflow.session.driver import Session
from qcgflow.graph.task import task


def probe():
    import marker_for_template  # a no-op when the worker has it already
    return {"has": "marker_for_template" in sys.modules,
            "template": os.environ.get("QCGFLOW_ZYGOTE_TEMPLATE")}


session = Session.start(sys.argv[1], "2", zygote_template=sys.argv[3] == "template")
template = session.service.template
pid = template.pid if template else None
try:
    refs = [task(probe).options(name="probe-%d" % i).bind() for i in range(3)]
    results = [f.result(120) for f in session.submit(refs)]
finally:
    began = time.monotonic()
    session.shutdown()  # stops the service, then reaps the template
    stopping = time.monotonic() - began
try:
    reaped = pid is not None and os.waitpid(pid, os.WNOHANG) is None
except ChildProcessError:
    reaped = True
print(json.dumps({"results": results, "template": bool(template), "reaped": reaped,
                  "stopping": stopping,
                  "template_dir": template._directory if template else None}))
'''


def _run(tmp_path, how):
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    imports = tmp_path / "imports.log"
    (lib / "marker_for_template.py").write_text(
        "import os\nwith open(%r, 'a') as f:\n    f.write('%%d\\n' %% os.getpid())\n"
        % str(imports))
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    wd = tmp_path / ("wd-" + how)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), str(lib), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(script), str(wd), str(lib), how],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    lines = imports.read_text().split()
    imports.unlink()
    return report, lines, wd


def test_tasks_start_with_the_clients_imports_and_import_nothing_again(tmp_path):
    report, imported_by, wd = _run(tmp_path, "template")
    assert [r["has"] for r in report["results"]] == [True] * 3
    assert len(imported_by) == 1  # the client's import only: no worker imported it
    assert all(r["template"] is None for r in report["results"])  # not passed on to tasks
    assert report["template"] and report["reaped"]
    # the service waits 5 s for its zygote's process (the shim) before killing it: the
    # shim must follow the template's end, not wait for the client's
    assert report["stopping"] < 4.5
    assert not os.path.exists(report["template_dir"])
    assert not left_after(wd, 5.0)


def test_without_a_template_the_tasks_import_it_themselves(tmp_path):
    report, imported_by, wd = _run(tmp_path, "plain")
    assert not report["template"]
    assert len(imported_by) >= 2  # the client's, then at least one worker's
    assert not left_after(wd, 5.0)
