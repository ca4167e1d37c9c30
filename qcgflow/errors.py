"""The exceptions of the graph API (``qcgflow.task``, ``compile``, ``run``).

::

    QcgflowError
     +-- TaskOptionError      an option of @task / .options() / shell / mpi is invalid
     |                        (also a ValueError); the message says the fix
     +-- GraphError           the graph cannot be compiled
     |    +-- CycleError          a dependency cycle (names it)
     |    +-- NameClashError      two tasks want the same job name
     +-- TaskError            a task did not succeed (``task``: its job name)
     |    +-- TaskFailed          it ran and failed: a Python task raised (``cause``,
     |    |                       ``remote_traceback``), or a command exited non-zero, was
     |    |                       killed or exceeded its wall time (``messages``);
     |    |                       ``as_instanceof_cause()`` is also an instance of the
     |    |                       task's own exception type, and is what ``run`` raises
     |    |    +-- TaskCancelled   canceled by ``qcgflow.cancel`` (also a
     |    |                        concurrent.futures.CancelledError)
     |    +-- DependencyFailed    never ran: ``root`` is the failed task it depended on
     +-- GetTimeoutError      get ran out of time (also a TimeoutError)
 +-- RunError             the run itself failed: service did not start, submit refused,
                              deadline passed (``reason``)

``qcgflow.run`` raises a task's failure as ``TaskFailed.as_instanceof_cause()``: an object
that is both a ``TaskFailed`` and an instance of the remote exception's class, so
``except ValueError`` catches a task's ``ValueError``; its text carries the remote traceback.
"""

from concurrent.futures import CancelledError
from typing import Dict, Optional, Tuple, Type


class QcgflowError(Exception):
    """Base of every exception of the graph API."""


class TaskOptionError(QcgflowError, ValueError):
    """An invalid task option. ``option`` is its name, ``value`` what was given, ``fix`` how
    to correct it; ``where`` names the task or template."""

    def __init__(self, option: str, value, fix: str, where: str = ""):
        self.option = option
        self.value = value
        self.fix = fix
        self.where = where
        prefix = "%s: " % where if where else ""
        super().__init__("%sinvalid option %s=%r: %s" % (prefix, option, value, fix))


class GraphError(QcgflowError):
    """The graph is not valid."""


class CycleError(GraphError):
    """A dependency cycle; ``cycle`` lists the job names along it."""

    def __init__(self, cycle):
        self.cycle = list(cycle)
        super().__init__("dependency cycle: %s" % " -> ".join(self.cycle + self.cycle[:1]))


