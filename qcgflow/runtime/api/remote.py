"""``Manager``: the upstream-compatible client of one running service (qcg.pilotjob.api.manager).

::

    Manager(address) ── ServiceClient (REQ, every request bounded by cfg 'timeout')
                     └─ EventStream (SUB on IFI, JFI, NOJ) ── wait4 / wait4all /
                                                             wait4_any_job_finish

Waiting is event driven when the service publishes status events: one status request
catches what finished before, then finish events end the wait; a status request every
``poll_delay`` seconds guards against a lost event and notices a dead service. Without a
publisher the wait methods poll, starting at 10 ms and backing off to ``poll_delay``.

Differences from upstream (on purpose): every request times out (a dead service gives
``ConnectionError`` within cfg ``timeout``, default 5 s, instead of blocking forever);
a refused request raises ``RequestFailedError`` (a ``ConnectionError``) whose text is the
service's message; nothing is logged to files unless cfg ``log_file`` asks for it.
``LocalManager`` (starts a service in a child process) lives in ``local.py``; upstream's
module path ``manager`` (``manager.py``) exports both.
"""

import logging
import os
import re
import time
from collections import OrderedDict
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Tuple

from ..client import client as _client
import qcgflow.runtime.api.errors as errors  # the module: its ConnectionError is not the builtin
from .job import Jobs
from .jobinfo import JobInfo

_logger = logging.getLogger("qcgflow.runtime.api")

FINAL_STATES = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")
_MAX_UNREPORTED = 100_000  # finish events kept for wait4_any_job_finish
_FIRST_POLL = 0.01


def _names(names) -> List[str]:
    return [names] if isinstance(names, str) else list(names)


