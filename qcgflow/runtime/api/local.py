"""``LocalManager``: start a service in a child process and talk to it (upstream-compatible).

::

    LocalManager(server_args, cfg)
      ├─ runtime/client/spawn.start_service: `python -m qcgflow.runtime service --net
      │    [--wd RUN] ... --ready-fd W --owner-fd R` (own session, stdin /dev/null,
      │    stderr to an anonymous temp file)
      ├─ its ready line: address, pub_address, aux_dir, wd, keys_dir
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

import os
import tempfile
import weakref
from typing import List, Optional

import qcgflow.runtime.api.errors as errors  # the module: its ConnectionError is not the builtin
from .remote import Manager
from ..client.spawn import ServiceProcess, ServiceStartError, start_service

DEFAULT_INIT_TIMEOUT = 60.0
DEFAULT_FINISH_TIMEOUT = 10.0
DEFAULT_KILL_GRACE = 5.0


def _stop_at_exit(process: ServiceProcess, grace: float) -> None:
    """weakref.finalize callback: a service left running by its owner is stopped."""
    try:
        process.stop(grace=grace)
    finally:
        process.close()


def _start_error(exc: ServiceStartError, timeout: float) -> errors.QCGPJMAError:
    """The API's exception for a service that did not start (upstream's wording first)."""
    if exc.reason == "timeout":
        return errors.ServiceError("Service not started in %.1f s" % timeout)
    if exc.reason == "no-address":
        return errors.ConnectionError("Missing QCGPM network interface address (%s)" % exc)
    return errors.ServiceError(str(exc))


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
        self._process: Optional[ServiceProcess] = None
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
        wd = args[args.index("--wd") + 1] if "--wd" in args else None
        try:  # detach: no --owner-fd, nothing ties it to us: it runs until finish
            self._process = start_service(args, cwd=wd, owner=not detach,
                                          timeout=init_timeout, stop_grace=self._kill_grace)
        except ServiceStartError as exc:
            raise _start_error(exc, init_timeout) from None
        self.ready = self._process.ready
        if detach:
            self._finalizer = weakref.finalize(self, self._process.close)
        else:
            self._finalizer = weakref.finalize(self, _stop_at_exit, self._process, 2.0)

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
