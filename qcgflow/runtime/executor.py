"""Runs scheduled iterations through a launcher and reports how they ended.

::

    Manager --start(job, position, allocation)--> Executor --launch--> LocalLauncher
       ^                                            |  wall-time timer (SIGTERM, then SIGKILL)
       '---- on_executing / on_done(Outcome) <------'  exit -> Outcome (state, message, runtime)

Guarantees: ``on_executing`` is called once the process exists; ``on_done`` is called
exactly once per started iteration, always from the event loop (never from inside
``start``), including when the process could not be launched.
"""

import datetime
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional

from .jobs import JobState
from .launch.environment import (EXIT_MODULE_LOAD, PRELUDE_FAILURES, CommandTemplates,
                                 ModelUnavailable, TaskContext, build_task)
from .launch.local import ExitInfo, ProcessSpec, last_line
from .launch.oom import OOM_NOTE, OomWatch

_log = logging.getLogger(__name__)

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
# Iterations of one job started together (within ORDER_START_WINDOW s of each other, in
# position order) that run alike end within a few ms of each other, in an order the
# scheduling of their first milliseconds decides. An iteration that ran ORDER_MIN_RUNTIME s
# or more and ends while such an earlier one still runs is reported when that one ends,
# waiting at most ORDER_HOLD_SHARE of its run time (<= ORDER_HOLD_MAX s): "iteration 3
# ended" then implies "0-2 ended" for equal iterations, as upstream's test_resume expects
# of a run on 4 cores (one such failure in ~25 CI runs on 2 loaded cores). Shorter
# iterations are reported at once: their order is noise and their cores are wanted.
ORDER_START_WINDOW = 0.05
ORDER_MIN_RUNTIME = 0.5
ORDER_HOLD_SHARE = 0.01
ORDER_HOLD_MAX = 0.05
ORDER_LOOKBACK = 64  # earlier positions looked at (those started with it come just before)


@dataclass
class Outcome:  # one per task: not frozen (a frozen dataclass's __init__ is slow); immutable
    """How a task ended: its final state, the message that says why, its runtime."""

    state: JobState
    message: Optional[str]
    runtime: Mapping[str, str]


class _Task:
    __slots__ = ("job", "position", "allocation", "pid", "wd", "pname", "timer", "kill_timer",
                 "stop_reason", "stop_state", "stderr", "node", "oom_mark", "step", "began",
                 "held", "hold_timer")

    def __init__(self, job, position, allocation):
        self.job = job
        self.position = position
        self.allocation = allocation
        self.pid = None
        self.wd = None
        self.pname = None
        self.timer = None
        self.kill_timer = None
        self.stop_reason = None   # why we signalled it (wall time, cancel)
        self.stop_state = None
        self.stderr = None
        self.node = None  # where the process runs (launchers with several nodes)
        self.oom_mark = None  # the host's OOM-kill counter when it started (launch/oom.py)
        self.step = None  # its QCG_PM_STEP_ID
        self.began = None  # monotonic, when its process existed
        self.held = None  # its Outcome while its end waits for an earlier iteration's
        self.hold_timer = None


