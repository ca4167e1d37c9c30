"""The real upstream client library (qcg-pilotjob 0.14.2, in a side venv) drives our service.

Each test runs a small script with the venv's python against ``qcgflow service --net`` and
checks what the upstream API returned: wire compatibility, not a re-implementation of it.
"""

import json
import subprocess
import textwrap

PRELUDE = textwrap.dedent("""
    import json, sys, time
    from qcg.pilotjob.api.manager import Manager
    from qcg.pilotjob.api.job import Jobs
    m = Manager(address=sys.argv[1])
    out = {}
""")


def run_upstream(upstream, service, tmp_path, body, timeout=60):
    script = tmp_path / "client.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n")
    done = subprocess.run([str(upstream), str(script), service["address"]], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_resources(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, "out['r'] = m.resources()")
    assert out["r"] == {"total_nodes": 1, "total_cores": 2, "used_cores": 0, "free_cores": 2}


def test_submit_and_wait4_give_final_states(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        ids = m.submit(Jobs().add(name='a', exec='/bin/echo', args=['hi'], stdout='a.out')
                       .add(name='b', exec='/bin/false')
                       .add(name='c', exec='/bin/true', after=['b'])
                       .add(name='it', exec='/bin/true', iteration=3))
        out['ids'] = ids
        out['w'] = m.wait4(ids, timeout=30)
    """)
    assert out["ids"] == ["a", "b", "c", "it"]
    assert out["w"] == {"a": "SUCCEED", "b": "FAILED", "c": "OMITTED", "it": "SUCCEED"}


def test_output_lands_in_the_service_directory(upstream, our_service, tmp_path):
    run_upstream(upstream, our_service, tmp_path, """
        m.wait4(m.submit(Jobs().add(name='a', exec='/bin/echo', args=['hi'], stdout='a.out')))
    """)
    assert (tmp_path / "wd" / "a.out").read_text() == "hi\n"


def test_info_with_childs_and_info_parsed(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        m.wait4(m.submit(Jobs().add(name='it', exec='/bin/true', iteration=3)))
        out['info'] = m.info(['it'], withChilds=True)['jobs']['it']['data']
        ji = m.info_parsed('it', withChilds=True)['it']
        out['parsed'] = [ji.name, ji.status, ji.iterations, len(ji.childs),
                         [c.status for c in ji.childs], ji.childs[0].nodes]
    """)
    assert out["info"]["iterations"] == {"start": 0, "stop": 3, "total": 3, "finished": 3,
                                         "failed": 0}
    assert [child["state"] for child in out["info"]["childs"]] == ["SUCCEED"] * 3
    name, status, iterations, childs, child_states, nodes = out["parsed"]
    assert (name, status, childs, child_states) == ("it", "SUCCEED", 3, ["SUCCEED"] * 3)
    assert iterations["total"] == 3
    assert nodes in ({"n0": ["0"]}, {"n0": ["1"]})  # upstream parses our allocation string


def test_list_and_status(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        m.wait4(m.submit(Jobs().add(name='a', exec='/bin/true')))
        out['list'] = m.list()
        out['status'] = m.status(['a'])
    """)
    assert out["list"]["a"]["status"] == "SUCCEED"
    assert out["status"]["jobs"]["a"]["data"]["status"] == "SUCCEED"


def test_cancel_of_a_running_job(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        m.submit(Jobs().add(name='s', exec='/bin/sleep', args=['60']))
        deadline = time.time() + 20
        while m.status('s')['jobs']['s']['data']['status'] != 'EXECUTING':
            assert time.time() < deadline
            time.sleep(0.01)
        m.cancel(['s'])
        out['w'] = m.wait4(['s'], timeout=30)
    """)
    assert out["w"] == {"s": "CANCELED"}


def test_remove_and_reuse_of_the_name(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        m.wait4(m.submit(Jobs().add(name='a', exec='/bin/true')))
        m.remove(['a'])
        out['again'] = m.submit(Jobs().add(name='a', exec='/bin/true'))
        out['w'] = m.wait4(['a'])
    """)
    assert out == {"again": ["a"], "w": {"a": "SUCCEED"}}


def test_wait4all_and_system_status(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        m.submit(Jobs().add(name='a', exec='/bin/sleep', args=['0.2']).add(name='b', exec='/bin/true'))
        m.wait4all(timeout_secs=30)
        out['s'] = m.system_status()
    """)
    assert out["s"]["JobStats"]["FinishedJobs"] == 2
    assert out["s"]["System"]["StatusPublisher"] == our_service["pub_address"]


def test_service_errors_surface_with_the_service_message(upstream, our_service, tmp_path):
    out = run_upstream(upstream, our_service, tmp_path, """
        try:
            m.status(['nope'])
        except Exception as exc:
            out['e'] = [type(exc).__name__, str(exc)]
    """)
    assert out["e"] == ["ConnectionError", "Request failed - Job 'nope' doesn't exist"]


def test_finish_stops_our_service(upstream, our_service, tmp_path):
    run_upstream(upstream, our_service, tmp_path, "m.finish()")
    assert our_service["proc"].wait(timeout=10) == 0
