"""The lazy task graph: ``TaskNode`` (what to run), ``TaskRef`` (a handle), ``Graph``.

A ref is made by ``f.bind(...)`` / ``f.map(...)`` (qcgflow.task) or a command template's
``.bind`` / ``.map`` (qcgflow.graph.commands). Its node holds the callable or command, the
arguments (refs anywhere in nested lists, tuples, dicts and sets are dependencies), the
validated options and how it is mapped. ``Graph.build(target)`` collects every node the
target needs, in a deterministic topological order, names them (``name`` option, else
``<function>-<n>``), and rejects cycles and name clashes.

The graph is kept in plain dicts: importing networkx costs ~0.25 s, half the budget of a
cold ``qcgflow.run``; ``Graph.dag`` builds the ``networkx.DiGraph`` on demand.
"""

import itertools
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from qcgflow.errors import CycleError, GraphError, NameClashError
from qcgflow.graph import port

CONTAINERS = (list, tuple, dict, set, frozenset)  # exact types searched for refs

PYTHON = "python"
COMMAND = "command"

_counter = itertools.count()
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class TaskNode:
    """One task of the graph (a job; a mapped task is one iterative job).

    Attributes:
        kind: ``"python"`` or ``"command"``.
        fn: the Python callable (python tasks).
        execution: the command part of a job description (command tasks), placeholders
            filled, runtime variables (``${it}``, ``${ncores}``...) left in.
        args, kwargs: the bound arguments of a Python task (refs inside are dependencies);
            a command task's kwargs: placeholder -> ref, filled when it starts (qcgflow.fill).
        mapped: None, ``("values", [elements])`` or ``("element", ref)`` (element-wise).
        after: extra dependencies (refs), for command tasks.
        options: validated options (qcgflow.graph.options).
        base: the default job name stem.
    """

    __slots__ = ("kind", "fn", "execution", "args", "kwargs", "mapped", "after", "options",
                 "base", "seq", "future")

    def __init__(self, kind: str, *, base: str, options: Dict[str, Any], fn=None,
                 execution: Optional[Dict[str, Any]] = None, args: Tuple = (),
                 kwargs: Optional[Dict[str, Any]] = None, mapped=None,
                 after: Sequence["TaskRef"] = ()):
        self.kind = kind
        self.fn = fn
        self.execution = execution
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.mapped = mapped
        self.after = tuple(after)
        self.options = options
        self.base = _NAME_UNSAFE.sub("_", base).strip("_") or "task"
        self.seq = next(_counter)
        self.future = None  # the Future of its latest submission (``.remote`` / a session)

    @property
    def iterations(self) -> Optional[int]:
        """The number of iterations of a mapped task (None for a plain one)."""
        if self.mapped is None:
            return None
        how, what = self.mapped
        return len(what) if how == "values" else what.node.iterations

    def dependencies(self) -> Iterator[Tuple["TaskRef", bool]]:
        """(ref, element-wise) for every ref this node waits for, in argument order."""
        if self.mapped is not None:
            how, what = self.mapped
            if how == "element":
                yield what, True
            else:
                for ref in find_refs(what):
                    yield ref, False
        for ref in find_refs((self.args, self.kwargs, self.after)):
            yield ref, False

    def __repr__(self) -> str:
        return "<TaskNode %s %s>" % (self.kind, self.base)


