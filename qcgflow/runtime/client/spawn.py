"""THE one way to start a local service child: ``python -m qcgflow.runtime service ...``.

::

    start_service(args, ...)
      [zygote_template: fork a template of this process (launch/template.py) FIRST: a
       fork made later would hold the write end of --owner-fd, and the service would not
       see this process die]
      ready pipe (r, w) ──> `--ready-fd w`  (ready=True)
      owner pipe (r, w) ──> `--owner-fd r`  (owner=True; we keep w, close-on-exec)
      Popen([*prefix, python, -m, qcgflow.runtime, service, *args, ...],
            env = ours + PYTHONPATH (this package's root first, then ``import_paths``)
                  + ``env_extra``,
            stdin /dev/null, stdout and stderr to ``output`` (a file) or stderr to an
            anonymous temporary file, in its own session unless ``own_session=False``)
      ──> ServiceProcess; with ready=True, ``.ready`` is the service's ready line (address,
          pub_address, aux_dir, wd, pid, keys_dir, id, run), read within ``timeout``

    ServiceProcess.exited(timeout)   has it ended (waits up to timeout; reaps it)
    ServiceProcess.stop(grace, finish)  finish() if given, then SIGTERM, SIGKILL after grace
    ServiceProcess.close()           our descriptors, the output file, the template

Guarantees:

- The ready line is waited for at most ``timeout`` seconds, on the pipe (no sleeps, no
  polling of files). A child that ends first, times out or writes an unreadable line raises
  ``ServiceStartError`` (one line: why, the exit code, the tail of its output) after the
  child was stopped and every descriptor and temporary file was closed.
- ``owner=True``: the child stops when this process dies, for any reason (SIGKILL too;
  runtime/owner.py). ``owner=False`` (LocalManager's ``detach``) runs it until ``finish``.
- Stopping a child that has its own session also kills what is left of its process group
  (tasks it could not stop), and when it was killed by a signal, the processes of its tasks
  found by its run token (runtime/leftovers.py).
- The runtime names no graph-side module: what the caller wants of the service (e.g.
  ``--warm-modules M``) comes in ``args``. Only this module builds a service command line
  in ``qcgflow/`` (tests/test_architecture.py).
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
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence

from ..leftovers import kill_leftovers
from ..owner import owner_pipe
from .client import ClientError

_log = logging.getLogger(__name__)

SERVICE_MODULE = "qcgflow.runtime"  # python -m SERVICE_MODULE service ... (runtime/__main__)
START_TIMEOUT = 60.0
STOP_GRACE = 10.0
# The directory holding the qcgflow package: the child must import this very code.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


class ServiceStartError(ClientError):
    """The service child did not start; ``str(exc)`` says why in one line.

    Fields: ``reason`` ("launch", "timeout", "exited", "unreadable", "no-address"),
    ``returncode`` (None while it was running), ``output`` (the tail of its output),
    ``timeout`` (seconds waited).
    """

    def __init__(self, message: str, reason: str, returncode: Optional[int] = None,
                 output: str = "", timeout: Optional[float] = None):
        super().__init__(message)
        self.reason = reason
        self.returncode = returncode
        self.output = output
        self.timeout = timeout


def service_command(args: Sequence[str], python: Optional[str] = None) -> List[str]:
    """The command line of a service child: ``python -m qcgflow.runtime service ARGS``."""
    return [python or sys.executable, "-m", SERVICE_MODULE, "service"] + [str(a) for a in args]


def child_env(import_paths: Sequence[str] = (), extra: Optional[Mapping[str, str]] = None,
              base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this environment) with PYTHONPATH = this package's root, then
    ``import_paths``, then the PYTHONPATH it had (no duplicates), and ``extra`` set."""
    env = dict(os.environ if base is None else base)
    paths = [PACKAGE_ROOT] + [os.path.abspath(p) for p in import_paths]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


