"""A governor with real local managers (processes over loopback ZeroMQ)."""

import ipaddress
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from governor_harness import Cluster, job
from qcgflow.runtime.api import Jobs, Manager as ApiManager
from support.eventually import eventually


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def two_managers(cluster, *governor_options):
    cluster.start_governor("--id", "gov", "--tags", "top,demo", *governor_options)
    cluster.start_manager("m1", "--nodes", "2", "--tags", "left")
    cluster.start_manager("m2", "--nodes", "2", "--tags", "right")
    cluster.wait_managers(2)


def test_cross_manager_dependencies_run_in_order(cluster, tmp_path):
    two_managers(cluster)
    # a -> 4 iterations of b (spread over both managers) -> c reads what they all wrote
    jobs = [job("a", "echo A > a.txt"),
            job("b", "cat a.txt > b${it}.txt; sleep 0.3", after=["a"],
                iteration={"start": 0, "stop": 4}),
            job("c", "cat b0.txt b1.txt b2.txt b3.txt > c.txt", after=["b"])]
    assert cluster.request({"request": "submit", "jobs": jobs})["code"] == 0
    states = cluster.wait_final(["a", "b", "c"])
    assert {n: states[n]["status"] for n in "abc"} == dict.fromkeys("abc", "SUCCEED")
    assert (tmp_path / "c.txt").read_text() == "A\n" * 4
    info = cluster.request({"request": "jobInfo", "jobNames": ["b"], "params":
                            {"withChilds": True}})["data"]["jobs"]["b"]["data"]
    managers = {child["runtime"]["manager"] for child in info["childs"]}
    assert managers == {"m1", "m2"}


def test_values_iterations_keep_their_index_and_value(cluster, tmp_path):
    two_managers(cluster)
    cluster.request({"request": "submit", "jobs": [
        job("v", "echo ${it} '${itval}' > v${it}.txt",
            iteration={"values": ["x", "y$z", "w"]})]})
    cluster.wait_final(["v"])
    assert [(tmp_path / ("v%d.txt" % i)).read_text() for i in range(3)] == [
        "0 x\n", "1 y$z\n", "2 w\n"]


def test_dollar_dollar_it_survives_the_governor_as_upstream(cluster, tmp_path):
    """upstream test_governor (``wd: <base>_$${it}``): the governor's submit stage gives
    ``${it}``, the manager's stages the index; ``$$$$`` stays one literal ``$``; values
    went through the submit stage (``v$$`` is ``v$``) and are inserted as they are."""
    two_managers(cluster)
    desc = job("d", "echo '$$$$x' ${itval} > out.txt", iteration={"values": ["v$$", "w"]})
    desc["execution"]["wd"] = str(tmp_path / "env_$${it}")
    cluster.request({"request": "submit", "jobs": [desc]})
    assert cluster.wait_final(["d"])["d"]["status"] == "SUCCEED"
    assert [(tmp_path / ("env_%d" % i) / "out.txt").read_text() for i in range(2)] == [
        "$x v$\n", "$x w\n"]
    assert not (tmp_path / "env_${it}").exists()


def test_failed_dependency_omits_across_managers(cluster):
    two_managers(cluster)
    jobs = [job("bad", "exit 3"), job("after_bad", "true", after=["bad"])]
    cluster.request({"request": "submit", "jobs": jobs})
    states = cluster.wait_final(["bad", "after_bad"])
    assert (states["bad"]["status"], states["after_bad"]["status"]) == ("FAILED", "OMITTED")


def test_failed_iteration_keeps_its_own_cause(cluster):
    two_managers(cluster)
    cluster.request({"request": "submit", "jobs": [
        job("it", "exit $(( ${it} + 3 ))", iteration={"start": 0, "stop": 2})]})
    cluster.wait_final(["it"])
    reply = cluster.request({"request": "jobStatus", "jobNames": ["it:1"]})
    message = reply["data"]["jobs"]["it:1"]["data"]["messages"]
    assert "4" in message and "iterations" not in message, message


def test_job_bigger_than_every_manager_is_refused(cluster):
    two_managers(cluster)
    reply = cluster.request({"request": "submit", "jobs": [
        job("big", "true", resources={"numCores": {"exact": 3}})]})
    assert reply["code"] != 0 and "fits no registered manager" in reply["message"], reply


def test_submit_without_managers_says_how_to_add_them(cluster):
    cluster.start_governor("--id", "lonely")
    reply = cluster.request({"request": "submit", "jobs": [job("a", "true")]})
    assert "No manager is registered" in reply["message"] and "--parent" in reply["message"]