class TaskRef:
    """A handle on a task of a lazy graph: pass it as an argument of another task to
    depend on its result, or give it (alone, in a list or in a dict) to ``compile`` / ``run``.
    """

    __slots__ = ("node",)

    def __init__(self, node: TaskNode):
        self.node = node

    @property
    def mapped(self) -> bool:
        """True for the ref of a mapped task (one iterative job)."""
        return self.node.mapped is not None

    @property
    def future(self):
        """The ``concurrent.futures.Future`` of this task's result, once submitted
        (``f.remote(...)``); its exception is the task's error (see ``qcgflow.get``).

        Raises:
            RuntimeError: the ref was made by ``bind`` / ``map`` and never submitted.
        """
        future = self.node.future
        if future is None:
            raise RuntimeError("%r was not submitted: use f.remote(...) for a result now, or "
                               "pass the ref to qcgflow.run" % self)
        return future

    def result(self, timeout=None):
        """The task's result, waiting up to ``timeout`` seconds (None: no limit).

        Raises:
            GetTimeoutError: not finished in time (also a TimeoutError).
            TaskFailed, DependencyFailed, RunError: as ``qcgflow.get``.
        """
        future = self.future
        blocking = port.installed("blocking")  # None: the session layer is not loaded
        try:
            if blocking is None or future.done():
                return future.result(timeout)
            with blocking([future]):  # inside a task: its cores are lent meanwhile
                return future.result(timeout)
        except TimeoutError:
            if future.done():  # the task's own TimeoutError
                raise
            from qcgflow.errors import GetTimeoutError
            raise GetTimeoutError("%r did not finish within %s s" % (self, timeout)) from None

    def __repr__(self) -> str:
        kind = "mapped " if self.mapped else ""
        return "<TaskRef %s%s #%d>" % (kind, self.node.base, self.node.seq)

    def __reduce__(self):
        """A submitted ref of a Python task travels (in a result, a ``put`` value, an
        object): it is unpickled as a ref on the same service's job, tracked by the
        receiving process's session (Ray's refs in results). A lazy ref cannot."""
        future = self.node.future
        session = getattr(future, "session", None)
        task = session.tasks.get(self.node) if session is not None else None
        if task is None or self.node.kind != PYTHON:
            raise TypeError("%r cannot be pickled: only the ref of a submitted Python task "
                            "(f.remote, qcgflow.put) travels; pass a lazy ref as an argument "
                            "of a task, the task then receives its result" % self)
        stored = task.node.fn is None and task.node.base == "put"
        travelling = getattr(session, "travelling", None)  # a call in a bundle of calls
        ended, watch = travelling(task) if travelling is not None else (False, None)
        if watch is not None:
            return (_travelled, (task.name, self.node.iterations, False, session.root, watch))
        return (_travelled, (task.name, self.node.iterations, stored or ended, session.root))


def _travelled(name: str, iterations, stored: bool, root: str,
               watch: Optional[str] = None) -> "TaskRef":
    """A ref unpickled in this process: the current session adopts the job ``name`` (in a
    task: the session it attaches to; never a new service); ``stored``: its result is in
    place, no job to follow; ``watch``: the job that runs it when not its own (a bundle).
    The name is in pickles: keep it."""
    return port.adopt(name, iterations, stored, root, watch)


_LEAVE = object()  # find_refs' stack marker: the container below it is finished


class AnyOutcome:
    """``qcgflow.any_outcome(ref)``: an argument that waits for ``ref`` to end in ANY state
    (the runtime's ``afterAny``) and stands for its outcome: the value, or the
    ``TaskFailed`` it ended with; for a mapped ref a list with one of those per iteration.
    Only as an argument of a Python task (where its value is made)."""

    __slots__ = ("ref",)

    def __init__(self, ref: TaskRef):
        self.ref = ref

    def __repr__(self) -> str:
        return "any_outcome(%r)" % (self.ref,)

    def __reduce__(self):
        raise TypeError("any_outcome(...) cannot be pickled: pass it as an argument of a "
                        "task, the task then receives the outcomes")


def any_outcome(ref: TaskRef) -> AnyOutcome:
    """Wrap ``ref`` so that a task given it runs even when ``ref`` (or some of its
    iterations) failed, and receives the results AND the failures (as ``TaskFailed``
    objects in place of values, like ``asyncio.gather(..., return_exceptions=True)``).

    Raises:
        GraphError: ``ref`` is not the ref of a Python task.
    """
    if type(ref) is not TaskRef:
        raise GraphError("any_outcome takes a task ref (f.bind(...), f.map(...), "
                         "f.remote(...)), got %s" % type(ref).__name__)
    if ref.node.kind != PYTHON:
        raise GraphError("any_outcome takes the ref of a Python task (@qcgflow.task): the "
                         "outcome of a command task is not known to the task that reads it "
                         "(use after_any in a workflow file, or wrap the command in a "
                         "Python task)")
    return AnyOutcome(ref)


def any_outcome_preds(node: "TaskNode") -> set:
    """The predecessors ``node`` reaches ONLY through ``any_outcome``: its ``afterAny``
    edges. A predecessor also passed plainly (or mapped over, or in ``after``) is strict."""
    loose, strict = set(), set()
    stack = [(node.args, node.kwargs)]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is AnyOutcome:
            loose.add(item.ref.node)
        elif kind is TaskRef:
            strict.add(item.node)
        elif kind is dict:
            stack.extend(item.values())
        elif kind in CONTAINERS:
            stack.extend(item)
    if not loose:
        return loose
    if node.mapped is not None:  # mapped over: always strict
        how, what = node.mapped
        strict.update(ref.node for ref in ([what] if how == "element" else find_refs(what)))
    strict.update(ref.node for ref in find_refs(node.after))
    return loose - strict


