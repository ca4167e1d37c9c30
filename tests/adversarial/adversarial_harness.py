"""Helpers of the adversarial suite (see conftest.py for the fixtures)."""

import json
import os
import select
import time

import pytest
import zmq


def good_client_served(service, timeout: float = 3.0) -> bool:
    return service.raw(b'{"request": "resourcesInfo"}', timeout=timeout) is not None


def as_user(uid: int, gid: int, function, *args, timeout: float = 30.0):
    """``function(*args)`` run by ``uid`` in a forked child; its (JSON) result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, run, report, exit
        status = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            assert os.getuid() == uid and os.geteuid() == uid
            result = {"ok": function(*args)}
        except BaseException as exc:  # noqa: BLE001 -- reported to the parent
            result = {"error": "%s: %s" % (type(exc).__name__, exc)}
            status = 1
        try:
            with os.fdopen(write_fd, "w") as out:
                out.write(json.dumps(result))
        finally:
            os._exit(status)
    os.close(write_fd)
    end = time.monotonic() + timeout
    chunks = []
    try:
        while True:  # read until the child closes its end (it exits right after)
            ready, _, _ = select.select([read_fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                os.kill(pid, 9)
                pytest.fail("the attack as uid %d did not finish within %.0f s"
                            % (uid, timeout))
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks).decode() or "{}")
    if "error" in result:
        pytest.fail("the attack as uid %d broke: %s" % (uid, result["error"]))
    return result.get("ok")


def zmq_request(address: str, payload: bytes, timeout: float = 1.5, keys=None):
    """One request on a fresh context and REQ socket: the decoded reply or None."""
    context = zmq.Context()
    try:
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys
        sock.connect(address)
        sock.send(payload)
        if not sock.poll(int(timeout * 1000)):
            return None
        return json.loads(sock.recv())
    finally:
        context.destroy(linger=0)
