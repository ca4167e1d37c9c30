"""A zygote forked from the client: the service's warm worker starts with the client's imports.

A service's zygote (launch/zygote.py) is normally a fresh ``python -m
qcgflow.runtime.launch.zygote`` that learns imports from its first tasks. A client that has
imported something expensive already (an EasyVVUQ driver: ~3100 modules, 3-10 s) can fork
a *template* of itself before it starts the service, and the service's zygote becomes that
template instead, so no worker ever imports them again::

    client ── fork ──> template (a copy of the client: its modules, no threads but this one)
      │                   waits on a unix socket in a private 0700 directory
      └─ starts the service with QCGFLOW_ZYGOTE_TEMPLATE=<socket path> (the service takes
         it out of its tasks' environment and gives it to its zygote only)
             service ── python -m ...zygote FD SPAWN_FD  (the "shim", as always; handover.py)
                          shim: connect, check the peer is our uid, read the template's
                              pid, send FD, SPAWN_FD,
                                its stderr and (environment, cwd); close its copies; then
                                wait for the template to end (the service waits for it)
                        template: take the environment and cwd, drop the client's atexit
                                  handlers, serve as the zygote on the received sockets

Guarantees: the protocol between service and zygote is unchanged; anything that fails
before the hand-over (no template, a stale path, a peer of another uid) leaves the shim to
run as the ordinary zygote. The template is only made when the client has one thread (a
fork of a threaded process may inherit held locks). It ends when the client closes its end
of the liveness pipe before the hand-over, or, after it, when the service closes the
zygote's socket; the client reaps it (``ZygoteTemplate.close``, called by
``LocalService.stop``). Used by ``qcgflow.easyvvuq.Pool`` (``Session.start(...,
zygote_template=True)``).
"""

import atexit
import os
import pickle
import select
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Optional

from .handover import HEADER, TEMPLATE_ENV, peer, recv_frame


class ZygoteTemplate:
    """A forked copy of this process waiting to become a service's zygote."""

    def __init__(self, pid: int, alive_w: int, directory: str, path: str):
        self.pid, self._alive_w, self._directory, self.path = pid, alive_w, directory, path

    @property
    def env(self):
        """What the service's environment needs to use this template."""
        return {TEMPLATE_ENV: self.path}

    def close(self, timeout: float = 5.0) -> None:
        """Tell an unused template to end, reap it (killed after ``timeout`` s), remove its
        directory. Call after the service stopped. Idempotent."""
        if self._alive_w >= 0:
            os.close(self._alive_w)
            self._alive_w = -1
        if self.pid:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    done, _ = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    try:
                        os.kill(self.pid, 9)
                    except ProcessLookupError:
                        pass
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.01)
            self.pid = 0
        shutil.rmtree(self._directory, ignore_errors=True)


def start_template() -> Optional[ZygoteTemplate]:
    """Fork a template of this process (None when it has other threads or cannot fork)."""
    if threading.active_count() != 1 or not hasattr(os, "fork"):
        return None
    directory = tempfile.mkdtemp(prefix="qcgflow-zt-")  # 0700: only we can connect
    path = os.path.join(directory, "zygote.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        alive_r, alive_w = os.pipe()
    except OSError:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        listener.close()
        os.close(alive_r)
        os.close(alive_w)
        shutil.rmtree(directory, ignore_errors=True)
        return None
    if pid == 0:  # the template
        code = 1
        try:
            os.close(alive_w)
            code = _serve(listener, alive_r)
        except BaseException:  # never return into the client's code
            try:
                import traceback
                traceback.print_exc()
                sys.stderr.flush()
            except BaseException:
                pass
        finally:
            os._exit(code)
    listener.close()
    os.close(alive_r)
    return ZygoteTemplate(pid, alive_w, directory, path)


def _serve(listener: socket.socket, alive_r: int) -> int:
    os.setsid()  # as the service starts its zygote: a session of its own
    atexit._clear()  # the client's exit handlers are not ours (children run atexit)
    while True:
        ready = select.select([listener, alive_r], [], [])[0]
        if alive_r in ready:
            return 0  # the client is done (or gone) and no service came
        conn, _ = listener.accept()
        if peer(conn)[1] == os.getuid():
            break
        conn.close()
    listener.close()
    os.close(alive_r)
    with conn:
        # our pid: the shim's SO_PEERCRED names the client, which called listen()
        conn.sendall(HEADER.pack(os.getpid()))
        _, fds, _, _ = socket.recv_fds(conn, 1, 3)
        if len(fds) != 3:
            return 1
        env, cwd = pickle.loads(recv_frame(conn))
    env.pop(TEMPLATE_ENV, None)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(fds[2], 2)
    os.close(null)
    os.close(fds[2])
    sys.argv = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")]
    from .zygote import Zygote
    Zygote(fds[0], fds[1]).serve()
    return 0