class TimeStamp:
    """The deadline of one wait operation (``timeout_secs`` None: no deadline)."""

    def __init__(self, manager, timeout_secs=None):
        self.started = datetime.now()
        self._start = time.monotonic()
        self.manager = manager
        self.timeout_secs = timeout_secs

    @property
    def secs_from_start(self) -> float:
        return time.monotonic() - self._start

    def remaining(self) -> Optional[float]:
        if self.timeout_secs is None:
            return None
        return self.timeout_secs - self.secs_from_start

    def check_timeout(self) -> None:
        """Raise TimeoutElapsed when the deadline has passed."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise errors.TimeoutElapsed("timeout of %s s elapsed" % self.timeout_secs)

    def bounded(self, seconds: float) -> float:
        """``seconds``, cut to what is left before the deadline (raises when none is)."""
        self.check_timeout()
        left = self.remaining()
        return seconds if left is None else max(0.0, min(seconds, left))

    def get_poll_time(self) -> float:
        return self.bounded(self.manager.default_poll_delay)

    def get_events_timeout(self) -> float:
        return self.bounded(self.manager.default_pub_timeout)


class Manager:
    """Client of one QCG-PilotJob-compatible service reachable over ZeroMQ.

    Args:
        address: ``[proto://]host[:port]`` (defaults ``tcp`` and ``5555``); default
            ``$QCG_PM_ZMQ_ADDRESS`` or ``tcp://127.0.0.1:5555``.
        cfg: ``timeout`` (seconds per request, default 5), ``poll_delay`` (seconds between
            status polls in the wait methods, default 2), ``pub_timeout``, ``keys_dir``
            (CURVE keys of a non-loopback service; default ``$QCGFLOW_KEYS_DIR``),
            ``log_file`` / ``log_level`` (opt-in client log file), ``wdir`` (then the log
            file defaults to ``<wdir>/.qcgpjm-client/api.log``, as upstream).
    """

    DEFAULT_ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"
    DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
    DEFAULT_PROTO = "tcp"
    DEFAULT_PORT = "5555"
    DEFAULT_POLL_DELAY = 2
    DEFAULT_PUB_TIMEOUT = 5 * 60
    DEFAULT_REQUEST_TIMEOUT = _client.DEFAULT_TIMEOUT

    def __init__(self, address=None, cfg=None):
        client_cfg = dict(cfg or {})
        self._cfg = client_cfg
        self._client: Optional[_client.ServiceClient] = None
        self._events: Optional[_client.EventStream] = None
        self._connected = False
        self._unreported: "OrderedDict[str, str]" = OrderedDict()
        self._reported_by_poll: Optional[set] = None
        self.default_poll_delay = float(client_cfg.get("poll_delay", Manager.DEFAULT_POLL_DELAY))
        self.default_pub_timeout = float(client_cfg.get("pub_timeout",
                                                        Manager.DEFAULT_PUB_TIMEOUT))
        self.request_timeout = float(client_cfg.get("timeout", Manager.DEFAULT_REQUEST_TIMEOUT))
        if getattr(self, "log_handler", None) is None:
            self.log_handler = None
        self._setup_logging(client_cfg)
        if address is None:
            address = os.environ.get(Manager.DEFAULT_ADDRESS_ENV) or Manager.DEFAULT_ADDRESS
        self._address = Manager._parse_address(address)
        self._publisher_address = getattr(self, "_publisher_address", None)
        self._connect()

    # ------------------------------------------------------------------ connection
    @staticmethod
    def _parse_address(address: str) -> str:
        if not re.match(r"\w*://", address):
            address = "%s://%s" % (Manager.DEFAULT_PROTO, address)
        if address.startswith("tcp://") and not re.match(r".*:\d+$", address):
            address = "%s:%s" % (address, Manager.DEFAULT_PORT)
        return address

    @property
    def address(self) -> str:
        return self._address

    @property
    def publisher_address(self) -> Optional[str]:
        return self._publisher_address

    def _setup_logging(self, cfg: dict) -> None:
        """A handler on the API's logger (no root changes) when cfg names a ``log_file``, or
        a ``wdir``: then ``<wdir>/.qcgpjm-client/api.log``, as upstream. Without either,
        nothing is written (upstream would write into the current directory)."""
        if self.log_handler is not None:
            return
        if cfg.get("log_file"):
            log_file = os.path.abspath(cfg["log_file"])
        elif cfg.get("wdir"):
            log_file = os.path.abspath(os.path.join(str(cfg["wdir"]), ".qcgpjm-client",
                                                    "api.log"))
        else:
            return
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        self.log_handler = logging.FileHandler(log_file)
        self.log_handler.setFormatter(logging.Formatter("%(asctime)-15s: %(message)s"))
        _logger.addHandler(self.log_handler)
        if str(cfg.get("log_level", "")).lower() == "debug":
            _logger.setLevel(logging.DEBUG)
        elif _logger.level == logging.NOTSET:
            _logger.setLevel(logging.INFO)

    def _liveness(self) -> Optional[str]:
        """A message when the service is known to be gone (LocalManager knows its process)."""
        return None

    def _connect(self) -> None:
        keys_dir = self._cfg.get("keys_dir")
        try:
            self._client = _client.ServiceClient(self._address, timeout=self.request_timeout,
                                                 keys_dir=keys_dir, liveness=self._liveness)
        except _client.ClientError as exc:
            raise errors.ConnectionError("Failed to connect to %s - %s" % (self._address, exc)) \
                from None
        self._connected = True
        _logger.info("connecting to the service at %s", self._address)
        try:
            if self._publisher_address is None:
                system = self.system_status().get("System", {})
                self._publisher_address = system.get("StatusPublisher")
                _logger.info("connected to instance %s @ %s", system.get("InstanceId"),
                             system.get("Host"))
            self._subscribe()
        except errors.QCGPJMAError as exc:
            self._disconnect()
            raise errors.ConnectionError("Failed to connect to %s - %s" % (self._address, exc)) \
                from None

    def _subscribe(self) -> None:
        if not self._publisher_address:
            self._start_poll_baseline()
            return
        try:
            self._events = self._client.subscribe(
                (_client.TOPIC_ITERATION_FINISHED, _client.TOPIC_JOB_FINISHED,
                 _client.TOPIC_NO_JOBS), address=self._publisher_address,
                wait=min(1.0, self.request_timeout))
        except _client.ClientError as exc:
            _logger.warning("no status events (%s): the wait methods will poll", exc)
            self._events = None
            self._start_poll_baseline()

    def event_stream(self, topics=(_client.TOPIC_JOB_FINISHED,
                                   _client.TOPIC_ITERATION_FINISHED)):
        """A new ``client.EventStream`` on the service's publisher (None without one).

        For another thread (the executor's tracker); the wait methods use their own.
        """
        self._assure_connected()
        if not self._publisher_address:
            return None
        try:
            return self._client.subscribe(topics, address=self._publisher_address,
                                          wait=min(1.0, self.request_timeout))
        except _client.ClientError as exc:
            _logger.warning("no status events (%s)", exc)
            return None

    def _start_poll_baseline(self) -> None:
        """Without events, wait4_any_job_finish reports jobs finished after this moment."""
        jobs = self.list()
        self._reported_by_poll = {name for name, job in jobs.items()
                                  if job.get("status") in FINAL_STATES}

    def _disconnect(self) -> None:
        self._connected = False
        self._events = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _assure_connected(self) -> None:
        if not self._connected or self._client is None:
            raise errors.ConnectionError("Not connected")

    # ------------------------------------------------------------------ requests
    def _request(self, data: dict, timeout: Optional[float] = None) -> dict:
        """Send a request, return the whole reply (code 0), mapping client errors."""
        self._assure_connected()
        _logger.debug("sending %.300s", data)
        try:
            return self._client.request_reply(data, timeout)
        except _client.ServiceError as exc:
            raise errors.RequestFailedError(exc.message, data) from None
        except _client.ServiceTimeout as exc:
            raise errors.ServiceTimeoutError(str(exc)) from None
        except _client.ServiceUnavailable as exc:
            raise errors.ConnectionError(str(exc)) from None
        except _client.ProtocolError as exc:
            raise errors.InternalError(str(exc)) from None
        except _client.ClientError as exc:  # refused before sending (a request too large)
            raise errors.ConnectionError(str(exc)) from None

    def _send_and_validate_result(self, data: dict, timeout: Optional[float] = None) -> dict:
        """The ``data`` of the reply (an empty dict when the reply has none)."""
        reply = self._request(data, timeout)
        result = reply.get("data")
        return {} if result is None else result

    def send_request(self, request: dict) -> dict:
        """Send any request; return the whole reply (its code is checked)."""
        return self._request(request)

    def resources(self) -> dict:
        """``{"total_nodes", "total_cores", "used_cores", "free_cores"}``."""
        return self._send_and_validate_result({"request": "resourcesInfo"})

    def submit(self, jobs) -> List[str]:
        """Submit a ``Jobs`` group (or a list of standard descriptions); return the names."""
        descriptions = jobs.ordered_jobs() if isinstance(jobs, Jobs) else list(jobs)
        self._pump_events()  # stale finish events of re-used names must not count
        for job in descriptions:
            if isinstance(job, dict) and isinstance(job.get("name"), str):
                self._forget(job["name"])
        data = self._send_and_validate_result({"request": "submit", "jobs": descriptions})
        if "jobs" not in data:
            raise errors.InternalError("Missing response data")
        return data["jobs"]

    def list(self) -> dict:
        """``{name: {"status", "messages"?, "inQueue"?}}`` for every job."""
        data = self._send_and_validate_result({"request": "listJobs"})
        if "jobs" not in data:
            raise errors.InternalError("Request failed - missing jobs data")
        return data["jobs"]

    def status(self, names) -> dict:
        """``{"jobs": {name: {"status": 0, "data": {"jobName", "status"}}}}``."""
        return self._send_and_validate_result({"request": "jobStatus",
                                               "jobNames": _names(names)})

    def info(self, names, **kwargs) -> dict:
        """Detailed information; ``withChilds=True`` adds every iteration."""
        request = {"request": "jobInfo", "jobNames": _names(names)}
        if kwargs:
            request["params"] = kwargs
        return self._send_and_validate_result(request)

    def info_parsed(self, names, **kwargs) -> Dict[str, JobInfo]:
        """``info`` parsed into ``JobInfo`` objects, by name."""
        return {name: JobInfo.from_job(entry.get("data", {}))
                for name, entry in self.info(names, **kwargs).get("jobs", {}).items()}

    def remove(self, names) -> None:
        """Forget finished jobs (their names can be used again)."""
        names = _names(names)
        self._pump_events()
        self._send_and_validate_result({"request": "removeJob", "jobNames": names})
        for name in names:
            self._forget(name)

    def cancel(self, names) -> None:
        """Cancel jobs or single iterations (``name:it``); dependants end OMITTED."""
        self._send_and_validate_result({"request": "cancelJob", "jobNames": _names(names)})

    def system_status(self) -> dict:
        return self._send_and_validate_result({"request": "status"})

    def _send_finish(self) -> None:
        try:
            self._send_and_validate_result({"request": "finish"})
        finally:
            self._disconnect()

    def finish(self) -> None:
        """Ask the service to finish (it kills running tasks and exits), then clean up."""
        try:
            self._send_finish()
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Close the connection and remove the opt-in log handler."""
        self._disconnect()
        if getattr(self, "log_handler", None) is not None:
            _logger.removeHandler(self.log_handler)
            self.log_handler.close()
            self.log_handler = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._connected:
            self.finish()

    # ------------------------------------------------------------------ events
    def _forget(self, name: str) -> None:
        self._unreported.pop(name, None)
        prefix = name + ":"
        for key in [k for k in self._unreported if k.startswith(prefix)]:
            del self._unreported[key]
        if self._reported_by_poll is not None:
            self._reported_by_poll.discard(name)

    def _record(self, event: _client.Event) -> None:
        if event.finished and event.name is not None:
            self._unreported.pop(event.name, None)
            self._unreported[event.name] = event.state
            while len(self._unreported) > _MAX_UNREPORTED:
                self._unreported.popitem(last=False)

    def _pump_events(self) -> None:
        if self._events is not None and not self._events.closed:
            for event in self._events.drain():
                self._record(event)

    def _next_event(self, seconds: float) -> Optional[_client.Event]:
        """The next event within ``seconds`` (recorded), checking the service's liveness."""
        deadline = time.monotonic() + seconds
        while True:
            step = min(0.25, max(0.0, deadline - time.monotonic()))
            event = self._events.next(step)
            if event is not None:
                self._record(event)
                return event
            dead = self._liveness()
            if dead:
                raise errors.ConnectionError(dead)
            if time.monotonic() >= deadline:
                return None

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            dead = self._liveness()
            if dead:
                raise errors.ConnectionError(dead)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.25))

    # ------------------------------------------------------------------ waiting
    @staticmethod
    def is_status_finished(status: str) -> bool:
        return status in FINAL_STATES

    def _poll_finished(self, names: Iterable[str]) -> Dict[str, str]:
        """One jobStatus request: the final states among ``names``."""
        reply = self.status(list(names))
        found = {}
        for name, entry in reply.get("jobs", {}).items():
            data = entry.get("data") if isinstance(entry, dict) else None
            if not isinstance(data, dict) or "status" not in data:
                raise errors.InternalError("Missing job's %s data" % name)
            if Manager.is_status_finished(data["status"]):
                found[name] = data["status"]
        return found

    def wait4(self, names, timeout=None) -> Dict[str, str]:
        """Wait until every job (or ``name:it`` iteration) of ``names`` has finished.

        Returns ``{name: final state}``. Raises TimeoutElapsed after ``timeout`` seconds.
        """
        names = _names(names)
        stamp = TimeStamp(self, timeout)
        self._assure_connected()
        self._pump_events()
        result: Dict[str, str] = {}
        pending = set()
        for name in names:
            if name in self._unreported:
                result[name] = self._unreported[name]
            else:
                pending.add(name)
        delay = _FIRST_POLL
        while pending:
            finished = self._poll_finished(sorted(pending))
            result.update(finished)
            pending.difference_update(finished)
            if not pending:
                break
            if self._events is not None:
                window = stamp.bounded(self.default_poll_delay)
                until = time.monotonic() + window
                while pending and time.monotonic() < until:
                    event = self._next_event(until - time.monotonic())
                    if event is not None and event.finished and event.name in pending:
                        result[event.name] = event.state
                        pending.discard(event.name)
            else:
                self._sleep(stamp.bounded(delay))
                delay = min(delay * 2, self.default_poll_delay)
            if pending:
                stamp.check_timeout()
        for name in result:
            self._unreported.pop(name, None)
        return {name: result[name] for name in names}

    def _all_finished(self) -> bool:
        data = self._send_and_validate_result({"request": "status",
                                               "options": {"allJobsFinished": True}})
        return bool(data.get("AllJobsFinished", False))

    def wait4all(self, timeout_secs=None) -> None:
        """Wait until no job of the service is unfinished. Raises TimeoutElapsed."""
        stamp = TimeStamp(self, timeout_secs)
        self._assure_connected()
        delay = _FIRST_POLL
        while not self._all_finished():
            if self._events is not None:
                window = stamp.bounded(self.default_poll_delay)
                until = time.monotonic() + window
                while time.monotonic() < until:
                    event = self._next_event(until - time.monotonic())
                    if event is not None and event.topic == _client.TOPIC_NO_JOBS:
                        break
            else:
                self._sleep(stamp.bounded(delay))
                delay = min(delay * 2, self.default_poll_delay)
            stamp.check_timeout()

    def wait4_any_job_finish(self, timeout_secs=None) -> Tuple[str, str]:
        """The next finished job or iteration not yet reported: ``(name, state)``.

        Finishes are reported in the order they happened since the connection was made
        (those already returned by ``wait4`` excepted). Raises TimeoutElapsed.
        """
        stamp = TimeStamp(self, timeout_secs)
        self._assure_connected()
        if self._events is None:
            return self._wait_any_by_polling(stamp)
        self._pump_events()
        while not self._unreported:
            window = stamp.bounded(self.default_poll_delay)
            until = time.monotonic() + window
            while not self._unreported and time.monotonic() < until:
                self._next_event(until - time.monotonic())
            if not self._unreported:
                self._all_finished()  # heartbeat: a dead service raises here
                stamp.check_timeout()
        return self._unreported.popitem(last=False)

    def _wait_any_by_polling(self, stamp: TimeStamp) -> Tuple[str, str]:
        if self._reported_by_poll is None:
            self._reported_by_poll = set()
        delay = _FIRST_POLL
        while True:
            for name, job in self.list().items():
                state = job.get("status")
                if state in FINAL_STATES and name not in self._reported_by_poll:
                    self._reported_by_poll.add(name)
                    return name, state
            self._sleep(stamp.bounded(delay))
            delay = min(delay * 2, self.default_poll_delay)
            stamp.check_timeout()

