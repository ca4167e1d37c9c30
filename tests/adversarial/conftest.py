"""The adversarial suite (issue 17): hostile peers, other local users, endless inputs.

Everything is real: ``qcgflow service`` processes, ZeroMQ and raw sockets, a second
local user made for the test. Shared fixtures and helpers:

* ``net_service(*opts, wd=None)``: a factory of ``support.services.NetService`` (``raw``,
  ``request``, ``socket``, ``wait_state``, ``finish``, ``log``), each finished (or
  killed) at teardown.
* ``other_user``: ``(name, uid, gid)`` of a throwaway local user, created with
  ``useradd`` for the test and deleted with ``userdel`` afterwards. Needs root; skipped
  (with the reason) otherwise.
* in ``adversarial_harness`` (import it by that name: several test directories have a
  ``conftest``): ``as_user(uid, gid, function, *args, timeout)``: runs ``function(*args)``
  in a forked child that dropped to ``uid``/``gid`` (setgroups/setgid/setuid, what
  ``setpriv`` does;
  the interpreter lives under /root, which the other user cannot execute), and returns
  what it returned (JSON-able) -- or fails the test when it does not finish in time.
* ``shared_dir``: a fresh world-traversable (0755) directory under /tmp, as a project
  directory on a shared node would be; removed afterwards. (pytest's tmp_path lies in a
  0700 directory, which would hide a service's files from another user by accident.)
  ``good_client_served(service, timeout)``: True when a fresh REQ client gets its answer;
  ``zmq_request(address, payload, timeout, keys)``: one request on a fresh context.
"""

import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from adversarial_harness import as_user, good_client_served, zmq_request  # noqa: F401
from support.services import NetService


def pytest_collection_modifyitems(items):
    for item in items:
        if "/adversarial/" in str(item.fspath):
            item.add_marker(pytest.mark.adversarial)


def pytest_configure(config):
    config.addinivalue_line("markers", "adversarial: issue 17's hostile-input suite")


@pytest.fixture
def net_service(tmp_path):
    started = []

    def start(*opts, wd=None, service_id="adv"):
        svc = NetService(tmp_path, *opts, wd=wd, service_id=service_id)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def shared_dir():
    path = Path(tempfile.mkdtemp(prefix="qcgflow-adv-shared-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_user():
    if os.geteuid() != 0:
        pytest.skip("a second local user is created only when the tests run as root "
                    "(run this module as root, e.g. in the CI container)")
    if not shutil.which("useradd") or not shutil.which("userdel"):
        pytest.skip("useradd/userdel missing (apt-get install passwd)")
    name = "qfadv%06d" % random.Random().randrange(10 ** 6)
    done = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                           "--user-group", name], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip("useradd failed: %s" % done.stderr.strip())
    import pwd
    entry = pwd.getpwnam(name)
    try:
        yield name, entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
