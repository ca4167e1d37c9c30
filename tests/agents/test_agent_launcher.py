"""The node launcher agent and the manager's AgentLauncher, over real ZeroMQ on loopback.

Agents are started with the "local" start method (a child process of the test) so these
tests need no Slurm; tests/slurm/ starts them with srun and ssh on the dev cluster.
"""

import ipaddress
import json
import os
import signal
import socket
import sys
import time

import psutil
import pytest
import zmq

from qcgflow.runtime.eventloop import EventLoop
from qcgflow.runtime.launch import agent as agent_module
from qcgflow.runtime.launch.agents import AgentLauncher
from qcgflow.runtime.launch.local import ProcessSpec


class Rig:
    """An event loop, an AgentLauncher on it and what its callbacks reported."""

    def __init__(self, tmp_path, nodes=("a1", "a2"), **kwargs):
        self.loop = EventLoop()
        self.dir = str(tmp_path)
        self.up, self.lost = [], []
        self.launcher = AgentLauncher(
            self.loop, list(nodes), os.path.join(self.dir, "agents"), self.dir,
            {"PATH": os.environ["PATH"], "BASE": "1"}, start_method="local", log_dir=self.dir,
            on_node_up=self.up.append, on_node_lost=lambda n, why: self.lost.append((n, why)),
            **kwargs)
        self.events = []

    def run_until(self, predicate, timeout=20.0):
        deadline = time.monotonic() + timeout

        def check():
            if predicate() or time.monotonic() > deadline:
                self.loop.stop()
            else:
                self.loop.call_later(0.005, check)
        self.loop.call_soon(check)
        self.loop.run()
        assert predicate(), "condition not met within %ss" % timeout

    def start(self, count=2):
        self.launcher.start()
        self.run_until(lambda: len(self.up) >= count)

    def launch(self, argv, node="a1", cpus=None, env=None, name="t", stdout=None):
        record = {"name": name}
        self.events.append(record)
        self.launcher.launch(
            ProcessSpec(argv, env or {"PATH": os.environ["PATH"], "BASE": "1"}, self.dir,
                        None, stdout, stdout, cpus=cpus, node=node),
            lambda pid: record.__setitem__("pid", pid),
            lambda info: record.__setitem__("exit", info),
            lambda message: record.__setitem__("error", message))
        return record

    def close(self):
        self.launcher.close()


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(**kwargs):
        made.append(Rig(tmp_path, **kwargs))
        return made[-1]
    yield make
    for item in made:
        item.close()


def test_agents_register_on_every_node(rig):
    r = rig()
    r.start()
    assert sorted(r.up) == ["a1", "a2"]


def test_task_runs_and_exit_code_is_reported(rig):
    r = rig()
    r.start()
    t = r.launch(["/bin/sh", "-c", "exit 7"])
    r.run_until(lambda: "exit" in t)
    assert t["exit"].exit_code == 7


def test_task_is_bound_to_its_cpus(rig, tmp_path):
    r = rig()
    r.start()
    out = str(tmp_path / "status")
    t = r.launch(["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"], cpus=[0],
                 stdout=out)
    r.run_until(lambda: "exit" in t)
    assert open(out).read().split()[-1] == "0"


def test_task_environment_is_base_plus_changes_minus_removed(rig, tmp_path):
    r = rig()
    r.start()
    out = str(tmp_path / "env")
    t = r.launch(["/bin/sh", "-c", "echo ${BASE:-unset} $EXTRA"], stdout=out,
                 env={"PATH": os.environ["PATH"], "EXTRA": "x"})
    r.run_until(lambda: "exit" in t)
    assert open(out).read().split() == ["unset", "x"]


def test_missing_executable_is_an_error_naming_it(rig):
    r = rig()
    r.start()
    t = r.launch(["no-such-program-xyz"])
    r.run_until(lambda: "error" in t)
    assert "no-such-program-xyz" in t["error"]


def test_signal_reaches_the_task(rig):
    r = rig()
    r.start()
    t = r.launch(["/bin/sleep", "30"])
    r.run_until(lambda: "pid" in t)
    r.launcher.signal(t["pid"], signal.SIGTERM, "a1")
    r.run_until(lambda: "exit" in t)
    assert t["exit"].signal == signal.SIGTERM