class ServiceProcess:
    """A started service child: exit detection without reaping too early, and stopping.

    ``ready`` is the ready line (empty without ``ready=True``); ``popen`` the process.
    """

    def __init__(self, popen: subprocess.Popen, output: Optional[IO[bytes]],
                 own_output: bool, owner_fd: Optional[int], own_session: bool,
                 template=None):
        self.popen = popen
        self.pid = popen.pid
        self.ready: Dict[str, Any] = {}
        self.returncode: Optional[int] = None
        self._output = output
        self._own_output = own_output  # a temporary file of ours: closed by close()
        self.owner_fd = owner_fd  # our end of --owner-fd: closing it stops the service
        self._own_session = own_session
        self.template = template
        try:
            self._pidfd: Optional[int] = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    # ------------------------------------------------------------------ state
    def exited(self, timeout: Optional[float] = 0.0) -> bool:
        """True once the process has ended (waiting up to ``timeout`` s, None: until it
        ends); reaps it then."""
        if self.returncode is not None:
            return True
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            if not poller.poll(-1 if timeout is None else max(0, int(timeout * 1000))):
                return False
        else:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        self._reap()
        return True

    def _reap(self) -> None:
        # Not reaped yet (pidfd), the leader's pid is still its group's id and cannot be
        # reused: kill what is left of the group (tasks the service did not stop), then reap.
        self._kill_group()
        self.returncode = self.popen.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.returncode < 0 and self.ready.get("run"):
            # killed by a signal (SIGKILL, the OOM killer): it could not end its tasks and
            # their daemons itself; they carry its run token (runtime/leftovers.py)
            kill_leftovers((self.ready["run"],), deadline=2.0, log=_log,
                           why="the service died: killed %d processes of its tasks")

    def _kill_group(self) -> None:
        if self._own_session:  # else the group is ours: never signal it
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def liveness(self) -> Optional[str]:
        """None while the process runs; why it is gone otherwise (one line)."""
        if not self.exited():
            return None
        return "the service process %d ended (exit code %s): %s" % (
            self.pid, self.returncode, self.output_tail(500))

    def output_tail(self, limit: int = 2000) -> str:
        """The end of what the child wrote (its stderr, or ``output``)."""
        if self._output is None:
            return ""
        try:
            self._output.flush()
            with open(self._output.fileno(), "rb", closefd=False) as handle:
                handle.seek(0)
                text = handle.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return text[-limit:].strip()

    # ------------------------------------------------------------------ stopping
    def signal(self, signum: int, group: bool = False) -> None:
        """Send ``signum`` to the process (or its group) while it has not been reaped."""
        if self.returncode is not None:
            return
        try:
            if group and self._own_session:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except OSError:
            pass

    def stop(self, grace: float = STOP_GRACE, finish=None,
             finish_timeout: float = STOP_GRACE) -> None:
        """Stop it: ``finish()`` first when given (e.g. a finish request; its errors are
        logged) and wait ``finish_timeout``; then SIGTERM, and SIGKILL of the whole group
        after ``grace`` s. Reaped on return (unless it survives SIGKILL for 5 s)."""
        if self.exited():
            return
        if finish is not None:
            try:
                finish()
            except Exception as exc:  # noqa: BLE001 - any client error: stop it anyway
                _log.warning("finish request failed: %s", exc)
            if self.exited(finish_timeout):
                return
        self.signal(signal.SIGTERM)
        if not self.exited(grace):
            self.signal(signal.SIGKILL, group=True)
            self.exited(5.0)

    def close(self) -> None:
        """Release our descriptors (the owner pipe: an unfinished service then stops), the
        temporary output file and the zygote template. Idempotent."""
        if self.owner_fd is not None:
            os.close(self.owner_fd)
            self.owner_fd = None
        if self._pidfd is not None:  # exited() then waits on the process itself
            os.close(self._pidfd)
            self._pidfd = None
        if self._own_output and self._output is not None:
            try:
                self._output.close()
            except OSError:
                pass
            self._output = None
        if self.template is not None:  # it ends with the service's zygote socket
            self.template.close()
            self.template = None


