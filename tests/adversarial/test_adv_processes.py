"""Issue 17, class 3: nothing a run started outlives it.

Daemons of every kind (``setsid``, double fork, ``nohup &``, a new process group) started
by tasks are gone when the run ends (all jobs done, ``finish``, SIGTERM, SIGINT,
``qcgflow.run``); a service whose owning client was SIGKILLed stops and takes its tasks
with it (LocalManager, ``qcgflow.run``, ``qcgflow run``), unless started detached. The
random-kill test draws its kill points from a fixed seed.
"""

import json
import os
import random
import signal
import subprocess
import textwrap

import pytest

import qcgflow
from adv_proc_harness import DAEMON_KINDS, PY, Marker, client, daemon_command, ready_line, sigkill
from support.eventually import eventually
from support.processes import child_env, pid_alive
from support.services import NetService

SERVICE = [PY, "-m", "qcgflow.cli", "service"]
STOP_DEADLINE = 20.0  # s for a service to notice its owner's death and end everything


def _job(name, command):
    return {"name": name, "execution": {"exec": "/bin/sh", "args": ["-c", command]}}


def _file_run(tmp_path, jobs, *opts, timeout=60):
    wd = tmp_path / "wd"
    wd.mkdir(exist_ok=True)
    requests = tmp_path / "req.json"
    requests.write_text(json.dumps([{"request": "submit", "jobs": jobs}]))
    return subprocess.run(SERVICE + ["--file-path", str(requests), "--wd", str(wd),
                                     "--nodes", "2"] + list(opts),
                          env=child_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("kind", DAEMON_KINDS)
def test_daemons_of_tasks_end_with_a_file_run(tmp_path, kind):
    with Marker() as marker:
        done = _file_run(tmp_path, [_job("d", daemon_command(kind, marker))])
        assert done.returncode == 0, done.stderr
        assert marker.gone(5.0), "the %s daemon outlived the run: %s" % (kind, marker.alive())


def test_daemons_end_without_a_journal(tmp_path):
    with Marker() as marker:
        done = _file_run(tmp_path, [_job("d", daemon_command("double-fork", marker))],
                         "--no-journal")
        assert done.returncode == 0, done.stderr
        assert marker.gone(5.0), marker.alive()


def test_daemon_of_a_daemon_ends(tmp_path):
    """A daemon that keeps forking new daemons: repeated scans catch the late ones too."""
    with Marker() as marker:
        code = ("import os, time\n"
                "for _ in range(30):\n"
                "    if os.fork() == 0:\n"
                "        os.setsid()\n"
                "        time.sleep(600)\n"
                "        os._exit(0)\n"
                "    time.sleep(0.02)\n"
                "time.sleep(600)\n")
        command = "setsid %s -c \"%s\" %s </dev/null >/dev/null 2>&1 &" % (PY, code, marker)
        done = _file_run(tmp_path, [_job("d", command + " sleep 0.3")])
        assert done.returncode == 0, done.stderr
        assert marker.gone(5.0), marker.alive()


@pytest.mark.parametrize("how", ["finish", "SIGTERM", "SIGINT"])
def test_daemons_and_running_tasks_end_when_the_service_is_stopped(tmp_path, how):
    with Marker() as marker:
        service = NetService(tmp_path, nodes="4")
        try:
            jobs = [_job("d%d" % i, daemon_command(kind, marker) + " sleep 600")
                    for i, kind in enumerate(DAEMON_KINDS)]
            reply = service.request({"request": "submit", "jobs": jobs})
            assert reply["code"] == 0, reply
            marker.wait_started(len(DAEMON_KINDS))
            if how == "finish":
                service.request({"request": "finish"})
            else:
                service.proc.send_signal(getattr(signal, how))
            service.proc.wait(STOP_DEADLINE)
            assert marker.gone(5.0), "left after %s: %s" % (how, marker.alive())
        finally:
            service.stop()


def test_opting_out_of_the_run_token_is_the_documented_escape(tmp_path):
    """A task that wants a process to outlive the run removes QCGFLOW_SERVICE_RUN from its
    environment (docs/security.md); everything else is ended."""
    with Marker() as keep, Marker() as other:
        command = ("env -u QCGFLOW_SERVICE_RUN %s %s"
                   % (daemon_command("setsid", keep), daemon_command("setsid", other)))
        done = _file_run(tmp_path, [_job("d", command + " sleep 0.3")])
        assert done.returncode == 0, done.stderr
        assert other.gone(5.0), other.alive()
        assert keep.alive(), "the opted-out daemon was killed too"


@qcgflow.task
def leave_daemon(marker):
    subprocess.run(["/bin/sh", "-c", daemon_command("double-fork", marker)], check=True)
    return marker


def test_qcgflow_run_leaves_no_daemon(tmp_path):
    with Marker() as marker:
        assert qcgflow.run(leave_daemon.bind(str(marker)), nodes=2,
                           wd=str(tmp_path / "run"), timeout=60) == str(marker)
        assert marker.gone(5.0), marker.alive()


_LOCAL_MANAGER = textwrap.dedent("""
    import json, sys
    from qcgflow.runtime.api import Jobs, LocalManager
    manager = LocalManager(["--nodes", "2"], cfg={"wd": %(wd)r, "detach": %(detach)r})
    jobs = Jobs()
    jobs.add(name="d", exec="/bin/sh", args=["-c", %(command)r])
    manager.submit(jobs)
    print(json.dumps({"pid": manager.pid, "address": manager.address}), flush=True)
    import time
    time.sleep(600)
""")


def _local_manager_client(tmp_path, marker, detach=False):
    script = _LOCAL_MANAGER % {"wd": str(tmp_path / "run"), "detach": detach,
                               "command": daemon_command("setsid", marker) + " sleep 600"}
    return client(script, tmp_path)


def test_sigkilled_local_manager_client_takes_its_service_and_tasks_along(tmp_path):
    with Marker() as marker:
        proc = _local_manager_client(tmp_path, marker)
        ready = ready_line(proc)
        marker.wait_started()
        sigkill(proc)
        eventually(lambda: not pid_alive(ready["pid"]), STOP_DEADLINE,
                   message="the service %d of a SIGKILLed client to stop" % ready["pid"])
        assert marker.gone(5.0), marker.alive()
        log = next((tmp_path / "run").glob(".qcgpjm-service-*/service.log")).read_text()
        assert "the process that started this service has ended" in log


def test_detached_local_manager_service_outlives_its_client(tmp_path):
    with Marker() as marker:
        proc = _local_manager_client(tmp_path, marker, detach=True)
        ready = ready_line(proc)
        marker.wait_started()
        sigkill(proc)
        try:
            from qcgflow.runtime.api import Manager
            manager = Manager(ready["address"])
            try:
                # still serving after its client died: the job is still running
                assert manager.status(["d"])["jobs"]["d"]["data"]["status"] == "EXECUTING"
                assert pid_alive(ready["pid"])
                manager.finish()
            finally:
                manager.cleanup()
            eventually(lambda: not pid_alive(ready["pid"]), STOP_DEADLINE,
                       message="the detached service to finish")
            assert marker.gone(5.0), marker.alive()
        finally:
            if pid_alive(ready["pid"]):
                os.kill(ready["pid"], signal.SIGKILL)


_RUN_CLIENT = textwrap.dedent("""
    import json, os, subprocess, sys
    import qcgflow
    sys.path[:0] = [%(here)r, os.path.dirname(%(here)r)]  # adv_proc_harness, support
    from adv_proc_harness import daemon_command

    @qcgflow.task
    def hang(marker):
        subprocess.run(["/bin/sh", "-c", daemon_command("setsid", marker)], check=True)
        print(json.dumps({"task": os.getpid(), "parent": os.getppid()}), flush=True)
        import time
        time.sleep(600)

    print(json.dumps({"client": os.getpid()}), flush=True)
    qcgflow.run(hang.bind(%(marker)r), nodes=2, wd=%(wd)r)
""")


def _services_under(path):
    import psutil
    found = []
    for proc in psutil.process_iter():
        try:
            line = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "service" in line and str(path) in " ".join(line):
            found.append(proc.pid)
    return found


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_signalled_qcgflow_run_client_takes_its_service_and_tasks_along(tmp_path, signum):
    """SIGKILL and SIGTERM end the client without any cleanup of its own (owner pipe);
    SIGINT raises KeyboardInterrupt in it (its session shuts the service down)."""
    with Marker() as marker:
        wd = tmp_path / "run"
        script = _RUN_CLIENT % {"here": os.path.dirname(__file__), "marker": str(marker),
                                "wd": str(wd)}
        proc = client(script, tmp_path)
        ready_line(proc)
        marker.wait_started()
        services = eventually(lambda: _services_under(wd), 20,
                              message="the session's service")
        proc.send_signal(signum)
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the client did not end after %s" % signal.Signals(signum).name)
        finally:
            proc.stdout.close()
            proc.stderr.close()
        eventually(lambda: not any(pid_alive(p) for p in services), STOP_DEADLINE,
                   message="the session's service to stop")
        assert marker.gone(5.0), marker.alive()


def test_sigkilled_workflow_cli_takes_its_service_and_tasks_along(tmp_path):
    with Marker() as marker:
        wf = tmp_path / "wf.yaml"
        wf.write_text("name: hang\ntasks:\n  d:\n    exec: /bin/sh\n    args: [-c, %s]\n"
                      % json.dumps(daemon_command("setsid", marker) + " sleep 600"))
        proc = subprocess.Popen([PY, "-m", "qcgflow.cli", "run", str(wf), "--wd",
                                 str(tmp_path / "run"), "--nodes", "2", "--quiet"],
                                env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            marker.wait_started()
            services = eventually(lambda: _services_under(tmp_path / "run"), 20,
                                  message="the workflow's service")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        sigkill(proc)
        eventually(lambda: not any(pid_alive(p) for p in services), STOP_DEADLINE,
                   message="the workflow's service to stop")
        assert marker.gone(5.0), marker.alive()


@pytest.mark.parametrize("seed", [17, 1717, 171717])
def test_client_killed_at_a_random_moment(tmp_path, seed):
    """SIGKILL a LocalManager client at a seeded random moment of its life (also while it
    is still starting the service): no service, task or daemon survives."""
    rng = random.Random(seed)
    delay = rng.uniform(0.0, 2.0)
    with Marker() as marker:
        proc = _local_manager_client(tmp_path, marker)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            pass
        sigkill(proc)
        eventually(lambda: not _services_under(tmp_path / "run"), STOP_DEADLINE,
                   message="the service of a client killed after %.2f s to stop" % delay)
        assert marker.gone(5.0), marker.alive()


@pytest.mark.slurm
@pytest.mark.parametrize("disable_nl", [False, True], ids=["agents", "srun"])
def test_daemons_of_slurm_tasks_end_with_the_run(tmp_path, disable_nl):
    """Slurm mode (the dev cluster's nodes all run on this host): tasks started by the node
    agents, or by one srun each, leave daemons; none is left when the run ends."""
    from support.slurm import require_slurm, salloc_run
    require_slurm()
    with Marker() as marker:
        jobs = [_job("d%d" % i, daemon_command(kind, marker) + " sleep 0.2")
                for i, kind in enumerate(("setsid", "double-fork"))]
        (tmp_path / "req.json").write_text(json.dumps([{"request": "submit", "jobs": jobs}]))
        done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                     str(tmp_path / "wd"), "--id", "t"]
                          + (["--disable-nl"] if disable_nl else []),
                          args=["--exclusive"], timeout=120)
        assert done.returncode == 0, done.stderr
        report = (tmp_path / "wd" / ".qcgpjm-service-t" / "jobs.report").read_text()
        states = [json.loads(line)["state"] for line in report.splitlines()]
        assert states == ["SUCCEED", "SUCCEED"], report
        assert marker.gone(5.0), marker.alive()


