"""Issue 17, class 1: another local user on a shared node gets nothing from our service.

A throwaway user (``other_user``, made with useradd) attacks a real service that runs as
the test's user in a world-traversable project directory (``shared_dir``): it tries to
submit, query, subscribe, connect to the socket file and read every working file. Each
attempt must fail, and the service must keep serving its owner.

Before the fix the service listened on tcp://127.0.0.1 without authentication and wrote
0644 files in a 0755 directory: every attack here succeeded.
"""

import errno
import json
import os
import socket
import stat
import subprocess
import time

import pytest
import zmq

from adversarial_harness import as_user, zmq_request

SECRET = "s3cr3t-value-of-the-owner"
FILES = ("journal.jsonl", "service.log", "address", "jobs.report")


def _ipc_path(address: str) -> str:
    assert address.startswith("ipc://"), address
    return address[len("ipc://"):]


def attack_requests(address: str, marker: str) -> dict:
    """Submit a job that would create ``marker``, list jobs: the replies (None: none)."""
    submit = json.dumps({"request": "submit", "jobs": [{
        "name": "pwn", "execution": {"exec": "/bin/sh", "args": ["-c", "id > %s" % marker]}}]})
    return {"submit": zmq_request(address, submit.encode()),
            "list": zmq_request(address, b'{"request": "listJobs"}'),
            "status": zmq_request(address, b'{"request": "status"}')}


def attack_socket_file(address: str):
    """A raw connect to the ipc socket file: the errno (0 when it connected)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_ipc_path(address))
        return 0
    except OSError as exc:
        return exc.errno
    finally:
        sock.close()


def attack_subscribe(pub_address: str, seconds: float) -> int:
    """Subscribe to everything for ``seconds``: the number of messages received."""
    context = zmq.Context()
    try:
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(pub_address)
        received, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            if sub.poll(50):
                sub.recv_multipart()
                received += 1
        return received
    finally:
        context.destroy(linger=0)


def attack_files(aux_dir: str) -> dict:
    """Try to list the service directory and read each file: errno per target (0: read)."""
    out = {}
    try:
        os.listdir(aux_dir)
        out["listdir"] = 0
    except OSError as exc:
        out["listdir"] = exc.errno
    for name in FILES + ("keys/client.key_secret",):
        try:
            with open(os.path.join(aux_dir, name), "rb") as handle:
                handle.read(1)
            out[name] = 0
        except OSError as exc:
            out[name] = exc.errno
    return out


def _subscribe_while_owner_runs(service, other_user, seconds=2.5):
    """The other user subscribes while the owner runs a job (which publishes events)."""
    _, uid, gid = other_user
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            count = attack_subscribe(service.ready["pub_address"], seconds)
            os.write(write_fd, str(count).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    time.sleep(0.3)  # the subscription is in flight; now make events happen
    reply = service.request({"request": "submit", "jobs": [
        {"name": "ev%d" % i, "execution": {"exec": "/bin/true"}} for i in range(5)]})
    assert reply["code"] == 0, reply
    for i in range(5):
        service.wait_state("ev%d" % i)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as pipe:
        return int(pipe.read() or "-1")


def test_other_user_cannot_submit_query_or_connect(net_service, shared_dir, other_user):
    _, uid, gid = other_user
    service = net_service("--id", "adv", wd=shared_dir / "wd")
    marker = shared_dir / "pwned"
    os.chmod(shared_dir, 0o777)  # so a job run as the attacker could write the marker
    replies = as_user(uid, gid, attack_requests, service.address, str(marker))
    assert replies == {"submit": None, "list": None, "status": None}
    assert as_user(uid, gid, attack_socket_file, service.address) == errno.EACCES
    assert not marker.exists()
    listed = service.request({"request": "listJobs"})
    assert listed["code"] == 0 and "pwn" not in listed["data"]["jobs"]
    assert service.finish() == 0


def test_other_user_cannot_subscribe(net_service, shared_dir, other_user):
    service = net_service("--id", "adv", wd=shared_dir / "wd")
    assert _subscribe_while_owner_runs(service, other_user) == 0
    assert service.finish() == 0


def test_other_user_cannot_read_working_files(net_service, shared_dir, other_user):
    _, uid, gid = other_user
    service = net_service("--id", "adv", wd=shared_dir / "wd")
    reply = service.request({"request": "submit", "jobs": [{"name": "env", "execution": {
        "exec": "/bin/true", "env": {"API_TOKEN": SECRET}}}]})
    assert reply["code"] == 0, reply
    service.wait_state("env")
    aux = service.aux_dir
    assert SECRET in (aux / "journal.jsonl").read_text()  # what is at stake
    before = as_user(uid, gid, attack_files, str(aux))
    assert service.finish() == 0
    after = as_user(uid, gid, attack_files, str(aux))  # final files, after close
    for result in (before, after):
        assert set(result.values()) == {errno.EACCES}, result
    assert stat.S_IMODE(aux.stat().st_mode) == 0o700
    for path in aux.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), "%s is %o" % (path, mode)


def test_tcp_on_loopback_refuses_the_other_user(net_service, shared_dir, other_user):
    """Asked for TCP on 127.0.0.1 explicitly: CURVE, keys only the owner can read."""
    _, uid, gid = other_user
    service = net_service("--net-address", "127.0.0.1", "--id", "adv", wd=shared_dir / "wd")
    address = service.address
    assert address.startswith("tcp://127.0.0.1:")
    keys_dir = service.ready["keys_dir"]
    marker = shared_dir / "pwned"
    os.chmod(shared_dir, 0o777)
    replies = as_user(uid, gid, attack_requests, address, str(marker))
    assert replies == {"submit": None, "list": None, "status": None}
    files = as_user(uid, gid, attack_files, str(service.aux_dir))
    assert set(files.values()) == {errno.EACCES}, files
    assert not marker.exists()
    assert "refused an unauthenticated connection" in service.log()
    # the owner, with the keys, is served
    keys = tuple(open(os.path.join(keys_dir, n), "rb").read().strip()
                 for n in ("server.key", "client.key", "client.key_secret"))
    assert zmq_request(address, b'{"request": "resourcesInfo"}', 5.0, keys)["code"] == 0
    service.kill()


def test_owner_still_served_and_ipc_directory_removed(net_service, shared_dir):
    """The owner's own clients connect to the reported address; the socket directory
    (0700) disappears with the service."""
    service = net_service("--id", "adv", wd=shared_dir / "wd")
    directory = os.path.dirname(_ipc_path(service.address))
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert service.request({"request": "resourcesInfo"})["code"] == 0
    assert service.finish() == 0
    assert not os.path.exists(directory)


def test_upstream_client_works_with_the_default_address(net_service, shared_dir):
    """QCG-PilotJob 0.14.2's own Manager, unchanged, on the ipc:// address we report."""
    python = "/tmp/qcgflow-test-venvs/qcgpj-0.14.2/bin/python"
    if not os.path.exists(python):
        pytest.skip("the upstream side venv is missing (tests/upstream_venv.py creates it)")
    service = net_service("--id", "adv", wd=shared_dir / "wd")
    code = ("import sys, json\nfrom qcg.pilotjob.api.manager import Manager\n"
            "from qcg.pilotjob.api.job import Jobs\nm = Manager(address=sys.argv[1])\n"
            "ids = m.submit(Jobs().add(name='a', exec='/bin/true'))\n"
            "print(json.dumps(m.wait4(ids, timeout=30)))\n")
    done = subprocess.run([python, "-c", code, service.address], capture_output=True,
                          text=True, timeout=60, cwd=str(shared_dir))  # its .qcgpjm-client/
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"a": "SUCCEED"}
    assert service.finish() == 0


