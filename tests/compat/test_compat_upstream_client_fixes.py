"""Issue 20's fixes, each driven by the real upstream client (qcg-pilotjob 0.14.2, side venv).

Like test_compat_upstream_client.py: a script run with the side venv's python talks to
``qcgflow service --net`` (its default owner-only ``ipc://`` address, given to upstream's
``Manager`` unchanged) and the test checks what upstream's API returned. Waits are upstream's
own ``wait4`` with a timeout or polls with a deadline, never fixed sleeps.
"""

import json
import subprocess
import textwrap

import pytest

from support.processes import child_env
from support.services import NetService
from test_compat_upstream_client import run_upstream
from upstream_venv import EXECUTOR_API, executor_api_python  # tests/upstream_venv.py

FINAL = {"SUCCEED", "FAILED", "CANCELED", "OMITTED"}


def test_cancel_of_a_running_iterative_job_waits_for_every_iteration(upstream, our_service,
                                                                       tmp_path):
    """wait4 returns only when every iteration is final, and the counts add up."""
    out = run_upstream(upstream, our_service, tmp_path, """
        m.submit(Jobs().add(name='it', exec='/bin/sleep', args=['60'], iteration=4))
        deadline = time.time() + 20
        while m.status('it')['jobs']['it']['data']['status'] != 'EXECUTING':
            assert time.time() < deadline
            time.sleep(0.01)
        m.cancel(['it'])
        out['w'] = m.wait4(['it'], timeout=30)
        data = m.info(['it'], withChilds=True)['jobs']['it']['data']
        out['childs'] = [c['state'] for c in data['childs']]
        out['iterations'] = data['iterations']
    """)
    assert out["w"] == {"it": "CANCELED"}
    assert len(out["childs"]) == 4 and set(out["childs"]) <= FINAL, out["childs"]
    its = out["iterations"]
    assert its["total"] == 4 and its["finished"] == 4, its
    assert its["failed"] == sum(state != "SUCCEED" for state in out["childs"]), out


def test_cancel_of_the_predecessor_of_per_iteration_dependencies(upstream, our_service,
                                                                  tmp_path):
    """j2/j3 end FAILED with every iteration OMITTED; a wait on one iteration ends."""
    out = run_upstream(upstream, our_service, tmp_path, """
        it = {'start': 2, 'stop': 6}
        m.submit(Jobs().add(name='j1', exec='/bin/sleep', args=['60'], iteration=it)
                       .add(name='j2', exec='/bin/true', after=['j1:${it}'], iteration=it)
                       .add(name='j3', exec='/bin/true', after=['j2:${it}'], iteration=it))
        deadline = time.time() + 20
        while m.status('j1')['jobs']['j1']['data']['status'] != 'EXECUTING':
            assert time.time() < deadline
            time.sleep(0.01)
        m.cancel(['j1'])
        out['one'] = m.wait4(['j2:3'], timeout=30)
        out['w'] = m.wait4(['j1', 'j2', 'j3'], timeout=30)
        info = m.info(['j2', 'j3'], withChilds=True)['jobs']
        out['childs'] = {name: [c['state'] for c in info[name]['data']['childs']]
                         for name in ('j2', 'j3')}
    """)
    assert out["one"] == {"j2:3": "OMITTED"}
    assert out["w"] == {"j1": "CANCELED", "j2": "FAILED", "j3": "FAILED"}
    assert out["childs"] == {"j2": ["OMITTED"] * 4, "j3": ["OMITTED"] * 4}


def test_double_dollar_in_wd_and_stdout_becomes_each_iteration_index(upstream, our_service,
                                                                     tmp_path):
    """Upstream substitutes at submit and again at execution: ``$${it}`` -> ``${it}`` -> 0.."""
    out = run_upstream(upstream, our_service, tmp_path, """
        out['w'] = m.wait4(m.submit(Jobs().add(
            name='d', exec='/bin/echo', args=['${it}'],
            wd='dir_$${it}', stdout='out_$${it}', iteration=3)), timeout=30)
    """)
    assert out["w"] == {"d": "SUCCEED"}
    wd = tmp_path / "wd"
    for index in range(3):
        assert (wd / ("dir_%d" % index) / ("out_%d" % index)).read_text() == "%d\n" % index
    assert not list(wd.glob("dir_$*")), sorted(p.name for p in wd.iterdir())


