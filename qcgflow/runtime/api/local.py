"""``LocalManager``: start a service in a child process and talk to it (upstream-compatible).

::

    LocalManager(server_args, cfg)
      ├─ os.pipe() ─ `python -m qcgflow.cli service --net --ready-fd W [--wd RUN] ...`
      │                (own session, stdin /dev/null, stderr to an anonymous temp file)
      ├─ reads ONE JSON line from the pipe: address, pub_address, aux_dir, wd, keys_dir
      │  (no sleeps, no polling of files; EOF before it = the service failed to start)
      └─ Manager.__init__(address) with the publisher already known

Unlike upstream, nothing happens to the caller's process: no multiprocessing start-method
change, no log files in its working directory, no logging configuration, no signal handlers.
Without ``--wd`` in ``server_args`` (or cfg ``wd``) the service runs in a fresh directory
under the system temp dir (``self.wd``); the job outputs are there, and it is kept.
If the caller exits without ``finish()``, the service is terminated at interpreter exit;
if the caller dies (SIGKILL, a crash), the service notices through ``--owner-fd`` (a pipe
only the caller holds) and stops, killing its tasks. cfg ``detach=True`` opts out of both.
"""

import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from typing import List, Optional

import qcgflow.runtime.api.errors as errors  # the module: its ConnectionError is not the builtin
from .remote import Manager
from ..leftovers import kill_leftovers
from ..owner import owner_pipe

_log = logging.getLogger(__name__)

# The directory that holds the qcgflow package: the child must import the same code.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

DEFAULT_INIT_TIMEOUT = 60.0
DEFAULT_FINISH_TIMEOUT = 10.0
DEFAULT_KILL_GRACE = 5.0


def _child_env() -> dict:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
    return env


class _ServiceProcess:
    """The child process of a LocalManager: exit detection without reaping, and stopping."""

    def __init__(self, popen: subprocess.Popen, stderr_file, owner_fd: Optional[int] = None):
        self.popen = popen
        self.owner_fd = owner_fd  # our end of the --owner-fd pipe: closing it stops the service
        self.run_token: Optional[str] = None  # from the ready line
        self.pid = popen.pid
        self.stderr_file = stderr_file
        self.returncode: Optional[int] = None
        try:
            self._pidfd: Optional[int] = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def exited(self, timeout: float = 0.0) -> bool:
        """True once the process has ended (waiting up to ``timeout``); reaps it then."""
        if self.returncode is not None:
            return True
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            if not poller.poll(max(0, int(timeout * 1000))):
                return False
            self._reap()
            return True
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.returncode = self.popen.returncode
        return True

    def _reap(self) -> None:
        # The leader is a zombie, so its process-group id cannot be reused yet: kill what
        # is left of the group (tasks the service did not stop), then reap.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self.returncode = self.popen.wait()
        self._close_fds()
        if self.returncode < 0 and self.run_token:
            # killed by a signal (SIGKILL, the OOM killer): it could not end its tasks and
            # their daemons itself; they carry its run token (runtime/leftovers.py)
            kill_leftovers((self.run_token,), deadline=2.0, why="the service died: killed "
                           "%d processes of its tasks", log=_log)

    def signal(self, signum: int, group: bool = False) -> None:
        if self.returncode is not None:
            return
        try:
            if group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except OSError:
            pass

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL of the whole group after ``grace`` seconds; reaped."""
        if self.exited():
            return
        self.signal(signal.SIGTERM)
        if not self.exited(grace):
            self.signal(signal.SIGKILL, group=True)
            self.exited(5.0)

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            self.stderr_file.seek(0)
            text = self.stderr_file.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return text[-limit:].strip()

    def _close_fds(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.owner_fd is not None:
            os.close(self.owner_fd)
            self.owner_fd = None


def _stop_at_exit(process: _ServiceProcess) -> None:
    """weakref.finalize callback: a service left running by its owner is stopped."""
    try:
        process.stop(grace=2.0)
    finally:
        process._close_fds()
        try:
            process.stderr_file.close()
        except OSError:
            pass


def _read_ready_line(fd: int, process: _ServiceProcess, timeout: float) -> dict:
    """The service's ready line, or ServiceError when it fails to start in time."""
    deadline = time.monotonic() + timeout
    buffer = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.ServiceError("Service not started in %.1f s" % timeout)
        if not poller.poll(int(left * 1000) + 1):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    line = buffer.split(b"\n", 1)[0].strip()
    if not line:
        process.exited(2.0)
        detail = process.stderr_tail()
        raise errors.ServiceError("the service did not start (exit code %s)%s" % (
            process.returncode, ": " + detail if detail else ""))
    try:
        ready = json.loads(line)
    except ValueError:
        raise errors.ServiceError("the service sent an unreadable ready line: %.200r" % line) \
            from None
    if not isinstance(ready, dict) or not ready.get("address"):
        raise errors.ConnectionError("Missing QCGPM network interface address in %.200r" % line)
    return ready


