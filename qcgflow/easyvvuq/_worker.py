"""What runs inside a task of the EasyVVUQ pool (a warm Python worker), and its error.

Kept lean: it is unpickled in every task. It never imports easyvvuq by name: the
``Actions`` object it receives brings its own classes (unpickling imports them once per
warm worker).
"""

import copy
import os
import subprocess
import sys
from typing import Any, Dict, Optional

from ..errors import QcgflowError

STDERR_TAIL = 2000  # characters of the model's stderr kept in a RunFailed


class RunFailed(QcgflowError):
    """One EasyVVUQ run failed.

    Attributes:
        run_id: the run's id in the campaign database.
        run_dir: its run directory ("" when it was not created).
        exit_code: the model's exit code (None when the model did not run or the failure is
            in Python: encoding, decoding, a custom action).
        stderr_tail: the end of the model's stderr ("" when unknown).
        reason: what failed, in one line.
        remote_traceback: the Python traceback of the failure in the worker ("" if none).
    """

    def __init__(self, run_id: Any, run_dir: str = "", exit_code: Optional[int] = None,
                 stderr_tail: str = "", reason: str = "", remote_traceback: str = ""):
        self.run_id, self.run_dir, self.exit_code = run_id, run_dir, exit_code
        self.stderr_tail, self.reason = stderr_tail, reason
        self.remote_traceback = remote_traceback
        super().__init__(str(self))

    def __str__(self) -> str:
        text = "run %s failed (run dir %s): %s" % (self.run_id, self.run_dir or "not created",
                                                   self.reason or "unknown reason")
        if self.stderr_tail:
            text += "\nthe model's stderr ends with:\n%s" % self.stderr_tail.rstrip()
        return text

    def __reduce__(self):
        return (RunFailed, (self.run_id, self.run_dir, self.exit_code, self.stderr_tail,
                            self.reason, self.remote_traceback))


def tail(path: str, limit: int = STDERR_TAIL) -> str:
    """The last ``limit`` characters of a text file ("" when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit * 4))
            return handle.read().decode("utf-8", "replace")[-limit:]
    except OSError:
        return ""


def _is_execute_local(action) -> bool:
    kind = type(action)
    return kind.__name__ == "ExecuteLocal" and kind.__module__.startswith("easyvvuq.")


def _default_wrapper(actions) -> bool:
    wrapper = getattr(actions, "wrapper", None)
    return getattr(wrapper, "__qualname__", "") == "Actions.__init__.<locals>.<lambda>"


def execute_local(action, previous: Dict[str, Any]) -> None:
    """Run an ``ExecuteLocal`` action's command as EasyVVUQ does (same command, in the run
    directory, same stdout/stderr files), but fail on a non-zero exit code.

    Raises:
        RunFailed: the command could not start or exited non-zero (with its stderr's end).
    """
    run_dir = previous["rundir"]
    stdout = action.stdout
    stderr_path = None
    handles = []
    try:
        if isinstance(stdout, str):
            stdout = open(os.path.join(run_dir, stdout), "w")
            handles.append(stdout)
        if isinstance(action.stderr, str):
            stderr_path = os.path.join(run_dir, action.stderr)
            stderr = open(stderr_path, "w")
            handles.append(stderr)
        elif action.stderr is None:
            stderr = subprocess.PIPE  # kept for the error, then passed on to ours
        else:
            stderr = action.stderr
        try:
            done = subprocess.run(action.full_cmd, cwd=run_dir, stdout=stdout, stderr=stderr)
        except OSError as exc:
            raise RunFailed(previous["run_id"], run_dir, None, "",
                            "the model %r could not start: %s" % (action.full_cmd, exc)) \
                from None
    finally:
        for handle in handles:
            handle.close()
    action.ret = done.returncode
    text = ""
    if done.stderr is not None:
        text = done.stderr.decode("utf-8", "replace")
        sys.stderr.write(text)
        sys.stderr.flush()
    elif stderr_path is not None:
        text = tail(stderr_path)
    if done.returncode != 0:
        raise RunFailed(previous["run_id"], run_dir, done.returncode, text[-STDERR_TAIL:],
                        "the model %r exited with code %d" % (" ".join(action.full_cmd),
                                                              done.returncode))


def run_actions(actions, previous: Dict[str, Any], first: int = 0,
                stop: Optional[int] = None) -> Dict[str, Any]:
    """``actions.start(previous)`` for ``actions.actions[first:stop]`` (all by default).

    ``ExecuteLocal`` steps run through ``execute_local`` (a non-zero exit code fails the
    run; EasyVVUQ itself would go on and decode stale or missing output).

    Raises:
        RunFailed: any step failed; it names the run, its directory and the cause.
    """
    previous = copy.copy(previous)
    run_id = previous.get("run_id")
    default = _default_wrapper(actions)
    for action in actions.actions[first:stop]:
        try:
            if default and _is_execute_local(action):
                execute_local(action, previous)
            else:
                previous = actions.wrapper(action, previous)
        except RunFailed:
            raise
        except Exception as exc:
            raise RunFailed(run_id, previous.get("rundir", ""), None, "",
                            "%s raised %s: %s" % (type(action).__name__, type(exc).__name__,
                                                  exc)) from exc
    return previous


def finish_split(actions, previous: Dict[str, Any], command: Any, first: int,
                 stdout: Optional[str], stderr: Optional[str]) -> Dict[str, Any]:
    """The actions after the model of a split chain (see chain.py); the model's outputs
    (``command``: its CommandResult) renamed first as ExecuteLocal names them."""
    for path, name in ((command.stdout, stdout), (command.stderr, stderr)):
        if isinstance(name, str):
            rename_output(path, os.path.join(previous["rundir"], name))
    return run_actions(actions, previous, first)


def rename_output(path: str, target: str) -> None:
    """Give the model's output file ExecuteLocal's name. The job's default output exists
    only if the model wrote to it (runtime/launch/streams.py); ExecuteLocal's file exists
    even when empty (it opens it before the run), so a missing one becomes an empty one."""
    try:
        os.replace(path, target)
    except FileNotFoundError:
        if os.path.isdir(os.path.dirname(path)):
            open(target, "ab").close()


def warmed(_first: Any) -> bool:
    """Runs after ``warm_up``: by then the warm worker has learnt easyvvuq's imports."""
    return True


def warm_up() -> bool:
    """A task body that imports easyvvuq, so that the warm worker learns it."""
    import easyvvuq  # noqa: F401 - the import is the point
    return True