def test_resources_are_the_sum_over_managers(cluster):
    two_managers(cluster)
    data = cluster.request({"request": "resourcesInfo"})["data"]
    assert (data["total_nodes"], data["total_cores"]) == (2, 4)


def test_status_lists_ids_and_tags(cluster, tmp_path):
    two_managers(cluster)
    status = cluster.status()
    assert (status["System"]["InstanceId"], status["System"]["Tags"],
            status["System"]["Role"]) == ("gov", ["top", "demo"], "governor")
    assert {(m["Id"], tuple(m["Tags"])) for m in status["Managers"]} == {
        ("m1", ("left",)), ("m2", ("right",))}
    log = (tmp_path / ".qcgpjm-service-gov" / "service.log").read_text()
    assert "manager m1 registered" in log and "tags: left" in log
    assert "tags: top,demo" in log
    m1_log = (tmp_path / ".qcgpjm-service-m1" / "service.log").read_text()
    assert "service m1 version" in m1_log and "(with tags m1,left)" in m1_log


def test_killed_manager_fails_its_jobs_and_the_rest_go_on(cluster):
    two_managers(cluster, "--manager-timeout", "2")
    # one long job per manager, then work that needs a manager afterwards
    cluster.request({"request": "submit", "jobs": [
        job("long", "sleep 60", iteration={"start": 0, "stop": 4}),
    ]})
    cluster.wait_state("long", "EXECUTING")

    def long_info():
        return cluster.request({"request": "jobInfo", "jobNames": ["long"], "params":
                                {"withChilds": True}})["data"]["jobs"]["long"]["data"]

    info = eventually(lambda: (lambda info: info if all(
        c["state"] == "EXECUTING" for c in info["childs"]) else None)(long_info()), 20, 0.05,
        lambda: "every iteration of long EXECUTING: %s" % long_info())
    on_m2 = [c["iteration"] for c in info["childs"] if c["runtime"]["manager"] == "m2"]
    assert len(on_m2) == 2
    cluster.managers["m2"].send_signal(signal.SIGKILL)
    cluster.managers["m2"].wait()
    cluster.request({"request": "submit", "jobs": [job("later", "true")]})
    for it in on_m2:
        name = "long:%d" % it

        def status(name=name):
            reply = cluster.request({"request": "jobStatus", "jobNames": [name]})
            return reply["data"]["jobs"][name]["data"]

        data = eventually(lambda: (lambda data: data if data["status"] == "FAILED" else None)(
            status()), 20, 0.05, lambda: "%s FAILED: %s" % (name, status()))
        assert "manager m2 lost" in data.get("messages", ""), data
    # the survivor's cores are still busy with long:0/1, so `later` waits; cancel them
    assert cluster.list_jobs()["later"]["status"] == "QUEUED"
    on_m1 = ["long:%d" % c["iteration"] for c in info["childs"]
             if c["runtime"]["manager"] == "m1"]
    cluster.request({"request": "cancelJob", "jobNames": on_m1})
    states = cluster.wait_final(["later", "long"])
    assert (states["later"]["status"], states["long"]["status"]) == ("SUCCEED", "FAILED")
    managers = {m["Id"]: m for m in cluster.status()["Managers"]}
    assert (managers["m2"]["State"], managers["m1"]["State"]) == ("LOST", "UP")


def test_upstream_api_manager_drives_the_governor(cluster, tmp_path):
    two_managers(cluster)
    api = ApiManager(cluster.ready["address"], {"poll_delay": 0.1})
    try:
        jobs = Jobs().add(name="first", exec="/bin/sh", args=["-c", "echo 1 > one.txt"])
        jobs.add(name="second", exec="/bin/sh", args=["-c", "cat one.txt > two.txt"],
                 after=["first"], iteration=3)
        names = api.submit(jobs)
        api.wait4(names, timeout=60)
        status = api.status(names)
        assert {n: status["jobs"][n]["data"]["status"] for n in names} == {
            "first": "SUCCEED", "second": "SUCCEED"}
        assert api.resources()["total_cores"] == 4
    finally:
        api.cleanup()
    assert (tmp_path / "two.txt").read_text() == "1\n"