def test_client_ends_the_leftovers_of_a_sigkilled_service(tmp_path):
    """A service killed by SIGKILL cannot clean up; its LocalManager client, which learnt
    the run token from the ready line, ends the tasks' daemons when it sees the death."""
    from qcgflow.runtime.api import Jobs, LocalManager, errors
    with Marker() as marker:
        manager = LocalManager(["--nodes", "2"], cfg={"wd": str(tmp_path / "run")})
        try:
            jobs = Jobs()
            jobs.add(name="d", exec="/bin/sh",
                     args=["-c", daemon_command("double-fork", marker) + " sleep 600"])
            manager.submit(jobs)
            marker.wait_started()
            os.kill(manager.pid, signal.SIGKILL)
            try:
                manager.finish()  # raises when it already sees the death, else just ends
            except errors.ServiceError:
                pass
        finally:
            manager.cleanup()
        assert marker.gone(5.0), marker.alive()


@qcgflow.task
def kill_own_service(marker):
    import psutil
    subprocess.run(["/bin/sh", "-c", daemon_command("setsid", marker)], check=True)
    proc = psutil.Process()
    while "service" not in proc.cmdline():
        proc = proc.parent()
    proc.kill()
    return "unreachable"


def test_session_ends_the_leftovers_of_a_sigkilled_service(tmp_path):
    with Marker() as marker:
        with pytest.raises(qcgflow.errors.RunError):
            qcgflow.run(kill_own_service.bind(str(marker)), nodes=1,
                        wd=str(tmp_path / "run"), timeout=60)
        assert marker.gone(5.0), marker.alive()