def test_task_on_unknown_node_is_an_error(rig):
    r = rig()
    r.start()
    t = r.launch(["/bin/true"], node="zz")
    r.run_until(lambda: "error" in t)
    assert t["error"] == "no node launcher agent on node zz"


def _agent_pid(r, node):
    for proc in psutil.Process().children(recursive=True):
        cmd = proc.cmdline()
        if "qcgflow.runtime.launch.agent" in cmd and node in cmd:
            return proc.pid
    raise AssertionError("no agent process for %s" % node)


def test_lost_agent_fails_its_running_task_with_the_cause(rig):
    r = rig()
    r.start()
    t = r.launch(["/bin/sleep", "30"], node="a2")
    r.run_until(lambda: "pid" in t)
    os.kill(_agent_pid(r, "a2"), signal.SIGKILL)
    r.run_until(lambda: "exit" in t, timeout=10)
    assert t["exit"].failure.startswith("agent on a2 lost")


def test_lost_agent_is_reported_once(rig):
    r = rig()
    r.start()
    os.kill(_agent_pid(r, "a1"), signal.SIGKILL)
    r.run_until(lambda: r.lost, timeout=10)
    assert [node for node, _ in r.lost] == ["a1"]


def test_other_node_keeps_working_after_a_loss(rig):
    r = rig()
    r.start()
    os.kill(_agent_pid(r, "a1"), signal.SIGKILL)
    r.run_until(lambda: r.lost, timeout=10)
    t = r.launch(["/bin/true"], node="a2")
    r.run_until(lambda: "exit" in t)
    assert t["exit"].exit_code == 0


def test_launch_on_a_lost_node_is_an_error(rig):
    r = rig()
    r.start()
    os.kill(_agent_pid(r, "a1"), signal.SIGKILL)
    r.run_until(lambda: r.lost, timeout=10)
    t = r.launch(["/bin/true"], node="a1")
    r.run_until(lambda: "error" in t)
    assert t["error"] == "agent on a1 lost"


def test_close_kills_running_tasks(rig):
    r = rig()
    r.start()
    t = r.launch(["/bin/sleep", "30"])
    r.run_until(lambda: "pid" in t)
    r.close()
    assert not psutil.pid_exists(t["pid"]) or \
        psutil.Process(t["pid"]).status() == psutil.STATUS_ZOMBIE


def _non_loopback_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only picks the route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def test_agents_use_curve_off_loopback(rig, tmp_path):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to listen on")
    r = rig(bind_host=address)
    r.start()
    t = r.launch(["/bin/true"])
    r.run_until(lambda: "exit" in t)
    assert os.path.exists(tmp_path / "agents" / "server.key")


def test_plain_client_cannot_talk_to_curve_agents_socket(rig):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to listen on")
    r = rig(bind_host=address)
    r.start()
    context = zmq.Context()
    intruder = context.socket(zmq.DEALER)
    intruder.setsockopt(zmq.LINGER, 0)
    intruder.connect(r.launcher.address)
    intruder.send(json.dumps({"op": "register", "node": "a1", "version": 1}).encode())
    answered = intruder.poll(500)
    intruder.close()
    context.term()
    assert answered == 0


def _raw_register(address, message):
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    sock.send(json.dumps(message).encode())
    reply = None
    deadline = time.monotonic() + 5
    return context, sock, reply, deadline


def _exchange(r, message):
    context, sock, _, deadline = _raw_register(r.launcher.address, message)
    reply = []

    def poll():
        if sock.poll(0):
            reply.append(json.loads(sock.recv()))
            r.loop.stop()
        elif time.monotonic() < deadline:
            r.loop.call_later(0.005, poll)
        else:
            r.loop.stop()
    r.loop.call_soon(poll)
    r.loop.run()
    sock.close()
    context.term()
    return reply[0] if reply else None


def _token(r):
    with open(os.path.join(r.dir, "agents", "token")) as handle:
        return handle.read().strip()


def test_wrong_token_is_refused(rig):
    r = rig(nodes=("a1",))
    r.start(1)
    reply = _exchange(r, {"op": "register", "node": "a1", "version": 1, "token": "bad"})
    assert reply == {"op": "refused", "reason": "wrong token"}


def test_other_protocol_version_is_refused_with_advice(rig):
    r = rig(nodes=("a1",))
    r.start(1)
    reply = _exchange(r, {"op": "register", "node": "a1", "version": 99, "token": _token(r)})
    assert "install the same qcgflow on every node" in reply["reason"]


