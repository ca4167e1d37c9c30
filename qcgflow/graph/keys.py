"""Content keys of graph nodes: what a task computes, as a hash, for resume and caching.

::

    Python task  key = H(function digest, options, arguments)     refs in the arguments are
    command task key = H(execution (template filled), options,     replaced by the keys of
                         after-refs)                               their producers, so a
    mapped task  one key per iteration: H(the node's parts,        changed upstream task
                 element i) (a command's also holds i, ${it});     changes every key below it
                 element-wise maps use the producer's key of i;
                 the node's own key is H(all iteration keys)

A **function digest** covers the function's source text (``inspect.getsource``) AND its code
object (bytecode, names, constants: what actually runs, also when the source is not
available or was edited on disk after import), its defaults, the values in its closure,
and the functions it reaches through its globals when they are user code (files outside
the Python installation and its site-packages, ``<stdin>``, ``__main__``), followed
transitively; module-level constants it names (numbers, strings, tuples of them) are part
of it too. NOT seen: library code, classes, objects reached through modules
(``helpers.f`` after ``import helpers``), files a task reads. A task whose result depends
on those should be marked ``cache=False``.

**Arguments** are encoded canonically (numbers, strings, bytes, None, lists, tuples, dicts
in their order, sets sorted), functions by their digest, anything else by the hash of its
cloudpickle bytes. Keys are the same in every process (string hashing is randomised per
process, so no ``hash()`` and no set order is used) for one Python minor version.

Options that do not change a result are left out: ``name``, ``retries``,
``retry_exceptions``, ``cache``, ``pure``, ``num_returns``. A node
that cannot be keyed (an argument that does not pickle, a producer without a key) has key
None: it is never reused and neither is anything below it.
"""

import hashlib
import inspect
import logging
import os
import site
import sys
import types
from typing import Any, Dict, Iterable, List, Optional

import cloudpickle

from qcgflow.graph.graph import COMMAND, AnyOutcome, TaskNode, TaskRef

_log = logging.getLogger(__name__)

VERSION = b"qcgflow-key-1\0%d.%d\0" % sys.version_info[:2]
IGNORED_OPTIONS = ("name", "retries", "retry_exceptions", "cache", "pure", "num_returns")
_SCALARS = (type(None), bool, int, float, str, bytes)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Uncacheable(Exception):
    """A value or a producer has no key: the node is never reused."""


def _hash(*parts: bytes) -> "hashlib._Hash":
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h


def _library_dirs() -> tuple:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs if d)


class NodeKeys:
    """The keys of one node: ``key`` (hex, None = not cacheable) and, for a mapped node,
    ``iterations`` (one hex key per iteration)."""

    __slots__ = ("key", "iterations")

    def __init__(self, key: Optional[str], iterations: Optional[List[str]] = None):
        self.key, self.iterations = key, iterations

    def __repr__(self) -> str:
        return "NodeKeys(%r, %s)" % (self.key, None if self.iterations is None
                                     else "%d iterations" % len(self.iterations))


