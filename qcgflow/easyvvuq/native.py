"""``execute(campaign, ...)``: the native path for the standard EasyVVUQ chain.

::

    execute(campaign, cores=2, model="openmpi")
      draw samples ─> for every NEW run, here in the driver: CreateRunDirectory, Encode
      ─> ONE iterative command job per resource shape over the run directories
         (exec/args = ExecuteLocal's command, wd = ${itval}; the MPI model wraps the
          simulation itself)                                  ──> the service
    Execution.collate()
      wait ─> per iteration: SUCCEED ─> Decode here ─> store_result (COLLATED)
                              FAILED  ─> the run stays NEW, the reason in its
                                         execution_info; retried (retries=n) as a new
                                         iterative job over the failed ones only
      ─> commit ─> RunsFailed naming every failed run (after the others were stored)

Any other chain falls back to ``Pool`` (``campaign.apply_for_each_sample`` + ``start``).
"""

import concurrent.futures as cf
import copy
import itertools
import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from qcgflow.graph import options as _options
from qcgflow.graph.commands import mpi
from ..errors import QcgflowError
from qcgflow.runtime.protocol import SUCCEED
from qcgflow.session.driver import Session
from ._worker import RunFailed, rename_output, tail
from .chain import is_standard, run_resources
from .pool import Pool, exit_code_of

_log = logging.getLogger(__name__)


class RunsFailed(QcgflowError):
    """Some runs of a campaign failed; the others were stored.

    Attributes:
        failures: run id -> ``RunFailed`` (run dir, exit code, stderr tail, reason).
    """

    def __init__(self, failures: Dict[Any, RunFailed]):
        self.failures = dict(failures)
        first = next(iter(self.failures.values()))
        super().__init__("%d run(s) failed (ids %s); they stay NEW, a later execute() "
                         "retries them. First: %s" % (
                             len(self.failures), ", ".join(map(str, self.failures)), first))


class _Group:
    """The runs that share one resource shape: one iterative job per attempt."""

    def __init__(self, opts: Dict[str, Any]):
        self.opts = opts
        self.runs: List[Dict[str, Any]] = []
        self.job: Optional[str] = None
        self.future: Optional[cf.Future] = None


class Execution:
    """The runs of one ``execute`` call; ``collate()`` as in EasyVVUQ's ``ActionPool``."""

    def __init__(self, campaign, session: Session, own_session: bool, actions,
                 groups: List[_Group], failures: Dict[Any, RunFailed], settings: Dict):
        self.campaign, self.session, self.own_session = campaign, session, own_session
        self.actions, self.groups, self.failures = actions, groups, failures
        self.settings = settings
        self.stored = 0
        self._collated = False

    def progress(self) -> Dict[str, int]:
        """Runs per state: ``ready`` (submitted), ``finished`` (stored), ``failed``."""
        waiting = sum(len(g.runs) for g in self.groups if g.future and not g.future.done())
        done = sum(len(g.runs) for g in self.groups if g.future and g.future.done())
        return {"ready": waiting, "active": 0, "finished": self.stored or done,
                "failed": len(self.failures)}

    def collate(self, progress_bar: bool = False, raise_errors: bool = True) -> "Execution":
        """Wait for the runs, decode and store the successes, record the failures.

        Failed runs stay NEW with the reason in their ``execution_info``
        (``{"qcgflow": {"error": ..., "exit_code": ...}}``); ``retries`` given to
        ``execute`` resubmits them first. Idempotent.

        Raises:
            RunsFailed: after storing the others, when a run failed (``raise_errors``).
            TimeoutError: the runs did not finish within ``execute``'s ``timeout``.
        """
        if not self._collated:
            try:
                self._collate()
            finally:
                self._collated = True
                if self.own_session:
                    self.session.shutdown()
        if self.failures and raise_errors:
            raise RunsFailed(self.failures)
        return self

    # ------------------------------------------------------------------ internals
    def _collate(self) -> None:
        deadline = self.settings["deadline"]
        attempts = 0
        groups = [g for g in self.groups if g.runs]
        while groups:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, pending = cf.wait([g.future for g in groups], timeout=left)
            if pending:
                raise TimeoutError("the campaign's runs did not finish within the timeout")
            retry: List[_Group] = []
            for group in groups:
                failed = self._finish(group)
                if failed and attempts < self.settings["retries"]:
                    _log.info("retrying %d failed run(s)", len(failed))
                    again = _Group(group.opts)
                    again.runs = [previous for previous, _ in failed]
                    _submit(self.session, self.actions, again, self.settings)
                    retry.append(again)
                else:
                    for previous, error in failed:
                        self._record(previous, error)
            attempts += 1
            groups = retry
        self.campaign.campaign_db.session.commit()

    def _finish(self, group: _Group) -> List[Tuple[Dict[str, Any], RunFailed]]:
        """Decode and store the group's successes; return its failures."""
        states = _iteration_states(self.session, group)
        decode = self.actions.actions[3]
        execute_local = self.actions.actions[2]
        failed = []
        for it, previous in enumerate(group.runs):
            state, messages = states[it]
            run_dir = previous["rundir"]
            out = os.path.join(run_dir, "%s.%d.out" % (group.job, it))
            err = os.path.join(run_dir, "%s.%d.err" % (group.job, it))
            if state != SUCCEED:
                code = exit_code_of(messages)
                reason = ("the model exited with code %d" % code if code is not None else
                          "the model job ended %s: %s" % (state, messages or "no reason"))
                failed.append((previous, RunFailed(previous["run_id"], run_dir, code,
                                                   tail(err), reason)))
                continue
            for path, name in ((out, execute_local.stdout), (err, execute_local.stderr)):
                if isinstance(name, str):
                    rename_output(path, os.path.join(run_dir, name))
            try:
                result = decode.start(copy.copy(previous))
            except Exception as exc:  # noqa: BLE001 - a bad output fails this run only
                failed.append((previous, RunFailed(
                    previous["run_id"], run_dir, 0, tail(err),
                    "Decode raised %s: %s" % (type(exc).__name__, exc))))
                continue
            self.campaign.campaign_db.store_result(result["run_id"], result,
                                                   change_status=result["collated"])
            self.stored += 1
        return failed

    def _record(self, previous: Dict[str, Any], error: RunFailed) -> None:
        _log.warning("%s", error)
        self.failures[previous["run_id"]] = error
        _set_execution_info(self.campaign, previous["run_id"], error)


