"""The Executor API: ``concurrent.futures`` over a local service (qcg.pilotjob.executor_api).

::

    with QCGPJExecutor() as e:                      # starts a LocalManager
        f = e.submit(BasicTemplate.template, name='tj', exec='date')
        f.result()                                  # {'tj': 'SUCCEED'}

``submit(template, *dicts, **values)``: the template is a callable (or a ``QCGPJTemplate``)
returning ``(text, defaults)`` or ``text``; the text is a job description with
``string.Template`` placeholders (``${name}``), filled from defaults < dicts < keywords,
then read as JSON or as a Python literal (upstream's templates use single quotes). Its
``execution.env`` gets ``QCG_PM_EXEC_API_JOB_ID=${jname}``. The returned ``QCGPJFuture`` is
a real ``concurrent.futures.Future``: its result is ``{job name: final state}``;
``cancel()`` cancels the job in the service; ``as_completed``/``wait`` work with it.

One background thread resolves every future from the service's finish events (with a
status request every ``poll_delay`` s as a guard, and polling when the service publishes
no events). If the service dies, pending futures fail with ``ConnectionError``.

Differences from upstream: ``shutdown(wait=True)`` (and leaving a ``with`` block) first
waits for the submitted jobs, as ``concurrent.futures`` executors do (upstream finishes
the service at once, killing them); ``shutdown(wait=False)`` finishes the service now and
cancels the pending futures. Without ``wd`` the service runs in a fresh directory under
the temp dir (``executor.wd``), not in the current directory.
"""

import ast
import json
import logging
import string
import textwrap
import threading
import time
from collections import OrderedDict
from concurrent.futures import Executor, Future, InvalidStateError
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .api.errors import ConnectionError, QCGPJMAError, RequestFailedError, TemplateError
from .api.job import Jobs
from .api.local import LocalManager
from .client.client import TOPIC_ITERATION_FINISHED, TOPIC_JOB_FINISHED

_logger = logging.getLogger("qcgflow.runtime.executor_api")

JOB_ID_ENV = "QCG_PM_EXEC_API_JOB_ID"
_MAX_EARLY = 100_000


