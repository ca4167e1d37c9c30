"""``@qcgflow.task``: Python functions as tasks of a lazy graph.

::

    @qcgflow.task                      # or @qcgflow.task(cores=2, wt="10m", ...)
    def f(x): ...

    a = f.bind(1)                      # TaskRef: f(1), not run yet
    r = f.remote(1)                    # submitted now (qcgflow.init): r.result(), r.future
    m = f.map(range(10))               # one iterative job, one iteration per element
    g.map(m)                           # element-wise: iteration i of g waits for f's i
    h.bind(m)                          # fan-in: h gets the list of all of f's results
    f.options(cores=4).bind(2)         # a variant with other options

Options are checked when decorating (``TaskOptionError`` says the fix). Calling ``f(x)``
directly runs the plain function in this process.
"""

import functools
import itertools
import types
from typing import Any, Callable, Dict, Iterable

from qcgflow.graph import options as _options
from qcgflow.graph import port
from qcgflow.errors import GraphError
from qcgflow.graph.graph import PYTHON, TaskNode, TaskRef, find_refs


# The elements of a .map() are kept here and pickled into its call file: past ten million
# that is gigabytes, so it is refused (the runtime itself would take 100 million iterations).
MAX_MAP = 10_000_000


class TaskFunction:
    """A Python function with task options; ``bind`` and ``map`` make graph nodes."""

    def __init__(self, fn: Callable, task_options: Dict[str, Any]):
        if not callable(fn):
            raise TypeError("@qcgflow.task decorates a function, got %r" % (fn,))
        self.fn = fn
        self.where = "task %s" % getattr(fn, "__qualname__", repr(fn))
        self.task_options = _options.validate(task_options, self.where)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        """Run the plain function here and now (refs are not allowed: use ``bind``)."""
        try:
            has_ref = next(find_refs((args, kwargs)), None) is not None
        except GraphError:  # a cyclic argument: fine for a plain call
            has_ref = False
        if has_ref:
            raise TypeError("%s was called with a task ref as an argument: use %s.bind(...) "
                            "to add it to a graph" % (self.where, self.fn.__name__))
        return self.fn(*args, **kwargs)

    def options(self, **task_options) -> "TaskFunction":
        """A variant with these options changed (None restores a default); self is unchanged."""
        variant = TaskFunction.__new__(TaskFunction)
        variant.__dict__.update(self.__dict__)
        variant.task_options = _options.validate(task_options, self.where, self.task_options)
        return variant

    def bind(self, *args, **kwargs) -> TaskRef:
        """A ref to ``fn(*args, **kwargs)``; refs in the arguments (also nested in lists,
        tuples, dicts, sets) are dependencies and are replaced by their results.
        With ``num_returns=n``: a tuple of n refs, ref i to item i of the result."""
        count = self.task_options.get("num_returns")
        if count is None:
            return TaskRef(self._node(args, kwargs, None))
        node = self._node(args, kwargs, None)
        node.fn = functools.partial(returns_items, self.fn)  # a generator's items too
        ref = TaskRef(node)
        return tuple(TaskRef(TaskNode(PYTHON, base="%s.%d" % (ref.node.base, i),
                                      fn=take_part, args=(ref, i, count), options={}))
                     for i in range(count))

    def remote(self, *args, **kwargs) -> TaskRef:
        """Submit ``fn(*args, **kwargs)`` now to the current session (``qcgflow.init``; an
        implicit local one when there is none) and return its ref: ``ref.result()``,
        ``ref.future``, ``qcgflow.get(ref)``. Refs of earlier ``.remote`` calls in the
        arguments are dependencies and are replaced by their results.
        With ``num_returns=n``: a tuple of n refs (one job; the session splits its
        result, each ref a dependency of its own)."""
        return port.submit(self.bind(*args, **kwargs))

    def map(self, iterable: Iterable, *args, **kwargs) -> TaskRef:
        """One iterative job: iteration i runs ``fn(element_i, *args, **kwargs)``.

        ``iterable`` may be a mapped ref: then iteration i waits only for iteration i of
        that task and gets its result (element-wise). The result of a mapped ref is the
        list of the iterations' results.

        Raises:
            GraphError: an empty iterable, or a plain (not mapped) ref to map over.
        """
        if self.task_options.get("num_returns") is not None:
            raise GraphError("%s: num_returns is for .bind / .remote, not .map (a mapped "
                             "task's result is the list of its elements' results)" % self.where)
        return TaskRef(self._node(args, kwargs, mapping(iterable, self.where)))

    def _node(self, args, kwargs, mapped) -> TaskNode:
        return TaskNode(PYTHON, base=getattr(self.fn, "__name__", "task"), fn=self.fn,
                        args=args, kwargs=kwargs, mapped=mapped, options=self.task_options)

    def __repr__(self) -> str:
        return "<qcgflow %s>" % self.where


def returns_items(fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, a generator's items as a tuple (a ``num_returns`` task:
    Ray takes a generator's items as the returned values; a generator does not pickle)."""
    value = fn(*args, **kwargs)
    if isinstance(value, types.GeneratorType):
        value = tuple(value)
    return value


def take_part(value: Any, index: int, count: int) -> Any:
    """Item ``index`` of a task's result with ``num_returns=count`` (the session runs this
    itself when the task succeeded; compiled for ``run``, it is a small task)."""
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or len(items) != count:
        raise ValueError("the task has num_returns=%d but returned %s" % (
            count, "%d values" % len(items) if items is not None
            else "a %s" % type(value).__name__))
    return items[index]


def mapping(iterable: Any, where: str):
    """The ``mapped`` field of a node for ``.map(iterable)``."""
    if type(iterable) is TaskRef:
        if not iterable.mapped:
            raise GraphError("%s: .map() over a ref of a task that is not mapped: its result "
                             "has no known length when the graph is built; map over a list "
                             "or over the ref of another .map()" % where)
        return ("element", iterable)
    if isinstance(iterable, (str, bytes, dict)):
        raise GraphError("%s: .map() needs a list, tuple, range or generator of elements, got "
                         "%s" % (where, type(iterable).__name__))
    try:
        # at most one element past the limit is taken, so an endless generator ends too
        values = list(itertools.islice(iterable, MAX_MAP + 1))
    except TypeError:
        raise GraphError("%s: .map() needs a list, tuple, range or generator of elements, got "
                         "%s" % (where, type(iterable).__name__)) from None
    if len(values) > MAX_MAP:
        raise GraphError("%s: .map() over more than %d elements: split it into several "
                         "mapped tasks" % (where, MAX_MAP))
    if not values:
        raise GraphError("%s: .map() over an empty iterable: a mapped task needs at least one "
                         "element" % where)
    return ("values", values)


def task(fn: Callable = None, **task_options):
    """Make ``fn`` a task: ``@task`` or ``@task(cores=..., wt=..., ...)``.

    Raises:
        TaskOptionError: an unknown option or an invalid value (the message says the fix).
    """
    if fn is None:
        return lambda function: TaskFunction(function, task_options)
    if task_options:
        raise TypeError("use @qcgflow.task(option=...) without a function, or @qcgflow.task")
    return TaskFunction(fn, {})