def test_file_mode_working_files_are_owner_only(tmp_path, shared_dir, other_user):
    """Without --net too: the requests file's jobs' env lands in journal.jsonl, 0600 in 0700."""
    from support.services import run_service
    _, uid, gid = other_user
    wd = shared_dir / "filewd"
    request = {"request": "submit", "jobs": [{"name": "env", "execution": {
        "exec": "/bin/true", "env": {"API_TOKEN": SECRET}}}]}
    result = run_service(tmp_path, [request], wd=wd)
    assert result.returncode == 0, result.describe()
    aux = result.aux_dir
    assert SECRET in (aux / "journal.jsonl").read_text()
    found = as_user(uid, gid, attack_files, str(aux))
    assert set(found.values()) == {errno.EACCES}, found
    for path in [aux, *aux.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), "%s is %o" % (path, mode)


def test_socket_directory_of_a_killed_service_is_swept_by_the_next(net_service, shared_dir):
    """SIGKILL leaves the ipc directory behind; the next service removes it (its pid is
    gone) and keeps those of live services."""
    first = net_service(wd=shared_dir / "a", service_id="first")
    second = net_service(wd=shared_dir / "b", service_id="second")
    killed = os.path.dirname(_ipc_path(first.address))
    alive = os.path.dirname(_ipc_path(second.address))
    first.kill()
    assert os.path.isdir(killed)
    third = net_service(wd=shared_dir / "c", service_id="third")
    assert not os.path.exists(killed)
    assert os.path.isdir(alive)
    for service in (second, third):
        assert service.request({"request": "resourcesInfo"})["code"] == 0
        assert service.finish() == 0