def test_second_agent_for_a_node_is_refused(rig):
    r = rig(nodes=("a1",))
    r.start(1)
    reply = _exchange(r, {"op": "register", "node": "a1",
                          "version": agent_module.PROTOCOL_VERSION, "token": _token(r)})
    assert reply["reason"] == "node a1 already has an agent"


@pytest.fixture
def bare_manager(tmp_path):
    """A ROUTER socket playing the manager by hand, and a function that starts an agent
    connected to it (returns the process and the agent's identity once it registered)."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    secrets = tmp_path / "s"
    secrets.mkdir()
    (secrets / "token").write_text("t\n")

    def start_agent(*options):
        proc = psutil.Popen([sys.executable, "-m", "qcgflow.runtime.launch.agent", "--manager",
                             "tcp://127.0.0.1:%d" % port, "--node", "x", "--secrets",
                             str(secrets), *options], stderr=-1)
        assert router.poll(10000)
        identity, _ = router.recv_multipart()
        return proc, identity
    yield router, start_agent
    router.close()
    context.term()


def test_agent_refused_exits_with_its_reason(bare_manager):
    router, start_agent = bare_manager
    proc, identity = start_agent()
    router.send_multipart([identity, b'{"op": "refused", "reason": "go away"}'])
    _, err = proc.communicate(timeout=10)
    assert (proc.returncode, err.decode().strip()) == (
        agent_module.EXIT_REFUSED, "qcgflow agent: refused by the manager: go away")


def test_orphaned_agent_kills_its_tasks_and_exits(bare_manager, tmp_path):
    router, start_agent = bare_manager
    proc, identity = start_agent("--orphan-timeout", "1.5")
    router.send_multipart([identity, b'{"op": "welcome", "env": {}}'])
    router.send_multipart([identity, json.dumps({
        "op": "launch", "id": 1, "argv": ["/bin/sleep", "60"], "cwd": str(tmp_path)}).encode()])
    pid = None
    deadline = time.monotonic() + 10
    while pid is None and time.monotonic() < deadline:
        if router.poll(100):
            message = json.loads(router.recv_multipart()[1])
            if message["op"] == "started":
                pid = message["pid"]
    proc.wait(timeout=15)  # no more messages from the "manager": the agent gives up
    assert proc.returncode == agent_module.EXIT_ORPHANED and not psutil.pid_exists(pid)


def test_agent_terminated_like_at_allocation_end_reports_tasks_as_interrupted(rig):
    terminating = []
    r = rig()
    r.launcher.on_node_terminating = lambda node, signum: terminating.append((node, signum))
    r.start()
    t = r.launch(["/bin/sleep", "30"], node="a2")
    r.run_until(lambda: "pid" in t)
    # what Slurm does when the allocation ends: every process of the step gets SIGTERM
    os.kill(_agent_pid(r, "a2"), signal.SIGTERM)
    r.run_until(lambda: terminating)
    os.kill(t["pid"], signal.SIGTERM)
    r.run_until(lambda: "exit" in t)
    assert (terminating, t["exit"].interrupted) == (
        [("a2", signal.SIGTERM)],
        "interrupted: the agent on a2 got SIGTERM (the allocation is ending or was canceled)")


def test_terminated_agent_kills_what_is_left_after_its_grace(rig):
    r = rig()
    r.start()
    t = r.launch(["/bin/sleep", "30"], node="a1")
    r.run_until(lambda: "pid" in t)
    os.kill(_agent_pid(r, "a1"), signal.SIGTERM)
    r.run_until(lambda: "exit" in t, timeout=agent_module.TERMINATE_GRACE + 10)
    gone = not psutil.pid_exists(t["pid"]) or \
        psutil.Process(t["pid"]).status() == psutil.STATUS_ZOMBIE
    assert (gone, t["exit"].interrupted is not None) == (True, True)


def test_a_starter_that_cannot_be_executed_loses_its_node_with_the_cause(rig, tmp_path):
    r = rig(nodes=("a1",))
    missing = str(tmp_path / "no-such-starter")
    r.launcher.starter_command = lambda node: [missing, node]
    r.launcher.start()
    r.run_until(lambda: r.lost)
    node, why = r.lost[0]
    assert node == "a1"
    assert "cannot start its agent" in why and "no-such-starter" in why