def _set_execution_info(campaign, run_id: Any, error: RunFailed) -> None:
    from easyvvuq.db.sql import RunTable
    info = {"qcgflow": {"error": error.reason, "exit_code": error.exit_code,
                        "run_dir": error.run_dir}}
    campaign.campaign_db.session.query(RunTable).filter(RunTable.id == int(run_id)) \
        .update({"execution_info": json.dumps(info)})


def _iteration_states(session: Session, group: _Group) -> List[Tuple[str, str]]:
    """(state, reason) of each iteration of the group's job."""
    try:
        group.future.result()
        return [(SUCCEED, "")] * len(group.runs)
    except Exception:  # noqa: BLE001 - some iterations failed: ask which
        pass
    names = ["%s:%d" % (group.job, it) for it in range(len(group.runs))]
    reply = session.client.request({"request": "jobStatus", "jobNames": names}) or {}
    jobs = reply.get("jobs") or {}
    states = []
    for name in names:
        data = (jobs.get(name) or {}).get("data") or {}
        states.append((str(data.get("status")), str(data.get("messages") or "")))
    return states


_numbers = itertools.count(1)  # job names: easyvvuq-<pid>-<n>


def _submit(session: Session, actions, group: _Group, settings: Dict[str, Any]) -> None:
    command = list(actions.actions[2].full_cmd)
    group.job = "easyvvuq-%d-%d" % (os.getpid(), next(_numbers))
    while group.job in session.taken:
        group.job = "easyvvuq-%d-%d" % (os.getpid(), next(_numbers))
    template = mpi(command[0], args=command[1:], cores=group.opts["cores"],
                   model=settings["model"], model_opts=settings["model_opts"]).options(
        nodes=group.opts["nodes"], venv=settings["venv"], modules=settings["modules"],
        wt=settings["wt"], wd="${itval}", name=group.job)
    ref = template.map([previous["rundir"] for previous in group.runs])
    group.future = session.submit(ref)[0]