class NameClashError(GraphError):
    """Two different tasks would get the same job name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__("two tasks are named %r: job names must be unique in a graph; give "
                         "one of them another name with .options(name=...)" % name)


class TaskError(QcgflowError):
    """A task did not succeed; ``task`` is its job name."""

    def __init__(self, message: str, task: str):
        super().__init__(message)
        self.task = task


class TaskFailed(TaskError):
    """A task ran and failed.

    Attributes:
        task: the job name (``name`` or ``name:it`` for one iteration).
        cause: the exception the Python function raised (None for command tasks or when
            the exception could not be transferred).
        cause_type: the name of the remote exception's class (``"ValueError"``).
        remote_traceback: the formatted traceback from the task's process ("" if none).
        messages: the runtime's reason (``exit code 1``, ``wall time limit ... exceeded``).
    """

    def __init__(self, task: str, cause: Optional[BaseException] = None,
                 remote_traceback: str = "", messages: str = "", cause_type: str = ""):
        self.cause = cause
        self.cause_type = cause_type or (type(cause).__name__ if cause is not None else "")
        self.remote_traceback = remote_traceback
        self.messages = messages
        super().__init__(self._text(task), task)

    def _text(self, task: str) -> str:
        if self.cause is not None or self.cause_type:
            head = "task %r raised %s: %s" % (task, self.cause_type,
                                              self.cause if self.cause is not None else "?")
        else:
            head = "task %r failed: %s" % (task, self.messages or "unknown reason")
        if self.remote_traceback:
            head += "\n\nremote traceback:\n%s" % self.remote_traceback.rstrip()
        return head

    def __str__(self) -> str:
        return self._text(self.task)

    def __reduce__(self):
        return (TaskFailed, (self.task, self.cause, self.remote_traceback, self.messages,
                             self.cause_type))

    def as_instanceof_cause(self) -> "TaskFailed":
        """This error as an instance of both TaskFailed and the cause's class.

        Returns ``self`` when there is no cause or the cause's class cannot be combined with
        TaskFailed (then ``except TaskFailed`` still works).
        """
        if self.cause is None or isinstance(self, type(self.cause)):
            return self
        derived = _derived_class(type(self.cause))
        if derived is None:
            return self
        try:
            error = derived.__new__(derived, *self.cause.args)
        except Exception:  # a class whose __new__ wants other arguments
            return self
        error.__dict__.update(self.__dict__)
        error.args = self.cause.args
        return error


_DERIVED: Dict[tuple, Optional[type]] = {}


def _derived_class(cause_class: Type[BaseException], base: Optional[type] = None):
    """``TaskFailed(ValueError)``: a subclass of both, made once per cause class (``base``:
    another error class, e.g. DependencyFailed)."""
    base = base or TaskFailed
    key = (base, cause_class)
    if key not in _DERIVED:
        try:
            _DERIVED[key] = type("%s(%s)" % (base.__name__, cause_class.__name__),
                                 (base, cause_class),
                                 {"__str__": base.__str__, "__init__": base.__init__,
                                  "__module__": __name__})
        except TypeError:  # layout conflict or final class
            _DERIVED[key] = None
    return _DERIVED[key]


class TaskCancelled(TaskFailed, CancelledError):
    """A task was canceled (``qcgflow.cancel``) before it ended: ``task`` names it (or
    ``name:it`` for one iteration); ``messages`` says how (``canceled by user``). Also a
    ``concurrent.futures.CancelledError``; Ray's name ``TaskCancelledError`` is an alias.
    Its dependants fail with ``DependencyFailed`` whose ``root_error`` is this."""

    def __init__(self, task: str, cause=None, remote_traceback: str = "",
                 messages: str = "canceled by user", cause_type: str = ""):
        super().__init__(task, None, "", messages, "")

    def _text(self, task: str) -> str:
        return "task %r was canceled: %s" % (task, self.messages)

    def __reduce__(self):
        return (TaskCancelled, (self.task, None, "", self.messages))


TaskCancelledError = TaskCancelled


class DependencyFailed(TaskError):
    """A task was not run because a task it depends on failed.

    Attributes:
        task: the job name of the task that did not run.
        root: the job name of the failed task at the root of the failure.
        root_error: that task's ``TaskFailed`` (None when unknown).
    """

    def __init__(self, task: str, root: str, root_error: Optional[TaskFailed] = None):
        self.root = root
        self.root_error = root_error
        reason = ""
        if root_error is not None:
            reason = " (%s)" % (("%s: %s" % (root_error.cause_type, root_error.cause))
                                if root_error.cause_type else root_error.messages)
        self.message = "task %r was not run: the task %r it depends on failed%s" % (
            task, root, reason)
        super().__init__(self.message, task)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (DependencyFailed, (self.task, self.root, self.root_error))

    def as_instanceof_cause(self) -> "DependencyFailed":
        """This error as an instance of both DependencyFailed and the class of the root
        task's exception (``except KeyError`` catches a dependant of a task that raised
        KeyError, as it catches that task's own failure); ``self`` when there is none."""
        cause = self.root_error.cause if self.root_error is not None else None
        if cause is None or isinstance(self, type(cause)):
            return self
        derived = _derived_class(type(cause), DependencyFailed)
        if derived is None:
            return self
        try:
            error = derived.__new__(derived, *cause.args)
        except Exception:  # a class whose __new__ wants other arguments
            return self
        error.__dict__.update(self.__dict__)
        error.args = (self.message,)
        return error


class GetTimeoutError(QcgflowError, TimeoutError):
    """``qcgflow.get`` / ``ref.result`` ran out of time (Ray's name; also a TimeoutError)."""


class RunError(QcgflowError):
    """The run could not be carried out (not a task failure); ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


__all__: Tuple[str, ...] = ("QcgflowError", "TaskOptionError", "GraphError", "CycleError",
                            "NameClashError", "TaskError", "TaskFailed", "DependencyFailed",
                            "RunError", "TaskCancelled", "TaskCancelledError",
                            "GetTimeoutError")