class Keyer:
    """Computes and keeps the keys of nodes; add nodes predecessors first.

    Function digests are cached per function object for the keyer's lifetime (one run), so
    a graph of many calls of few functions reads each source once.
    """

    def __init__(self):
        self.keys: Dict[TaskNode, NodeKeys] = {}
        self._own: Dict[Any, bytes] = {}       # function -> digest of itself alone
        self._digests: Dict[Any, bytes] = {}   # function -> digest with what it reaches
        self._library = _library_dirs()

    # ------------------------------------------------------------------ nodes
    def add(self, nodes: Iterable[TaskNode], extra: Optional[Dict[TaskNode, Any]] = None
            ) -> None:
        """Key ``nodes`` (each after its predecessors); ``extra[node]`` is mixed into that
        node's key (e.g. the standard streams a workflow file sets on its job)."""
        for node in nodes:
            if node in self.keys:
                continue
            try:
                self.keys[node] = self._node(node, None if extra is None else extra.get(node))
            except Uncacheable as exc:
                _log.debug("%r has no key: %s", node, exc)
                self.keys[node] = NodeKeys(None)
            except Exception as exc:  # noqa: BLE001 - a user's value: never fail the run
                _log.debug("%r cannot be keyed: %s: %s", node, type(exc).__name__, exc)
                self.keys[node] = NodeKeys(None)

    def __getitem__(self, node: TaskNode) -> NodeKeys:
        return self.keys[node]

    def _node(self, node: TaskNode, extra: Any) -> NodeKeys:
        if node.options.get("cache") is False:  # what uses its result must run too
            raise Uncacheable("cache=False")
        out: List[bytes] = [VERSION, node.kind.encode()]
        if node.kind == COMMAND:
            self._enc(node.execution, out)
            self._enc(list(node.after), out)
            if node.kwargs:  # placeholders filled from results (old keys unchanged)
                self._enc(node.kwargs, out)
        else:
            out.append(b"F" + self.function_digest(node.fn))
            self._enc(node.args, out)
            self._enc(node.kwargs, out)
        self._enc(sorted((k, v) for k, v in node.options.items()
                         if k not in IGNORED_OPTIONS), out)
        if extra is not None:
            self._enc(extra, out)
        if node.mapped is None:
            return NodeKeys(_hash(*out).hexdigest())
        base = _hash(*out)
        how, what = node.mapped
        iterations = []
        if how == "element":
            producer = self._producer(what)
            if producer.iterations is None:
                raise Uncacheable("the mapped producer has no iteration keys")
            for key in producer.iterations:
                h = base.copy()
                h.update(b"E" + key.encode())
                iterations.append(h.hexdigest())
        else:
            command = node.kind == COMMAND
            for index, value in enumerate(what):
                h = base.copy()
                part: List[bytes] = [b"I%d;" % index] if command else []
                self._enc(value, part)
                h.update(b"".join(part))
                iterations.append(h.hexdigest())
        whole = _hash(b"M", *(key.encode() for key in iterations))
        return NodeKeys(whole.hexdigest(), iterations)

    def _producer(self, ref: TaskRef) -> NodeKeys:
        keys = self.keys.get(ref.node)
        if keys is None or keys.key is None:
            raise Uncacheable("a producer (%s) has no key" % ref.node.base)
        return keys

    # ------------------------------------------------------------------ values
    def _enc(self, obj: Any, out: List[bytes]) -> None:
        """Append the canonical encoding of ``obj`` to ``out``."""
        kind = type(obj)
        if kind is str:
            data = obj.encode("utf-8", "surrogatepass")
            out.append(b"s%d:" % len(data))
            out.append(data)
        elif kind is int:
            out.append(b"i%d;" % obj)
        elif kind is float:
            out.append(b"f%s;" % repr(obj).encode())
        elif obj is None:
            out.append(b"N")
        elif kind is bool:
            out.append(b"T" if obj else b"F")
        elif kind is bytes:
            out.append(b"b%d:" % len(obj))
            out.append(obj)
        elif kind is list or kind is tuple:
            out.append(b"%s%d[" % (b"l" if kind is list else b"t", len(obj)))
            for item in obj:
                self._enc(item, out)
        elif kind is dict:
            out.append(b"d%d{" % len(obj))
            for key, value in obj.items():
                self._enc(key, out)
                self._enc(value, out)
        elif kind is set or kind is frozenset:
            items = []
            for item in obj:
                part: List[bytes] = []
                self._enc(item, part)
                items.append(b"".join(part))
            out.append(b"S%d{" % len(items))
            for item in sorted(items):
                out.append(b"%d:" % len(item))
                out.append(item)
        elif kind is TaskRef:
            out.append(b"R" + self._producer(obj).key.encode())
        elif kind is AnyOutcome:
            out.append(b"A" + self._producer(obj.ref).key.encode())
        elif kind is types.FunctionType:
            out.append(b"F" + self.function_digest(obj))
        elif hasattr(obj, "task_options") and hasattr(obj, "fn") and not isinstance(obj, type):
            out.append(b"Q" + self.function_digest(obj.fn))  # a TaskFunction as a value
            self._enc(sorted(obj.task_options.items()), out)
        else:
            try:
                data = cloudpickle.dumps(obj, protocol=5)
            except Exception as exc:  # noqa: BLE001 - whatever the object raises
                raise Uncacheable("%s does not pickle: %s" % (kind.__name__, exc)) from None
            out.append(b"P" + _hash(data).digest())

    # ------------------------------------------------------------------ functions
    def function_digest(self, fn: Any) -> bytes:
        """The digest of ``fn`` and of the user functions it reaches through its globals."""
        digest = self._digests.get(fn)
        if digest is not None:
            return digest
        if type(fn) is not types.FunctionType:
            if hasattr(fn, "task_options") and hasattr(fn, "fn"):
                digest = self.function_digest(fn.fn)
            else:  # a builtin, a partial, a callable object: by its pickled bytes
                part: List[bytes] = []
                self._enc(fn, part)
                digest = _hash(b"C", *part).digest()
            self._digests[fn] = digest
            return digest
        reached: Dict[str, bytes] = {}
        todo = [fn]
        seen = {fn}
        while todo:
            current = todo.pop()
            own, helpers = self._own_digest(current)
            reached["%s.%s@%s" % (current.__module__, current.__qualname__,
                                  current.__code__.co_firstlineno)] = own
            for helper in helpers:
                if helper not in seen:
                    seen.add(helper)
                    todo.append(helper)
        parts = [b"%s=%s;" % (name.encode(), value.hex().encode())
                 for name, value in sorted(reached.items())]
        digest = _hash(*parts).digest()
        self._digests[fn] = digest
        return digest

    def _own_digest(self, fn: types.FunctionType):
        """(digest of fn alone, the user functions its global names refer to)."""
        cached = self._own.get(fn)
        if cached is not None:
            return cached
        out: List[bytes] = [("%s\0%s\0" % (fn.__module__, fn.__qualname__)).encode()]
        try:
            self._enc(inspect.getsource(fn), out)
        except (OSError, TypeError):
            out.append(b"no-source")
        code = fn.__code__
        self._code(code, out)
        self._enc(fn.__defaults__, out)
        self._enc(fn.__kwdefaults__, out)
        for cell in fn.__closure__ or ():
            try:
                value = _unwrap(cell.cell_contents)
            except ValueError:  # an empty cell: a name bound later
                out.append(b"empty")
                continue
            if type(value) is types.FunctionType and self._is_user(value):
                value = value.__qualname__  # followed below: no infinite recursion
            self._enc(value, out)
        helpers = []
        names = set()
        _global_names(code, names)
        for name in sorted(names):
            value = _unwrap(fn.__globals__.get(name, _MISSING))
            if type(value) is types.FunctionType:
                if self._is_user(value):
                    helpers.append(value)
                    out.append(b"G%s" % name.encode())
            elif type(value) in _SCALARS or (type(value) is tuple and
                                             all(type(v) in _SCALARS for v in value)):
                out.append(b"V%s=" % name.encode())
                self._enc(value, out)
        for cell in fn.__closure__ or ():
            try:
                value = _unwrap(cell.cell_contents)
            except ValueError:
                continue
            if type(value) is types.FunctionType and self._is_user(value):
                helpers.append(value)
        result = (_hash(*out).digest(), helpers)
        self._own[fn] = result
        return result

    def _code(self, code: types.CodeType, out: List[bytes]) -> None:
        out.append(b"c%d:" % len(code.co_code))
        out.append(code.co_code)
        self._enc(code.co_names, out)
        for const in code.co_consts:
            if type(const) is types.CodeType:
                self._code(const, out)
            else:
                self._enc(const, out)

    def _is_user(self, fn: types.FunctionType) -> bool:
        """Code of the user's own files (not the Python installation, not qcgflow)."""
        filename = fn.__code__.co_filename
        if filename.startswith("<"):
            return True
        path = os.path.abspath(filename)
        return not path.startswith(self._library) and not path.startswith(_PACKAGE_DIR) \
            and "site-packages" not in path and "dist-packages" not in path


_MISSING = object()


def _unwrap(value: Any) -> Any:
    """The function of a TaskFunction (``@qcgflow.task``), else ``value``."""
    if hasattr(value, "task_options") and hasattr(value, "fn") and not isinstance(value, type):
        return value.fn
    return value


def _global_names(code: types.CodeType, names: set) -> None:
    names.update(code.co_names)
    for const in code.co_consts:
        if type(const) is types.CodeType:
            _global_names(const, names)


def graph_keys(nodes: Iterable[TaskNode], extra: Optional[Dict[TaskNode, Any]] = None
               ) -> Dict[TaskNode, NodeKeys]:
    """The keys of ``nodes`` (a graph's ``order``: predecessors first)."""
    keyer = Keyer()
    keyer.add(nodes, extra)
    return keyer.keys