class ServiceLogLevel(Enum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


class ClientLogLevel(Enum):
    INFO = "info"
    DEBUG = "debug"


# --------------------------------------------------------------------------- templates

class QCGPJTemplate:
    """Base of templates: ``template()`` returns ``(description text, defaults)``."""

    @staticmethod
    def template() -> Tuple[str, Dict[str, Any]]:
        raise NotImplementedError("a template class must define template()")


class BasicTemplate(QCGPJTemplate):
    """One executable: ``name`` and ``exec`` required; ``args``, ``stdout``, ``stderr``."""

    @staticmethod
    def template() -> Tuple[str, Dict[str, Any]]:
        text = """
        {
            'name': '${name}',
            'execution': {
                'exec': '${exec}',
                'args': ${args},
                'stdout': '${stdout}',
                'stderr': '${stderr}'
            }
        }
        """
        defaults = {"args": [], "stdout": "stdout", "stderr": "stderr"}
        return text, defaults


TemplateSource = Union[Callable[[], Union[str, Tuple[str, Dict[str, Any]]]], QCGPJTemplate,
                       type, str]


def _template_of(source: TemplateSource) -> Tuple[str, Dict[str, Any]]:
    if isinstance(source, str):
        produced = source
    elif isinstance(source, QCGPJTemplate) or (isinstance(source, type)
                                               and issubclass(source, QCGPJTemplate)):
        produced = source.template()
    elif callable(source):
        produced = source()
    else:
        raise TemplateError("a template must be a callable returning (text, defaults), a "
                            "QCGPJTemplate or a text, not %s" % type(source).__name__)
    if isinstance(produced, tuple):
        text = produced[0]
        defaults = dict(produced[1] or {}) if len(produced) > 1 else {}
    else:
        text, defaults = produced, {}
    if not isinstance(text, str):
        raise TemplateError("the template text must be a string, not %s" % type(text).__name__)
    return text, defaults


def render_template(source: TemplateSource, *args: Optional[dict], **kwargs) -> dict:
    """Fill a template: defaults < ``args`` dicts (in order) < ``kwargs``; return the job.

    Raises:
        TemplateError: a placeholder without a value, or a result that is not a job
            description (a dict with an ``execution`` dict).
    """
    text, defaults = _template_of(source)
    values: Dict[str, Any] = {}
    for mapping in args:
        if mapping is not None:
            values.update(mapping)
    values.update(kwargs)
    try:
        filled = string.Template(textwrap.dedent(text)).substitute(defaults, **values)
    except KeyError as exc:
        key = exc.args[0]
        raise TemplateError("template placeholder ${%s} has no value: pass %s=... to submit"
                            % (key, key)) from None
    except ValueError as exc:
        raise TemplateError("invalid placeholder in the template: %s" % exc) from None
    try:
        description = json.loads(filled)
    except ValueError:
        try:
            description = ast.literal_eval(filled.strip())
        except (ValueError, SyntaxError) as exc:
            raise TemplateError("the filled template is not a job description (%s):\n%s"
                                % (exc, filled.strip())) from None
    if not isinstance(description, dict) or not isinstance(description.get("execution"), dict):
        raise TemplateError("the filled template must be a job description with an "
                            "'execution' dictionary:\n%s" % filled.strip())
    env = description["execution"].get("env")
    if env is None:
        env = description["execution"]["env"] = {}
    if isinstance(env, dict):
        env[JOB_ID_ENV] = "${jname}"
    return description


# --------------------------------------------------------------------------- futures

class QCGPJFuture(Future):
    """The future of one submission: ``result()`` -> ``{job name: final state}``.

    Attributes:
        ids: names of the submitted jobs.
        qcgpjm: the LocalManager they were submitted to.
    """

    def __init__(self, ids: List[str], qcgpjm, executor: Optional["QCGPJExecutor"] = None):
        super().__init__()
        self.ids = list(ids)
        self.qcgpjm = qcgpjm
        self._executor = executor
        self._states: Dict[str, str] = {}
        self._remaining = set(self.ids)

    def running(self) -> bool:
        """True while any of the jobs has not finished (upstream's meaning)."""
        return not self.done()

    def cancel(self) -> bool:
        """Cancel the jobs in the service and this future; False if already finished."""
        if self.cancelled():
            return True
        if self.done():
            return False
        tracker = self._executor._tracker if self._executor is not None else None
        if tracker is not None:  # its CANCELED event must not resolve it first
            tracker.forget(self)
        try:
            self.qcgpjm.cancel(self.ids)
        except QCGPJMAError as exc:
            _logger.info("cancel of %s refused: %s", self.ids, exc)
            if tracker is not None:
                tracker.track(self)  # finish events that came meanwhile are kept for it
            return False
        return super().cancel()

    def _job_finished(self, name: str, state: str) -> None:
        """Called by the tracker; resolves the future when the last job finished."""
        if name not in self._remaining:
            return
        self._remaining.discard(name)
        self._states[name] = state
        if not self._remaining:
            try:
                self.set_result({job: self._states[job] for job in self.ids})
            except InvalidStateError:  # cancelled meanwhile
                pass

    def _fail(self, exc: BaseException) -> None:
        try:
            self.set_exception(exc)
        except InvalidStateError:
            pass


class _Tracker(threading.Thread):
    """The background thread: finish events (or polls) -> futures."""

    def __init__(self, manager, poll_delay: float):
        super().__init__(name="qcgpj-executor-tracker", daemon=True)
        self._manager = manager
        self._poll_delay = poll_delay
        self._lock = threading.Lock()
        self._futures: Dict[str, List[QCGPJFuture]] = {}
        self._early: "OrderedDict[str, str]" = OrderedDict()
        self._stopping = False
        self._kick = threading.Event()  # new work or stop (for the polling mode)
        self._stream = manager.event_stream((TOPIC_JOB_FINISHED, TOPIC_ITERATION_FINISHED))

    # -- called from other threads
    def track(self, future: QCGPJFuture) -> None:
        finished_early = []
        with self._lock:
            for name in future.ids:
                if name in self._early:
                    finished_early.append((name, self._early.pop(name)))
                else:
                    self._futures.setdefault(name, []).append(future)
        for name, state in finished_early:  # outside the lock: callbacks may submit
            future._job_finished(name, state)
        self._kick.set()

    def forget(self, future: QCGPJFuture) -> None:
        with self._lock:
            for name in future.ids:
                waiting = self._futures.get(name, [])
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    self._futures.pop(name, None)

    def pending(self) -> List[QCGPJFuture]:
        with self._lock:
            return list({id(f): f for fs in self._futures.values() for f in fs}.values())

    def stop(self) -> None:
        self._stopping = True
        self._kick.set()
        if self._stream is not None:
            self._stream.wakeup()

    # -- the thread
    def _finished(self, name: str, state: str) -> None:
        with self._lock:
            waiting = self._futures.pop(name, None)
            if waiting is None:
                self._early[name] = state
                while len(self._early) > _MAX_EARLY:
                    self._early.popitem(last=False)
                return
        for future in waiting:
            future._job_finished(name, state)

    def _poll(self) -> None:
        with self._lock:
            names = sorted(self._futures)
        if not names:
            return
        try:
            reply = self._manager.status(names)
        except RequestFailedError as exc:  # e.g. a job removed behind our back
            _logger.warning("status poll of %d jobs refused: %s", len(names), exc)
            return
        for name, entry in reply.get("jobs", {}).items():
            state = (entry.get("data") or {}).get("status")
            if state in ("SUCCEED", "FAILED", "CANCELED", "OMITTED"):
                self._finished(name, state)

    def _fail_all(self, exc: BaseException) -> None:
        for future in self.pending():
            self.forget(future)
            future._fail(exc)

    def run(self) -> None:
        delay = 0.01
        next_poll = time.monotonic() + self._poll_delay
        try:
            while not self._stopping:
                dead = self._manager._liveness()
                if dead:
                    self._fail_all(ConnectionError(dead))
                    return
                now = time.monotonic()
                if self._stream is not None:
                    event = self._stream.next(max(0.0, min(next_poll - now, 0.5)))
                    if event is not None and event.finished and event.name:
                        self._finished(event.name, event.state)
                        continue
                    if time.monotonic() >= next_poll:
                        self._poll()
                        next_poll = time.monotonic() + self._poll_delay
                else:  # no publisher: poll, backing off from 10 ms to poll_delay
                    self._poll()
                    kicked = self._kick.wait(delay if self.pending() else 1.0)
                    self._kick.clear()
                    delay = 0.01 if kicked else min(delay * 2, self._poll_delay)
        except QCGPJMAError as exc:
            if not self._stopping:
                _logger.warning("executor tracker stopped: %s", exc)
                self._fail_all(exc)
        finally:
            if self._stream is not None:
                self._stream.close()


# --------------------------------------------------------------------------- executor

class QCGPJExecutor(Executor):
    """A ``concurrent.futures.Executor`` whose tasks are jobs of a local service.

    Args:
        *other_args: more service arguments (e.g. ``'--nodes', '4'``).
        wd: the service's working directory (default: a fresh directory under the temp dir).
        resources: ``--nodes`` (e.g. ``"4"`` or ``"n1:2,n2:3"``).
        reserve_core: ``--system-core``.
        enable_rt_stats, wrapper_rt_stats: ``--enable-rt-stats``, ``--wrapper-rt-stats``.
        log_level: service log level (critical, error, warning, info, debug).
        cfg: LocalManager configuration (timeouts, ``poll_delay``; a qcgflow addition).
    """

    def __init__(self, *other_args, wd: Optional[str] = None, resources=None,
                 reserve_core: bool = False, enable_rt_stats: bool = False,
                 wrapper_rt_stats: Optional[str] = None, log_level: str = "info",
                 cfg: Optional[dict] = None):
        self.finished = False
        self._shutdown_lock = threading.Lock()
        level = str(log_level).upper()
        service_level = (ServiceLogLevel[level].value if level in ServiceLogLevel.__members__
                         else ServiceLogLevel.DEBUG.value)
        args = ["--log", service_level]
        if wd is not None:
            args += ["--wd", str(wd)]
        if resources:
            args += ["--nodes", str(resources)]
        if reserve_core:
            args.append("--system-core")
        if enable_rt_stats:
            args.append("--enable-rt-stats")
        if wrapper_rt_stats:
            args += ["--wrapper-rt-stats", str(wrapper_rt_stats)]
        args += [str(arg) for arg in other_args]
        manager_cfg = dict(cfg or {})
        self._qcgpjm = LocalManager(args, manager_cfg)
        try:
            self._tracker = _Tracker(self._qcgpjm, self._qcgpjm.default_poll_delay)
            self._tracker.start()
        except BaseException:
            self._qcgpjm.kill_manager_process()
            self._qcgpjm.cleanup()
            raise

    @property
    def qcgpj_manager(self) -> LocalManager:
        return self._qcgpjm

    @property
    def wd(self) -> Optional[str]:
        return self._qcgpjm.wd

    def submit(self, fn: TemplateSource, /, *args, **kwargs) -> QCGPJFuture:
        """Fill the template ``fn`` with ``args`` (dicts) and ``kwargs``; submit the job."""
        with self._shutdown_lock:
            if self.finished:
                raise RuntimeError("cannot schedule new futures after shutdown")
            description = render_template(fn, *args, **kwargs)
            jobs = Jobs()
            jobs.add_std(description)
            names = self._qcgpjm.submit(jobs)
            future = QCGPJFuture(names, self._qcgpjm, self)
            self._tracker.track(future)
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the service. ``wait``: first let the submitted jobs finish;
        ``cancel_futures``: cancel the jobs of pending futures first."""
        with self._shutdown_lock:
            if self.finished:
                return
            self.finished = True
        try:
            if cancel_futures:
                for future in self._tracker.pending():
                    future.cancel()
            if wait:
                for future in self._tracker.pending():
                    try:
                        future.exception()  # waits; failures stay in the future
                    except BaseException:  # noqa: B902 - cancelled futures raise here
                        pass
        finally:
            self._tracker.stop()
            self._tracker.join(10)
            for future in self._tracker.pending():
                self._tracker.forget(future)
                Future.cancel(future)
            try:
                self._qcgpjm.finish()
            except QCGPJMAError as exc:  # a crash was already reported to the futures
                _logger.warning("the service did not finish cleanly: %s", exc)
                self._qcgpjm.kill_manager_process()
                self._qcgpjm.cleanup()

    def __enter__(self) -> "QCGPJExecutor":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.shutdown(wait=exc_type is None)