class Executor:
    """Turns start decisions into processes and process exits into outcomes."""

    def __init__(self, loop, launcher, root_wd: str, base_env: Mapping[str, str],
                 on_executing: Callable, on_done: Callable, step_prefix: str = "job",
                 slurm: bool = False, aux_dir: Optional[str] = None, gpus: bool = False):
        self._loop = loop
        self._launcher = launcher
        self._root_wd = root_wd
        self._base_env = dict(base_env)
        self._on_executing = on_executing
        self._on_done = on_done
        self._tasks: Dict[tuple, _Task] = {}
        self._steps_running: Dict[str, _Task] = {}  # QCG_PM_STEP_ID -> its running task
        self._step_prefix = step_prefix
        self._slurm = slurm
        self._aux_dir = aux_dir
        self._gpus = gpus  # the pool has GPUs: tasks get theirs bound, the others none
        self._steps = 0
        self._templates = CommandTemplates(self._base_env, root_wd, slurm=slurm,
                                           aux_dir=aux_dir, gpus=gpus)
        self._oom = OomWatch()
        self._held = 0  # ended iterations whose outcome waits (ORDER_*)
        # Called with (unit name, allocation, ExitInfo) for every process that ended:
        # exact start/end times and rusage for the run statistics (--enable-rt-stats).
        self.exit_listeners: List[Callable] = []

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def started(self) -> int:
        """How many tasks ``start`` was asked to launch so far."""
        return self._steps

    def start(self, job, position: Optional[int], allocation) -> None:
        """Launch one iteration (or a whole non-iterative job) on ``allocation``."""
        task = _Task(job, position, allocation)
        self._tasks[(job.name, position)] = task
        spec = job.spec
        it = spec.iteration
        self._steps += 1
        task.step = "%s%d" % (self._step_prefix, self._steps)
        self._steps_running[task.step] = task
        try:
            # iterations of a sweep: a template per allocation (None: build this one)
            found = (None if position is None else
                     self._templates.command(spec.execution, allocation, task.step))
            if found is not None:
                command, env = found
            else:
                ctx = TaskContext(
                    name=job.unit_name(position),
                    index=None if position is None else it.start + position,
                    value=it.values[position] if (it is not None and it.values) else None,
                    allocation=allocation, root_wd=self._root_wd,
                    step_id=task.step,
                    slurm=self._slurm, aux_dir=self._aux_dir, gpus=self._gpus)
                command = build_task(spec.execution, ctx, self._base_env)
                env = command.env
            task.wd = command.wd
            if spec.execution.wd:
                os.makedirs(command.wd, exist_ok=True)
            for path, content in command.files:
                with open(path, "w") as handle:
                    handle.write(content)
        except (OSError, ModelUnavailable) as exc:
            message = (exc.reason if isinstance(exc, ModelUnavailable)
                       else "cannot prepare the working directory: %s" % exc)
            self._loop.call_soon(lambda: self._failed_to_start(task, message))
            return
        task.pname = os.path.basename(command.argv[0])
        task.node = command.node
        task.stderr = command.stderr
        self._launcher.launch(
            ProcessSpec(command.argv, env, command.wd, command.stdin, command.stdout,
                        command.stderr, cpus=command.cpus, node=command.node,
                        warm=_plain(spec.execution), when_written=when_written(spec)),
            lambda pid: self._started(task, pid),
            lambda info: self._exited(task, info),
            lambda message: self._failed_to_start(task, message))

    def _started(self, task: _Task, pid: int) -> None:
        task.pid = pid
        task.began = time.monotonic()
        task.oom_mark = self._oom.mark()
        if task.stop_reason is not None:  # stopped while it was being spawned
            self._launcher.signal(pid, signal.SIGKILL, task.node)
        self._on_executing(task.job, task.position)
        wt = task.job.spec.resources.wt
        if wt:
            task.timer = self._loop.call_later(
                wt, lambda: self._stop(task, "wall time limit (%s) exceeded" % _seconds(wt),
                                       JobState.FAILED))

    def _failed_to_start(self, task: _Task, message: str) -> None:
        self._finish(task, Outcome(JobState.FAILED, message, self._runtime(task, -1, None)))

    def running_step(self, step: str):
        """``(job, position, allocation)`` of the running task whose QCG_PM_STEP_ID is
        ``step``, or None (ended, or never ours)."""
        task = self._steps_running.get(step)
        return None if task is None else (task.job, task.position, task.allocation)

    def stop(self, job, position: Optional[int], reason: str, state: JobState,
             grace: float = KILL_GRACE) -> bool:
        """Terminate a running iteration (SIGTERM, SIGKILL after ``grace``); False if not running."""
        task = self._tasks.get((job.name, position))
        if task is None:
            return False
        self._stop(task, reason, state, grace)
        return True

    def stop_all(self, reason: str, state: JobState) -> None:
        for task in list(self._tasks.values()):
            self._stop(task, reason, state, grace=0.0)

    def _stop(self, task: _Task, reason: str, state: JobState, grace: float = KILL_GRACE):
        if task.stop_reason is not None or task.held is not None:
            return  # stopped already, or it ended and its end waits (ORDER_*): its pid may
            # be a warm worker's that runs another task now
        task.stop_reason, task.stop_state = reason, state
        if task.pid is None:
            return  # still being spawned: killed as soon as it exists
        if grace <= 0:
            self._launcher.signal(task.pid, signal.SIGKILL, task.node)
            return
        self._launcher.signal(task.pid, signal.SIGTERM, task.node)
        task.kill_timer = self._loop.call_later(
            grace, lambda: self._launcher.signal(task.pid, signal.SIGKILL, task.node))

    def _exited(self, task: _Task, info: ExitInfo) -> None:
        for timer in (task.timer, task.kill_timer):
            if timer is not None:
                timer.cancel()
        runtime = self._runtime(task, info.exit_code, info)
        for listener in self.exit_listeners:
            listener(task.job.unit_name(task.position), task.allocation, info)
        if info.interrupted is not None:
            outcome = Outcome(JobState.CANCELED, info.interrupted, runtime)
        elif info.failure is not None:
            outcome = Outcome(JobState.FAILED, info.failure, runtime)
        elif task.stop_reason is not None:
            outcome = Outcome(task.stop_state, task.stop_reason, runtime)
        elif info.exit_code == 0:
            outcome = Outcome(JobState.SUCCEED, None, runtime)
        elif info.signal is not None:
            message = "killed by signal %s" % _signal_name(info.signal)
            if info.signal == signal.SIGKILL and self._oom.killed_since(task.oom_mark):
                message += " (%s)" % OOM_NOTE
            outcome = Outcome(JobState.FAILED, message, runtime)
        elif info.exit_code in PRELUDE_FAILURES and (task.job.spec.execution.modules
                                                     or task.job.spec.execution.venv):
            outcome = Outcome(JobState.FAILED, _prelude_failure(info.exit_code, task), runtime)
        else:
            outcome = Outcome(JobState.FAILED, "exit code %d" % info.exit_code, runtime)
        ran = info.ended - info.started
        if task.position is not None and ran >= ORDER_MIN_RUNTIME and self._after(task):
            task.held = outcome
            task.hold_timer = self._loop.call_later(min(ORDER_HOLD_MAX,
                                                        ran * ORDER_HOLD_SHARE),
                                                    lambda: self._release(task))
            self._held += 1
            return
        self._finish(task, outcome)

    def _after(self, task: _Task) -> bool:
        """Whether an earlier iteration of ``task``'s job, started with it, has not been
        reported yet (it runs, or its own end waits)."""
        if task.began is None:
            return False
        name = task.job.name
        for position in range(task.position - 1,
                              max(-1, task.position - 1 - ORDER_LOOKBACK), -1):
            other = self._tasks.get((name, position))
            if other is None:
                continue
            if other.began is None or task.began - other.began > ORDER_START_WINDOW:
                return False  # started before the window: the earlier ones too
            return True
        return False

    def _release(self, task: _Task) -> None:
        """Report a held end (its wait is over, or the earlier iteration ended)."""
        outcome, task.held = task.held, None
        if outcome is None:
            return
        self._held -= 1
        if task.hold_timer is not None:
            task.hold_timer.cancel()
        self._finish(task, outcome)

    def _finish(self, task: _Task, outcome: Outcome) -> None:
        del self._tasks[(task.job.name, task.position)]
        self._steps_running.pop(task.step, None)
        self._on_done(task.job, task.position, task.allocation, outcome)
        if self._held and task.position is not None:
            self._release_after(task)

    def _release_after(self, task: _Task) -> None:
        """Report, in position order, the held ends of later iterations that no longer
        wait for anything (``task`` just ended)."""
        name = task.job.name
        for position in range(task.position + 1, task.position + 1 + ORDER_LOOKBACK):
            other = self._tasks.get((name, position))
            if other is None:
                continue
            if other.held is None or self._after(other):
                return  # still running, or still waiting: the later ones wait behind it
            self._release(other)  # (its _finish looks further on itself)
            return

    def _runtime(self, task: _Task, exit_code: int, info: Optional[ExitInfo]) -> Dict[str, str]:
        runtime = {"allocation": task.allocation.describe(), "wd": task.wd or self._root_wd}
        if task.allocation.total_gpus:  # 'n1=0,1;n2=3': the reports count GPU-hours from it
            runtime["gpus"] = ";".join("%s=%s" % (p.node, ",".join(map(str, p.gpus)))
                                       for p in task.allocation.parts if p.gpus)
        if info is not None:
            runtime["rtime"] = str(datetime.timedelta(seconds=info.ended - info.started))
        runtime["exit_code"] = str(exit_code)
        if task.pid is not None:
            runtime["pid"] = str(task.pid)
        if task.pname:
            runtime["pname"] = task.pname
        return runtime


