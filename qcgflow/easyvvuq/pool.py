"""``Pool``: a ``concurrent.futures.Executor`` for EasyVVUQ campaigns on a qcgflow service.

::

    campaign.execute(pool=Pool(...)).collate()
      └─ Pool.submit(actions.start, previous)  (one call per run, from the driver)
           default:   one Python task  run_actions(actions, previous)   ── warm worker
           model= / venv= / modules=  (the chain is split, see chain.py):
                      CreateRunDirectory here ─> task: actions before ExecuteLocal
                        ─> command job: the model (wrapped by the MPI model, wd = run dir)
                        ─> task: actions after ExecuteLocal (Decode)
      <─ a plain concurrent.futures.Future per run: PENDING, RUNNING once a job of the run
         is EXECUTING (publisher event), then the returned ``previous`` or a RunFailed

Python tasks run in the service's warm workers, forked from its zygote. With ``warm`` (the
default) that zygote is a fork of the driver made when the pool starts
(runtime/launch/template.py), so the workers have easyvvuq (and whatever else the driver
imported) without importing it; a driver with other threads running gets an ordinary
zygote, which learns easyvvuq from the warm-up tasks ``Pool`` starts at once (one import
per worker, seconds each). ``warm_up()`` waits for those tasks.
"""

import concurrent.futures as cf
import copy
import logging
import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

from qcgflow.graph import options as _options
from qcgflow.graph.commands import mpi
from ..errors import DependencyFailed, RunError, TaskFailed
from qcgflow.session.driver import Session
from qcgflow.graph.task import task
from ._worker import RunFailed, finish_split, run_actions, tail, warm_up, warmed
from .chain import Split, actions_of, run_resources, split

_log = logging.getLogger(__name__)

_EXIT_CODE = re.compile(r"exit code (-?\d+)")
_KEEP = object()  # Pool.options: this option is not changed


