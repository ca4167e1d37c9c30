"""The local service process of a session: ``qcgflow service --net`` as a child.

::

    LocalService.start(wd, nodes)
      `python -m qcgflow.cli service --net --wd WD [--nodes N] --ready-fd W`, in its own
      session, environment = ours + PYTHONPATH (tasks import the same code) + QCGFLOW_RUN_DIR
      ──> ONE JSON ready line on the pipe (address, pub_address, keys_dir): no sleeps
      + `--owner-fd R`: a pipe only we hold; the service stops if we die (even SIGKILL)
    LocalService.stop(client)
      finish request, wait; SIGTERM, wait; SIGKILL whatever is left of its process group

Tasks of the service inherit ``QCGFLOW_RUN_DIR`` (the run's working directory) and get
``QCG_PM_ZMQ_ADDRESS`` from the service: that is how a task finds its session.
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
from typing import Any, Dict, List, Optional, Sequence

from qcgflow.runtime.launch.template import ZygoteTemplate, start_template

from qcgflow.errors import RunError
from qcgflow.runtime.leftovers import kill_leftovers
from qcgflow.runtime.owner import owner_pipe

_log = logging.getLogger(__name__)

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 60.0
FINISH_TIMEOUT = 10.0
RUN_DIR_ENV = "QCGFLOW_RUN_DIR"
ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"
RT_STATS_ENV = "QCGFLOW_RT_STATS"  # "1": qcgflow.run/init record exact times by default


def rt_stats_args(rt_stats: Optional[bool]) -> List[str]:
    """The service option for ``rt_stats=`` of ``qcgflow.run``/``qcgflow.init``: True gives
    ``--enable-rt-stats`` (exact start/end of every task, docs/reports.md); None follows
    ``$QCGFLOW_RT_STATS`` (``qcgflow run SCRIPT --enable-rt-stats`` sets it)."""
    if rt_stats is None:
        rt_stats = os.environ.get(RT_STATS_ENV) == "1"
    return ["--enable-rt-stats"] if rt_stats else []


def _child_env(run_dir: Optional[str] = None) -> Dict[str, str]:
    """This environment, with this process's import path: tasks must find the same code."""
    env = dict(os.environ)
    paths = [_PACKAGE_ROOT] + [os.path.abspath(p or os.curdir) for p in sys.path
                               if os.path.isdir(p or os.curdir)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if run_dir is not None:  # tasks find their session here (tasks may submit tasks)
        env[RUN_DIR_ENV] = run_dir
    return env


class LocalService:
    """A ``qcgflow service --net`` child process; ``ready`` is its ready line."""

    def __init__(self, popen: subprocess.Popen, ready: Dict[str, Any], stderr_file,
                 owner_fd: Optional[int] = None, template: Optional[ZygoteTemplate] = None):
        self.popen = popen
        self.ready = ready
        self.stderr_file = stderr_file
        self.owner_fd = owner_fd  # our end of --owner-fd: the service stops if we die
        self.template = template

    @classmethod
    def start(cls, wd: str, nodes: Optional[Any] = None, timeout: float = START_TIMEOUT,
              extra_args: Sequence[str] = (), zygote_template: bool = False) -> "LocalService":
        """Start the service; ``extra_args`` are more ``qcgflow service`` options.
        ``zygote_template``: the service's warm Python worker is a fork of this process
        made now (it has this process's imports; runtime/launch/template.py), when this
        process has one thread; else an ordinary one."""
        # forked first: a fork made later would hold the write end of --owner-fd (forks
        # keep close-on-exec fds) and the service would not see this process die
        template = start_template() if zygote_template else None
        read_fd, write_fd = os.pipe()
        owner_read, owner_write = owner_pipe()
        stderr_file = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "qcgflow.cli", "service", "--net", "--wd", wd,
                   "--ready-fd", str(write_fd), "--owner-fd", str(owner_read)]
        if nodes is not None:
            command += ["--nodes", str(nodes)]
        command += list(extra_args)
        env = _child_env(wd)
        if template is not None:
            env.update(template.env)
        try:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=stderr_file,
                                     stdout=subprocess.DEVNULL,
                                     pass_fds=(write_fd, owner_read),
                                     start_new_session=True, cwd=wd, env=env)
        except OSError as exc:
            os.close(read_fd)
            os.close(owner_write)
            stderr_file.close()
            if template is not None:
                template.close()
            raise RunError("cannot start the service: %s" % exc) from None
        finally:
            os.close(write_fd)
            os.close(owner_read)
        service = cls(popen, {}, stderr_file, owner_write, template)
        try:
            service.ready = service._read_ready(read_fd, timeout)
        except BaseException:
            service.stop()
            raise
        finally:
            os.close(read_fd)
        return service

    def _read_ready(self, fd: int, timeout: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        buffer = b""
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunError("the service did not start within %.0f s" % timeout)
            if poller.poll(int(left * 1000) + 1):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buffer += chunk
        try:
            return json.loads(buffer.split(b"\n", 1)[0])
        except ValueError:
            self.popen.wait(FINISH_TIMEOUT)
            raise RunError("the service did not start (exit code %s): %s"
                           % (self.popen.returncode, self.stderr_tail())) from None

    def stderr_tail(self, limit: int = 2000) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")[-limit:].strip()

    def liveness(self) -> Optional[str]:
        """None while the process runs; why it is gone otherwise."""
        if self.popen.poll() is None:
            return None
        return "the service process %d ended (exit code %s): %s" % (
            self.popen.pid, self.popen.returncode, self.stderr_tail(500))

    def stop(self, client=None) -> None:
        """``finish`` (when a client is given), then wait; SIGKILL the group if it lingers."""
        try:
            if client is not None and self.popen.poll() is None:
                try:
                    client.request({"request": "finish"}, timeout=FINISH_TIMEOUT)
                except Exception as exc:  # noqa: BLE001 - any client error: stop it anyway
                    _log.warning("finish request failed: %s", exc)
                try:
                    self.popen.wait(FINISH_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(FINISH_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            try:  # whatever is left of its session (tasks it could not stop)
                os.killpg(self.popen.pid, signal.SIGKILL)
            except OSError:
                pass
            self.popen.wait()
            if self.popen.returncode < 0 and self.ready.get("run"):
                # killed by a signal: it could not end its tasks and their daemons itself
                kill_leftovers((self.ready["run"],), deadline=2.0, log=_log,
                               why="the service died: killed %d processes of its tasks")
        finally:
            self.stderr_file.close()
            if self.owner_fd is not None:
                os.close(self.owner_fd)
                self.owner_fd = None
            if self.template is not None:  # it ends with the service's zygote socket
                self.template.close()