def find_refs(obj: Any) -> Iterator[TaskRef]:
    """Every TaskRef in ``obj``, also inside (nested) lists, tuples, dicts and sets; in order
    (the ref inside an ``any_outcome`` too).

    Raises:
        GraphError: a container contains itself (``a = [f.bind()]; a.append(a)``): such a
            value has no end to walk (nor to compile, hash or send), so it is refused.
    """
    stack = [obj]
    path: set = set()  # ids of the containers being walked (a cycle returns to one)
    while stack:
        item = stack.pop()
        if item is _LEAVE:
            path.discard(id(stack.pop()))
            continue
        kind = type(item)
        if kind is TaskRef:
            yield item
        elif kind is AnyOutcome:
            yield item.ref
        elif kind is dict or kind in CONTAINERS:
            if id(item) in path:
                raise GraphError("a %s in the target or in a task's arguments contains itself (a "
                                 "cyclic structure): it cannot be walked" % kind.__name__)
            path.add(id(item))
            stack.append(item)
            stack.append(_LEAVE)
            stack.extend(reversed(list(item.values() if kind is dict else item)))


def target_refs(target: Any) -> List[TaskRef]:
    """The refs of a target: a ref, or a list / tuple / dict of refs (nesting allowed)."""
    refs = list(find_refs(target))
    if not refs:
        raise GraphError("nothing to run: the target holds no task ref (got %s); pass "
                         "f.bind(...), a list or a dict of refs" % type(target).__name__)
    stack = [target]
    while stack:  # any_outcome gives a task its inputs' failures; a target's are raised
        item = stack.pop()
        kind = type(item)
        if kind is AnyOutcome:
            raise GraphError("any_outcome(...) is for the arguments of a task, not a target: "
                             "run a task that takes it (it receives values and failures)")
        if kind is dict:
            stack.extend(item.values())
        elif kind in CONTAINERS:
            stack.extend(item)
    return refs


class Graph:
    """The nodes a target needs: ``order`` (topological, deterministic), ``names``,
    ``edges`` (node -> [(predecessor, element-wise)]) and the target's refs."""

    def __init__(self, target: Any):
        self.target = target
        self.targets = target_refs(target)
        self.order: List[TaskNode] = []
        self.edges: Dict[TaskNode, List[Tuple[TaskNode, bool]]] = {}
        self._visit(self.targets)
        self.names: Dict[TaskNode, str] = self._name_all()

    @classmethod
    def build(cls, target: Any) -> "Graph":
        """The graph of ``target``. Raises CycleError, NameClashError, GraphError."""
        return cls(target)

    def _visit(self, roots: Sequence[TaskRef]) -> None:
        """Iterative depth-first post-order: predecessors before dependants, in argument order."""
        state: Dict[TaskNode, int] = {}  # 1 = on the path, 2 = done
        for root in roots:
            if state.get(root.node) == 2:
                continue
            stack = [(root.node, None)]
            while stack:
                node, deps = stack[-1]
                if deps is None:
                    state[node] = 1
                    deps = [(ref.node, element) for ref, element in node.dependencies()]
                    self.edges[node] = deps
                    deps = iter(deps)
                    stack[-1] = (node, deps)
                for pred, _ in deps:
                    mark = state.get(pred)
                    if mark == 1:
                        raise CycleError(self._cycle(stack, pred))
                    if mark is None:
                        stack.append((pred, None))
                        break
                else:
                    stack.pop()
                    state[node] = 2
                    self.order.append(node)

    @staticmethod
    def _cycle(stack, pred: TaskNode) -> List[str]:
        path = [node for node, _ in stack]  # each waits for the next: list in run order
        return [node.base for node in reversed(path[path.index(pred):])]

    def _name_all(self) -> Dict[TaskNode, str]:
        names: Dict[TaskNode, str] = {}
        taken = set()
        for node in self.order:
            explicit = node.options.get("name")
            if explicit is not None:
                if explicit in taken:
                    raise NameClashError(explicit)
                taken.add(explicit)
                names[node] = explicit
        counters: Dict[str, int] = {}
        for node in self.order:
            if node in names:
                continue
            number = counters.get(node.base, 0)
            while "%s-%d" % (node.base, number) in taken:
                number += 1
            counters[node.base] = number + 1
            names[node] = "%s-%d" % (node.base, number)
            taken.add(names[node])
        return names

    def name(self, ref_or_node) -> str:
        node = ref_or_node.node if type(ref_or_node) is TaskRef else ref_or_node
        return self.names[node]

    def __len__(self) -> int:
        return len(self.order)

    @property
    def dag(self):
        """The graph as a ``networkx.DiGraph`` of job names (edge attribute ``element``)."""
        import networkx
        dag = networkx.DiGraph()
        dag.add_nodes_from(self.names[n] for n in self.order)
        dag.add_edges_from((self.names[p], self.names[n], {"element": e})
                           for n in self.order for p, e in self.edges[n])
        return dag