def test_num_cores_min_without_max_fails_with_upstreams_message(upstream, our_service,
                                                               tmp_path):
    """As upstream: accepted at submit, FAILED when it would start, nothing run."""
    out = run_upstream(upstream, our_service, tmp_path, """
        ids = m.submit(Jobs().add(name='r', exec='/bin/touch', args=['ran'],
                                  numCores={'min': 1})
                       .add(name='after_r', exec='/bin/true', after=['r']))
        out['w'] = m.wait4(ids, timeout=30)
        out['msg'] = m.info(['r'])['jobs']['r']['data']['messages']
    """)
    assert out["w"] == {"r": "FAILED", "after_r": "OMITTED"}
    assert out["msg"].startswith(
        "Both core's range boundaries (min, max) must be defined"), out["msg"]
    assert not (tmp_path / "wd" / "ran").exists()


def test_governor_flow_with_parent_given_the_governors_client_address(upstream, tmp_path):
    """Upstream's flow: ``--parent`` = the address the client uses; the client drives it all."""
    env = child_env({"QCGFLOW_GOVERNORS_DIR": str(tmp_path / "governors")})
    services = []
    try:
        services.append(NetService(tmp_path, "--governor", nodes=None, service_id="g",
                                   wd=tmp_path / "g", env=env))
        governor, ready = services[0].proc, services[0].ready
        services.append(NetService(tmp_path, "--parent", ready["address"], nodes="n0:2,n1:1",
                                   service_id="m1", wd=tmp_path / "m1", env=env))
        manager = services[1].proc
        out = run_upstream(upstream, {"address": ready["address"]}, tmp_path, """
            deadline = time.time() + 20
            while m.resources()['total_cores'] != 3:
                assert time.time() < deadline, m.resources()
                time.sleep(0.05)
            out['r'] = m.resources()
            ids = m.submit(Jobs().add(name='a', exec='/bin/echo', args=['hi'], stdout='a.out')
                           .add(name='b', exec='/bin/true', iteration=3))
            out['first'] = m.status(['a'])['jobs']['a']['data']['status']
            out['w'] = m.wait4(ids, timeout=30)
            m.finish()
        """)
        assert out["r"] == {"total_nodes": 2, "total_cores": 3, "used_cores": 0,
                            "free_cores": 3}
        assert out["first"] in ("QUEUED", "SUCCEED")  # what upstream's test_governor accepts
        assert out["w"] == {"a": "SUCCEED", "b": "SUCCEED"}
        assert (tmp_path / "m1" / "a.out").read_text() == "hi\n"
        assert governor.wait(timeout=15) == 0
        assert manager.wait(timeout=15) == 0  # the governor's finish ends its manager too
    finally:
        for service in services:
            service.stop()


EXECUTOR_SCRIPT = textwrap.dedent("""
    import json, sys
    from qcg.pilotjob.api.manager import Manager
    import qcg.pilotjob.executor_api.qcgpj_executor as qe
    from qcg.pilotjob.executor_api.qcgpj_executor import QCGPJExecutor
    from qcg.pilotjob.executor_api.templates.basic_template import BasicTemplate
    # The executor has no address parameter: it always builds a LocalManager (upstream's own
    # service in a thread). Only that construction is replaced, by upstream's real Manager
    # connected to our service; templates, submit and futures are upstream's code.
    qe.LocalManager = lambda args, conf: Manager(address=sys.argv[1], cfg=conf)
    out = {}
    with QCGPJExecutor(wd=sys.argv[2]) as e:
        f = e.submit(BasicTemplate.template, name='tj', exec='/bin/sh',
                     args=['-c', 'echo $QCG_PM_EXEC_API_JOB_ID'], stdout='tj.out')
        g = e.submit(BasicTemplate.template, name='bad', exec='/bin/false')
        out['r'] = [f.result(timeout=30), g.result(timeout=30)]
        out['done'] = [f.done(), g.done()]
    print(json.dumps(out))
""")


def test_executor_api_submit_and_result(our_service, tmp_path):
    """Upstream's QCGPJExecutor: template submit, future result/done, ``${jname}``, finish."""
    try:
        python = executor_api_python()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        pytest.skip("needs %s in a side venv, which could not be installed (%s); make PyPI "
                    "reachable or set QCGFLOW_TEST_VENVS to a directory with qcgpj-exec-0.14.2"
                    % (EXECUTOR_API, exc))
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR_SCRIPT)
    client_wd = tmp_path / "client"
    client_wd.mkdir()
    done = subprocess.run([str(python), str(script), our_service["address"], str(client_wd)],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["r"] == [{"tj": "SUCCEED"}, {"bad": "FAILED"}]
    assert out["done"] == [True, True]
    assert (tmp_path / "wd" / "tj.out").read_text() == "tj\n"
    assert our_service["proc"].wait(timeout=15) == 0  # leaving the executor sent finish