class _Shared:
    """What a pool and its variants (``Pool.options``) share: the runs in flight."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_job: Dict[str, cf.Future] = {}  # job name -> the run's future
        self.count = 0
        self.closed = False


def exit_code_of(messages: str) -> Optional[int]:
    """The exit code in a runtime reason (``exit code 3``), else None."""
    match = _EXIT_CODE.search(messages or "")
    return int(match.group(1)) if match else None


class Pool(cf.Executor):
    """Runs EasyVVUQ runs (``campaign.execute(pool=Pool())``) as tasks of a local service.

    Args:
        resources: the service's resources in ``--nodes`` syntax (``"2"``, ``"n1:2,n2:2"``);
            default: this host's CPUs (or the Slurm allocation).
        cores: cores per run (per node when ``nodes`` is given).
        nodes: nodes per run.
        model: how the model command starts (``openmpi``, ``intelmpi``, ``srunmpi``,
            ``threads``, ``default``): the model command of the chain becomes a job of its
            own that the MPI model wraps, not the Python code around it.
        model_opts: options of the model (``{"mpirun_args": [...]}``).
        venv: a virtual environment activated for the model command.
        modules: environment modules loaded for the model command.
        resources_for: ``resources_for(previous) -> {"cores": n, "nodes": m}`` (or None)
            per run, from its ``previous["run_info"]["params"]``.
        wd: the service's working directory (default: a new ``$TMPDIR/qcgflow-run-*``).
        wt: wall time per run (enforced).
        warm: fork the service's warm worker from this process (it starts with this
            process's imports, easyvvuq included) and start one warm-up task per core.
        service_args: more ``qcgflow service`` options.

    Guarantees: ``submit`` returns a plain ``concurrent.futures.Future``; it is
    ``running()`` only while a job of the run executes; a failed run raises
    ``RunFailed`` (run id, run dir, the model's exit code and stderr tail) from
    ``result()``; the pool serves any number of rounds until ``shutdown``.

    Raises:
        ValueError: an invalid option (``TaskOptionError``), one line naming it.
        RunError: the service could not start.
    """

    def __init__(self, resources: Optional[Any] = None, cores: Any = 1, nodes: Any = 1,
                 model: Optional[str] = None, model_opts: Optional[Dict[str, Any]] = None,
                 venv: Optional[str] = None, modules: Optional[Sequence[str]] = None,
                 resources_for: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 wd: Optional[str] = None, wt: Any = None, warm: bool = True,
                 service_args: Sequence[str] = ()):
        self._defaults = {"cores": cores, "nodes": nodes}
        self._model = {"model": model or "default", "model_opts": model_opts, "venv": venv,
                       "modules": modules, "wt": wt}
        _options.validate(dict(self._defaults, **self._model), "easyvvuq.Pool")
        if resources_for is not None and not callable(resources_for):
            raise ValueError("easyvvuq.Pool: resources_for must be a function of a run's "
                             "'previous' dict, got %r" % (resources_for,))
        self._split = self._model["model"] != "default" or bool(venv or modules)
        self._resources_for = resources_for
        self._shared = _Shared()
        self._owner = True
        # warm: the service's warm worker is a fork of this process, so it has the
        # driver's imports (easyvvuq: seconds per worker otherwise)
        self.session = Session.start(wd, resources, service_args,
                                     on_executing=self._on_executing, zygote_template=warm)
        self._warm: Optional[cf.Future] = None
        if warm:
            try:
                self._warm = self._start_warm_up()
            except BaseException:
                self.session.shutdown()
                raise

    # ------------------------------------------------------------------ Executor API
    @property
    def wd(self) -> str:
        """The service's working directory (call, result and output files)."""
        return self.session.root

    def warm_up(self, timeout: Optional[float] = None) -> None:
        """Wait until the warm workers have imported easyvvuq (no-op with ``warm=False``).

        Raises:
            TimeoutError: not warm within ``timeout`` seconds.
        """
        if self._warm is None:
            return
        try:
            self._warm.result(timeout)
        except cf.TimeoutError:
            raise TimeoutError("the pool's warm-up did not finish within %s s" % timeout) \
                from None
        except Exception as exc:  # noqa: BLE001 - runs still work, only colder
            _log.warning("the pool's warm-up failed: %s", exc)

    def options(self, cores: Any = _KEEP, nodes: Any = _KEEP, model: Any = _KEEP,
                model_opts: Any = _KEEP, venv: Any = _KEEP, modules: Any = _KEEP,
                resources_for: Any = _KEEP, wt: Any = _KEEP) -> "Pool":
        """A variant of this pool with other per-run options on the same service (and
        warm worker); shutting the variant down does not stop the service.

        Raises:
            ValueError: an invalid option, one line naming it.
        """
        variant = Pool.__new__(Pool)
        variant.__dict__.update(self.__dict__)
        variant._owner = False
        variant._defaults = dict(self._defaults)
        variant._model = dict(self._model)
        for key, value in (("cores", cores), ("nodes", nodes)):
            if value is not _KEEP:
                variant._defaults[key] = value
        for key, value in (("model", model), ("model_opts", model_opts), ("venv", venv),
                           ("modules", modules), ("wt", wt)):
            if value is not _KEEP:
                variant._model[key] = value if key != "model" else value or "default"
        if resources_for is not _KEEP:
            variant._resources_for = resources_for
        _options.validate(dict(variant._defaults, **variant._model), "easyvvuq.Pool")
        variant._split = variant._model["model"] != "default" or bool(
            variant._model["venv"] or variant._model["modules"])
        return variant

    def submit(self, fn: Callable, /, *args, **kwargs) -> cf.Future:
        """Schedule ``fn(*args, **kwargs)``; for an EasyVVUQ run (``actions.start``,
        ``previous``) the run's resources, model and error reporting apply.

        Raises:
            RuntimeError: the pool is shut down.
            ValueError: ``resources_for`` gave an invalid value, or ``model`` / ``venv`` /
                ``modules`` were given for a chain that cannot be split.
        """
        shared = self._shared
        with shared.lock:
            if shared.closed:
                raise RuntimeError("cannot submit to an easyvvuq.Pool after shutdown()")
            shared.count += 1
            number = shared.count
        actions = actions_of(fn)
        previous = args[0] if len(args) == 1 and not kwargs else None
        if actions is None or not isinstance(previous, dict) or "run_id" not in previous:
            ref = task(fn).options(**self._defaults, name="call-%d" % number) \
                .bind(*args, **kwargs)
            return self._track([ref], self.session.submit(ref)[0], None)
        opts = run_resources(self._defaults, self._resources_for, previous)
        label = "run%s-%d" % (previous["run_id"], number)
        if not self._split:
            ref = task(run_actions).options(**opts, wt=self._model["wt"], name=label) \
                .bind(actions, previous)
            return self._track([ref], self.session.submit(ref)[0], previous)
        how = split(actions)
        if how is None:
            raise ValueError("easyvvuq.Pool(model/venv/modules) needs an Actions chain "
                             "that starts with CreateRunDirectory and has one ExecuteLocal; "
                             "run %s has %s" % (previous["run_id"], [
                                 type(a).__name__ for a in actions.actions]))
        return self._submit_split(actions, how, copy.copy(previous), opts, label)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the service; ``wait``: first wait for the submitted runs (as executors do).
        Unfinished runs fail with ``RunError``. Idempotent. A variant (``options``) only
        waits: the service stops with the pool it came from."""
        shared = self._shared
        if not self._owner:
            if wait:
                with shared.lock:
                    pending = list(shared.by_job.values())
                cf.wait(pending)
            return
        with shared.lock:
            if shared.closed:
                return
            shared.closed = True
            pending = list(shared.by_job.values())
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            cf.wait(pending)
        self.session.shutdown()

    def __repr__(self) -> str:
        return "<easyvvuq.Pool %s%s>" % (self.wd, " (shut down)" if self._shared.closed else "")

    # ------------------------------------------------------------------ runs
    def _start_warm_up(self) -> cf.Future:
        """One task per core imports easyvvuq at once: each persistent worker the service
        keeps (one per running task) gets it, and forked children learn it from the
        zygote; a last task runs when that is done."""
        reply = self.session.client.request({"request": "resourcesInfo"}) or {}
        cores = max(1, int(reply.get("total_cores") or 1))
        first = [task(warm_up).options(cores=1, name="easyvvuq-warm-up-%d" % i).bind()
                 for i in range(cores)]
        last = task(warmed).options(cores=1, name="easyvvuq-warm").bind(first)
        return self.session.submit(last)[0]


    def _submit_split(self, actions, how: Split, previous: Dict[str, Any],
                      opts: Dict[str, Any], label: str) -> cf.Future:
        previous = actions.actions[0].start(previous)  # CreateRunDirectory: mkdir only
        command = how.command(actions)
        execute_local = actions.actions[how.model]
        before = task(run_actions).options(cores=1, name=label + "-encode") \
            .bind(actions, previous, 1, how.model)
        model = self._model
        job = mpi(command[0], args=command[1:], cores=opts["cores"], model=model["model"],
                  model_opts=model["model_opts"]).options(
            nodes=opts["nodes"], venv=model["venv"], modules=model["modules"],
            wt=model["wt"], wd=previous["rundir"], name=label + "-model").bind(after=[before])
        after = task(finish_split).options(cores=1, name=label + "-decode").bind(
            actions, before, job, how.model + 1, execute_local.stdout, execute_local.stderr)
        future = self.session.submit(after)[0]
        return self._track([before, job, after], future, previous)

    def _track(self, refs, inner: cf.Future, previous: Optional[Dict[str, Any]]) -> cf.Future:
        outer: cf.Future = cf.Future()
        names = [self.session.tasks[ref.node].name for ref in refs]
        with self._shared.lock:
            for name in names:
                self._shared.by_job[name] = outer
        inner.add_done_callback(lambda done: self._settle(outer, done, names, previous))
        return outer

    def _on_executing(self, job: str) -> None:
        with self._shared.lock:
            outer = self._shared.by_job.get(job)
            if outer is not None and not outer.running() and not outer.done():
                if not outer.set_running_or_notify_cancel():
                    _log.info("run of job %s was cancelled; it runs to its end", job)

    def _settle(self, outer: cf.Future, inner: cf.Future, names: List[str],
                previous: Optional[Dict[str, Any]]) -> None:
        with self._shared.lock:
            for name in names:
                self._shared.by_job.pop(name, None)
            if outer.cancelled() or outer.done():
                return
            if not outer.running() and not outer.set_running_or_notify_cancel():
                return
        error = inner.exception()
        if error is None:
            outer.set_result(inner.result())
        elif previous is None:
            outer.set_exception(error)
        else:
            outer.set_exception(self._run_error(error, previous, names))

    def _run_error(self, error: BaseException, previous: Dict[str, Any],
                   names: List[str]) -> BaseException:
        """``error`` of a run's task as a RunFailed naming the run."""
        root = error
        if isinstance(error, DependencyFailed) and error.root_error is not None:
            root = error.root_error
        if isinstance(root, TaskFailed) and isinstance(root.cause, RunFailed):
            cause = root.cause
            return RunFailed(cause.run_id, cause.run_dir, cause.exit_code, cause.stderr_tail,
                             cause.reason, root.remote_traceback)
        run_dir = previous.get("rundir") or ""
        if isinstance(root, TaskFailed) and root.task.endswith("-model"):
            code = exit_code_of(root.messages)
            reason = ("the model exited with code %d" % code if code is not None
                      else "the model failed: %s" % root.messages)
            return RunFailed(previous["run_id"], run_dir, code,
                             tail(os.path.join(run_dir, root.task + ".err")), reason)
        if isinstance(root, TaskFailed):
            return RunFailed(previous["run_id"], run_dir, None, "",
                             root.messages or str(root), root.remote_traceback)
        if isinstance(root, RunError):
            return RunFailed(previous["run_id"], run_dir, None, "", root.reason)
        return error