def test_governor_reports_every_job_and_iteration(cluster, tmp_path):
    two_managers(cluster)
    cluster.request({"request": "submit", "jobs": [
        job("it", "true", iteration={"start": 0, "stop": 3}), job("one", "true")]})
    cluster.wait_final(["it", "one"])
    cluster.stop()
    aux = tmp_path / ".qcgpjm-service-gov"
    names = {json.loads(line)["name"] for line in (aux / "jobs.report").read_text().split("\n")
             if line.strip()}
    assert names == {"it", "it:0", "it:1", "it:2", "one"}
    final = json.loads((aux / "final_status.json").read_text())
    assert (final["JobStats"]["TotalJobs"], final["IterationStats"]["FinishedIterations"]) \
        == (2, 4)


def test_finish_stops_the_managers_too(cluster):
    two_managers(cluster)
    cluster.request({"request": "finish"})
    codes = {name: proc.wait(timeout=20) for name, proc in cluster.managers.items()}
    assert codes == {"m1": 0, "m2": 0}


def test_manager_with_a_wrong_token_is_refused_with_the_reason(cluster, tmp_path):
    cluster.start_governor("--id", "gov")
    fake = tmp_path / "fake-secrets"
    fake.mkdir()
    (fake / "token").write_text("not-the-token\n")
    process = cluster.start_manager("intruder", "--nodes", "1")
    process.kill()  # replaced below by one with the wrong secrets
    process.wait()
    cluster.managers.pop("intruder")
    cluster.ready = dict(cluster.ready, governor_secrets=str(fake))
    process = cluster.start_manager("intruder", "--nodes", "1")
    _, err = process.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 3 and len(lines) == 1, err
    assert "refused this manager: wrong token" in lines[0]
    assert cluster.status()["Managers"] == []


def test_manager_ends_when_its_governor_is_gone(cluster):
    two_managers(cluster, "--manager-timeout", "1")
    cluster.governor.send_signal(signal.SIGKILL)
    cluster.governor.wait()
    _, err = cluster.managers["m1"].communicate(timeout=30)
    assert cluster.managers["m1"].returncode == 3, err
    assert "governor at" in err and "lost" in err, err


def _outside_address():
    for addresses in psutil.net_if_addrs().values():
        for item in addresses:
            if item.family.name == "AF_INET" and not ipaddress.ip_address(
                    item.address).is_loopback:
                return item.address
    return None


def test_off_loopback_managers_register_over_curve(cluster, tmp_path):
    address = _outside_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 interface on this host (CURVE is used only off "
                    "loopback); run on a host with a network interface")
    cluster.start_governor("--id", "gov", "--net-address", address)
    secrets = cluster.ready["governor_secrets"]
    assert {"token", "server.key", "client.key", "client.key_secret"} <= set(os.listdir(secrets))
    cluster.start_manager("m1", "--nodes", "1")
    cluster.wait_managers(1)
    cluster.request({"request": "submit", "jobs": [job("a", "echo ok > a.txt")]})
    assert cluster.wait_final(["a"])["a"]["status"] == "SUCCEED"
    # a manager holding the token but not the CURVE keys never gets through
    token_only = tmp_path / "token-only"
    token_only.mkdir()
    (token_only / "token").write_text(open(os.path.join(secrets, "token")).read())
    cluster.ready = dict(cluster.ready, governor_secrets=str(token_only))
    intruder = cluster.start_manager("m2", "--nodes", "1")
    log = tmp_path / ".qcgpjm-service-gov" / "service.log"
    eventually(lambda: "refused an unauthenticated connection on the governor socket"
               in log.read_text(), 20, 0.05,
               lambda: "the refusal in the governor's log: %s" % log.read_text()[-2000:])
    intruder.kill()
    assert [m["Id"] for m in cluster.status()["Managers"]] == ["m1"]


@pytest.mark.parametrize("parent, secrets_exist, needle", [
    ("not-an-endpoint", True, "--parent not-an-endpoint: not a usable address"),
    ("tcp://127.0.0.1:1", False, "--parent-secrets: cannot read"),
])
def test_bad_parent_options_are_one_line_errors(tmp_path, parent, secrets_exist, needle):
    secrets = tmp_path / "secrets"
    if secrets_exist:
        secrets.mkdir()
        (secrets / "token").write_text("t\n")
    done = subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--nodes", "1",
                           "--parent", parent, "--parent-secrets", str(secrets), "--wd",
                           str(tmp_path), "--id", "bad"], capture_output=True, text=True,
                          timeout=30)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert (done.returncode, len(lines)) == (2, 1), done.stderr
    assert needle in lines[0], lines[0]