def _plain(execution) -> bool:
    """A command run as given (no shell prelude, no model): a warm worker may run it."""
    return (execution.script is None and not execution.modules and not execution.venv
            and execution.model in (None, "", "default"))


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _seconds(value: float) -> str:
    return ("%gs" % value) if value < 60 else str(datetime.timedelta(seconds=value))


def _prelude_failure(exit_code: int, task: _Task) -> str:
    """The message of a task whose modules or venv could not be set up: the program did
    not run (QCG-PilotJob prints the error and runs it anyway; docs/job-states.md)."""
    detail = last_line(task.stderr, skip="qcgflow:")  # the module tool's own error
    if exit_code != EXIT_MODULE_LOAD:
        message = PRELUDE_FAILURES[exit_code]
        return "%s: %s" % (message, detail) if detail else message
    failed = _failed_module(task.stderr)
    what = ("module load %s failed" % failed if failed else "module load failed (modules: %s)"
            % ", ".join(task.job.spec.execution.modules))
    hint = "" if task.stderr else "; give the job a stderr file to see the module tool's error"
    return "%s%s (the program was not run; exit code %d%s)" % (
        what, ": " + detail if detail else "", exit_code, hint)


def when_written(spec) -> tuple:
    """The streams of a job created only when written (``attributes.qcgflow.when_written``,
    which the graph compiler sets for the file names it chooses; launch/streams.py)."""
    attributes = spec.attributes
    if not attributes:
        return ()
    ours = attributes.get("qcgflow")
    streams = ours.get("when_written") if isinstance(ours, dict) else None
    if not streams or not isinstance(streams, (list, tuple)):
        return ()
    return tuple(stream for stream in ("stdout", "stderr") if stream in streams)


def _failed_module(path: Optional[str]) -> Optional[str]:
    """The module named by the prelude's last ``qcgflow: module load X failed`` line."""
    prefix, suffix = "qcgflow: module load ", " failed"
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith(prefix) and line.endswith(suffix):
            return line[len(prefix):-len(suffix)]
    return None
