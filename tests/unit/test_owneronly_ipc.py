"""The default ipc:// endpoints: owner-only directory, and a socket path that fits."""

import os
import stat
import tempfile

import pytest

from qcgflow.runtime.owneronly import IpcEndpoints


@pytest.fixture
def tempdir(monkeypatch):
    def use(path):
        monkeypatch.setattr(tempfile, "tempdir", str(path))
    return use


def test_endpoints_live_in_an_owner_only_directory(tempdir):
    # a short parent (pytest's tmp_path plus a long pid can exceed the socket-path room)
    short = tempfile.mkdtemp(prefix="q", dir="/tmp")
    tempdir(short)
    ipc = IpcEndpoints("svc")
    try:
        assert os.path.dirname(ipc.directory) == short
        assert stat.S_IMODE(os.stat(ipc.directory).st_mode) == 0o700
        assert ipc.endpoint("request") == "ipc://%s/request:1" % ipc.directory
    finally:
        ipc.close()
    assert not os.path.exists(ipc.directory)
    os.rmdir(short)


def test_a_deep_tmpdir_falls_back_to_tmp_so_the_socket_path_fits(tempdir, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    tempdir(deep)
    ipc = IpcEndpoints("a-long-service-id-" + "x" * 40)
    try:
        assert os.path.dirname(ipc.directory) == "/tmp"
        path = ipc.endpoint("request")[len("ipc://"):]
        assert len(os.fsencode(path)) <= 107
        assert stat.S_IMODE(os.stat(ipc.directory).st_mode) == 0o700
    finally:
        ipc.close()