def start_service(args: Sequence[str], *, cwd: Optional[str] = None,
                  import_paths: Sequence[str] = (),
                  env_extra: Optional[Mapping[str, str]] = None,
                  ready: bool = True, owner: bool = True, own_session: bool = True,
                  output: Optional[IO[bytes]] = None, prefix: Sequence[str] = (),
                  timeout: float = START_TIMEOUT, zygote_template: bool = False,
                  stop_grace: float = STOP_GRACE) -> ServiceProcess:
    """Start ``python -m qcgflow.runtime service ARGS`` as a child (see the module doc).

    Args:
        args: service options; ``--ready-fd``/``--owner-fd`` are added here.
        cwd: its working directory (None: ours).
        import_paths: directories for its PYTHONPATH after this package's root (tasks of
            the service import the same code as the caller).
        env_extra: variables set in its environment (tasks inherit them).
        ready: pass ``--ready-fd`` and wait for the ready line (``ServiceProcess.ready``).
        owner: pass ``--owner-fd``: it stops when this process dies.
        own_session: start it in a session of its own (False: it shares our terminal's
            process group, so Ctrl-C reaches it too).
        output: a binary file for its stdout and stderr (None: stdout to /dev/null,
            stderr to a temporary file, readable with ``output_tail``).
        prefix: words before the interpreter (``srun ... -w NODE``).
        timeout: seconds to wait for the ready line.
        zygote_template: the service's warm Python worker is a fork of this process made
            now (launch/template.py), when this process has one thread.
        stop_grace: seconds between SIGTERM and SIGKILL when a failed start is stopped.

    Raises:
        ServiceStartError: it could not be started, or (``ready``) it did not report ready.
    """
    template = None
    if zygote_template:
        from ..launch.template import start_template  # noqa: PLC0415 - only when asked
        template = start_template()  # before any pipe of ours exists (see above)
    extra = dict(env_extra or {})
    if template is not None:
        extra.update(template.env)
    command = list(prefix) + service_command(args)
    passed: List[int] = []
    ready_read = ready_write = owner_read = owner_write = None
    if ready:
        ready_read, ready_write = os.pipe()
        command += ["--ready-fd", str(ready_write)]
        passed.append(ready_write)
    if owner:  # the service stops when this process dies (runtime/owner.py)
        owner_read, owner_write = owner_pipe()
        command += ["--owner-fd", str(owner_read)]
        passed.append(owner_read)
    own_output = output is None
    stream = tempfile.TemporaryFile() if own_output else output
    try:
        popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if own_output
            else stream, stderr=stream, pass_fds=passed, start_new_session=own_session,
            cwd=cwd if cwd and os.path.isdir(cwd) else None,
            env=child_env(import_paths, extra))
    except OSError as exc:
        for fd in (ready_read, owner_write):
            if fd is not None:
                os.close(fd)
        if own_output:
            stream.close()
        if template is not None:
            template.close()
        raise ServiceStartError("cannot start the service: %s" % exc, "launch") from None
    finally:
        for fd in passed:  # the child's ends
            os.close(fd)
    process = ServiceProcess(popen, stream, own_output, owner_write, own_session, template)
    if ready_read is None:
        return process
    try:
        process.ready = _read_ready(ready_read, process, timeout)
    except BaseException:
        process.stop(grace=stop_grace)
        process.close()
        raise
    finally:
        os.close(ready_read)
    return process


def _read_ready(fd: int, process: ServiceProcess, timeout: float) -> Dict[str, Any]:
    """The service's ready line, or ServiceStartError when it fails to start in time."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    buffer = b""
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServiceStartError("the service did not start within %.1f s" % timeout,
                                    "timeout", timeout=timeout)
        if not poller.poll(int(left * 1000) + 1):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # EOF: it ended (or closed the descriptor) without a ready line
        buffer += chunk
    line = buffer.split(b"\n", 1)[0].strip()
    if not line:
        process.exited(STOP_GRACE)
        detail = process.output_tail()
        raise ServiceStartError("the service did not start (exit code %s)%s" % (
            process.returncode, ": " + detail if detail else ""), "exited",
            process.returncode, detail)
    try:
        ready = json.loads(line)
    except ValueError:
        raise ServiceStartError("the service sent an unreadable ready line: %.200r" % line,
                                "unreadable") from None
    if not isinstance(ready, dict) or not ready.get("address"):
        raise ServiceStartError("the service's ready line has no address: %.200r" % line,
                                "no-address")
    return ready