def execute(campaign, nsamples: int = 0, *, pool: Optional[Pool] = None,
            resources: Optional[Any] = None, cores: Any = 1, nodes: Any = 1,
            model: Optional[str] = None, model_opts: Optional[Dict[str, Any]] = None,
            venv: Optional[str] = None, modules: Optional[Sequence[str]] = None,
            resources_for: Optional[Callable[[Dict[str, Any]], Any]] = None,
            retries: int = 0, wt: Any = None, wd: Optional[str] = None,
            timeout: Optional[float] = None, mark_invalid: bool = False):
    """Draw samples and run the campaign's NEW runs; ``.collate()`` stores the results.

    Replaces ``campaign.execute(nsamples, pool=...)``: ``execute(campaign).collate()``.
    For the standard chain (CreateRunDirectory, Encode, ExecuteLocal, Decode) only the
    model command runs as a job (one iterative job per resource shape, the MPI ``model``
    wrapping the simulation); encoding and decoding happen here. Other chains run
    through a ``Pool`` (``pool``, or one made from these options).

    Args:
        campaign: an ``easyvvuq.Campaign`` with an active app and sampler.
        nsamples: samples to draw first (0: all of a finite sampler), as in EasyVVUQ.
        pool: a ``Pool`` whose service to use (default: a new local service for this
            call, stopped by ``collate()``).
        resources: the new service's resources (``--nodes`` syntax).
        cores, nodes, model, model_opts, venv, modules, wt: of each model run.
        resources_for: ``resources_for(previous) -> {"cores": n, "nodes": m}`` per run.
        retries: resubmit failed model runs up to this many times.
        wd: the new service's working directory.
        timeout: seconds for ``collate()`` to wait (None: no limit).
        mark_invalid: as in ``campaign.draw_samples``.

    Returns:
        an ``Execution`` (standard chain) or EasyVVUQ's ``ActionPool`` (fallback); both
        have ``collate()`` and ``progress()``.

    Raises:
        ValueError: an invalid option, one line naming it.
    """
    settings = {"model": model or "default", "model_opts": model_opts, "venv": venv,
                "modules": modules, "wt": wt, "retries": int(retries),
                "deadline": None if timeout is None else time.monotonic() + timeout}
    _options.validate({"cores": cores, "nodes": nodes, "model": settings["model"],
                       "model_opts": model_opts, "venv": venv, "modules": modules, "wt": wt},
                      "easyvvuq.execute")
    if settings["retries"] < 0:
        raise ValueError("easyvvuq.execute: retries must be >= 0, got %r" % (retries,))
    campaign.draw_samples(nsamples, mark_invalid=mark_invalid)
    actions = campaign._active_app_actions
    if not is_standard(actions):
        _log.info("not the standard EasyVVUQ chain: running it through a Pool")
        if pool is None:
            pool = _OwnPool(resources, cores, nodes, model, model_opts, venv, modules,
                            resources_for, wd=wd, wt=wt)
        return _Fallback(campaign.apply_for_each_sample(actions).start(pool=pool), pool)
    from easyvvuq.constants import Status
    own = pool is None
    session = Session.start(wd, resources) if own else pool.session
    try:
        groups: Dict[Tuple, _Group] = {}
        failures: Dict[Any, RunFailed] = {}
        for previous in _runs(campaign, Status.NEW):
            prepared = _prepare(actions, previous)
            if isinstance(prepared, RunFailed):
                failures[previous["run_id"]] = prepared
                continue
            opts = run_resources({"cores": cores, "nodes": nodes}, resources_for, previous)
            key = (json.dumps(opts["cores"], sort_keys=True),
                   json.dumps(opts["nodes"], sort_keys=True))
            groups.setdefault(key, _Group(opts)).runs.append(prepared)
        for group in groups.values():
            _submit(session, actions, group, settings)
    except BaseException:
        if own:
            session.shutdown()
        raise
    execution = Execution(campaign, session, own, actions, list(groups.values()), {},
                          settings)
    for run_id, error in failures.items():
        execution._record({"run_id": run_id}, error)
    return execution


def _runs(campaign, status):
    """The ``previous`` dicts of the active app's runs in ``status`` (as EasyVVUQ makes
    them in ``apply_for_each_sample``)."""
    for run_id, run_data in campaign.campaign_db.runs(status=status,
                                                     app_id=campaign._active_app["id"]):
        yield {"run_id": run_id, "campaign_dir": campaign._campaign_dir,
               "rundir": run_data["run_dir"], "run_info": run_data, "result": {},
               "collated": False}


def _prepare(actions, previous: Dict[str, Any]):
    """CreateRunDirectory and Encode for one run; a RunFailed when they raise."""
    try:
        previous = actions.actions[0].start(copy.copy(previous))
        return actions.actions[1].start(previous)
    except Exception as exc:  # noqa: BLE001 - a bad sample fails its run only
        return RunFailed(previous["run_id"], previous.get("rundir") or "", None, "",
                         "encoding raised %s: %s" % (type(exc).__name__, exc))


class _OwnPool(Pool):
    """A Pool made by ``execute`` for a fallback chain; shut down after ``collate``."""

    def __init__(self, resources, cores, nodes, model, model_opts, venv, modules,
                 resources_for, wd, wt):
        super().__init__(resources, cores, nodes, model, model_opts, venv, modules,
                         resources_for, wd=wd, wt=wt)


class _Fallback:
    """EasyVVUQ's ActionPool on a Pool: ``collate()`` also stops a pool made for it."""

    def __init__(self, action_pool, pool: Pool):
        self.action_pool, self.pool = action_pool, pool

    def progress(self) -> Dict[str, int]:
        return self.action_pool.progress()

    def collate(self, progress_bar: bool = False):
        try:
            self.action_pool.collate(progress_bar=progress_bar)
        finally:
            if isinstance(self.pool, _OwnPool):
                self.pool.shutdown()
        return self
