"""The shim's side of the zygote hand-over (see template.py for the whole protocol).

``python -m qcgflow.runtime.launch.zygote`` started with ``QCGFLOW_ZYGOTE_TEMPLATE`` set
connects to a client's forked template, gives it the zygote's sockets, its stderr and
(environment, cwd), and waits until the template ends. The wire pieces both sides use
(length-prefixed frames, the peer's credentials) live here too, below both ``zygote.py``
(which calls ``hand_over``) and ``template.py`` (which becomes a ``Zygote``).
"""

import os
import pickle
import select
import socket
import struct
import time
from typing import List

TEMPLATE_ENV = "QCGFLOW_ZYGOTE_TEMPLATE"
HEADER = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def peer(sock: socket.socket):
    """(pid, uid) of the process at the other end of a unix socket."""
    pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the other end closed early")
        data += chunk
    return data


def recv_frame(conn: socket.socket) -> bytes:
    (size,) = HEADER.unpack(_recv_exact(conn, HEADER.size))
    return _recv_exact(conn, size)


def hand_over(path: str, fds: List[int]) -> bool:
    """In the shim (``python -m ...zygote`` with ``QCGFLOW_ZYGOTE_TEMPLATE`` set): give the
    zygote's sockets to the template at ``path`` and wait until it ends. False, with
    nothing handed over, when there is no usable template: then run as the zygote."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(path)
        if peer(sock)[1] != os.getuid():
            raise OSError("the template's socket belongs to another user")
        (pid,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
        socket.send_fds(sock, [b"z"], list(fds) + [2])
    except (OSError, EOFError):
        sock.close()
        return False
    try:
        env = dict(os.environ)
        env.pop(TEMPLATE_ENV, None)
        data = pickle.dumps((env, os.getcwd()), protocol=pickle.HIGHEST_PROTOCOL)
        sock.sendall(HEADER.pack(len(data)) + data)
    except OSError:
        pass  # the template got the sockets or died; the service sees which on them
    finally:
        sock.close()
    for fd in fds:  # only the template holds the zygote's ends now (EOF when it ends)
        os.close(fd)
    _wait_for(pid)
    return True


def _wait_for(pid: int) -> None:
    """Block until process ``pid`` (not our child) ends."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(0.05)
    try:
        select.select([pidfd], [], [])
    finally:
        os.close(pidfd)