class LocalManager(Manager):
    """Starts a service (``qcgflow service --net``) in a child process and connects to it.

    Args:
        server_args: service command-line arguments (``--nodes 4``, ``--wd DIR``, ...), one
            list entry per argument; ``--net`` is added.
        cfg: Manager's keys plus ``wd`` (run directory when server_args has no ``--wd``),
            ``init_timeout`` (s, default 60), ``finish_timeout`` (s to wait for the process
            after finish, default 10), ``kill_grace`` (s between SIGTERM and SIGKILL),
            ``detach`` (default False: the service stops, killing its tasks, as soon as
            this process dies, even by SIGKILL; True: it runs until ``finish``, also after
            this process has exited).
    """

    def __init__(self, server_args=None, cfg=None):
        client_cfg = dict(cfg or {})
        args: List[str] = [str(arg) for arg in (server_args or [])]
        if "--net" not in args:
            args.insert(0, "--net")
        if "--wd" not in args and not any(a.startswith("--wd=") for a in args):
            wd = client_cfg.get("wd") or tempfile.mkdtemp(prefix="qcgflow-run-")
            os.makedirs(wd, exist_ok=True)
            args += ["--wd", str(wd)]
        self.server_args = args
        self._process: Optional[_ServiceProcess] = None
        self._killed = False
        self.ready: dict = {}
        self._finish_timeout = float(client_cfg.get("finish_timeout", DEFAULT_FINISH_TIMEOUT))
        self._kill_grace = float(client_cfg.get("kill_grace", DEFAULT_KILL_GRACE))
        self.detached = bool(client_cfg.pop("detach", False))
        self._start(args, float(client_cfg.get("init_timeout", DEFAULT_INIT_TIMEOUT)),
                    self.detached)
        self._publisher_address = self.ready.get("pub_address")
        if self.ready.get("keys_dir") and not client_cfg.get("keys_dir"):
            client_cfg["keys_dir"] = self.ready["keys_dir"]
        try:
            super().__init__(self.ready["address"], client_cfg)
        except BaseException:
            self._process.stop(grace=self._kill_grace)
            raise

    def _start(self, args: List[str], init_timeout: float, detach: bool = False) -> None:
        read_fd, write_fd = os.pipe()
        stderr_file = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "qcgflow.cli", "service"] + args + [
            "--ready-fd", str(write_fd)]
        passed = [write_fd]
        owner_read = owner_write = None
        if not detach:  # the service stops when this process dies (runtime/owner.py)
            owner_read, owner_write = owner_pipe()
            command += ["--owner-fd", str(owner_read)]
            passed.append(owner_read)
        wd = args[args.index("--wd") + 1] if "--wd" in args else None
        try:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=stderr_file,
                                     pass_fds=passed, start_new_session=True,
                                     cwd=wd if wd and os.path.isdir(wd) else None,
                                     env=_child_env())
        except OSError as exc:
            os.close(read_fd)
            if owner_write is not None:
                os.close(owner_write)
            stderr_file.close()
            raise errors.ServiceError("cannot start the service: %s" % exc) from None
        finally:
            os.close(write_fd)
            if owner_read is not None:
                os.close(owner_read)
        self._process = _ServiceProcess(popen, stderr_file, owner_write)
        if detach:  # nothing ties it to us: it runs until finish (or a signal)
            self._finalizer = weakref.finalize(self, self._process._close_fds)
        else:
            self._finalizer = weakref.finalize(self, _stop_at_exit, self._process)
        try:
            self.ready = _read_ready_line(read_fd, self._process, init_timeout)
            self._process.run_token = self.ready.get("run")
        except BaseException:
            self._process.stop(grace=self._kill_grace)
            raise
        finally:
            os.close(read_fd)

    # ------------------------------------------------------------------ facts
    @property
    def wd(self) -> Optional[str]:
        """The service's working directory (relative job paths are relative to it)."""
        return self.ready.get("wd")

    @property
    def aux_dir(self) -> Optional[str]:
        """``<wd>/.qcgpjm-service-<id>``: service.log, jobs.report, final_status.json."""
        return self.ready.get("aux_dir")

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    def _liveness(self) -> Optional[str]:
        process = self._process
        if process is None or not process.exited():
            return None
        how = ("it was killed" if self._killed else "exit code %s" % process.returncode)
        return "the service process %d has ended (%s); see %s" % (
            process.pid, how, os.path.join(self.aux_dir or "?", "service.log"))

    # ------------------------------------------------------------------ stopping
    def finish(self) -> None:
        """Send finish, wait for the process to end (killed after ``finish_timeout``)."""
        process = self._process
        if process is not None and process.exited():
            self.cleanup()
            if not self._killed and process.returncode != 0:
                raise errors.ServiceError(self._liveness())
            return
        try:
            if self._connected:
                self._send_finish()
        except errors.QCGPJMAError:
            pass  # the process is stopped below in any case
        finally:
            if process is not None and not process.exited(self._finish_timeout):
                process.stop(grace=self._kill_grace)
            self.cleanup()

    def kill_manager_process(self) -> None:
        """Terminate the service (SIGTERM; SIGKILL after cfg ``kill_grace`` s)."""
        if self._process is not None:
            self._killed = True
            self._process.stop(grace=self._kill_grace)

    def cleanup(self) -> None:
        super().cleanup()
        if self._process is not None and self._process.exited():
            self._finalizer()
