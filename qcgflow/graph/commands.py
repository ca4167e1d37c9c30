"""Command tasks: ``qcgflow.shell`` (a bash script) and ``qcgflow.mpi`` (an MPI program).

::

    sim = qcgflow.shell("./sim --seed ${seed} > out_${it}.txt", cores=2)
    a = sim.bind(seed=7)                       # ${seed} filled now
    b = sim.map([1, 2, 3], seed=7)             # iterations: ${itval} is the element
    c = qcgflow.shell("cat out_*.txt").bind(after=[b])   # depends on b
    d = qcgflow.shell("./post --n ${n}").bind(n=count.bind())  # a task's result fills ${n}

    solver = qcgflow.mpi("./solver", args=["-n", "${n}"], cores=8, model="openmpi")

``${name}`` placeholders are filled from ``bind`` / ``map`` keywords (every keyword must
name a placeholder; ``$`` in values is escaped). Other placeholders are left to the runtime:
``${it}``, ``${itval}``, ``${ncores}``, ``${nnodes}``, ``${nlist}``, ``${root_wd}`` and the
shell's own variables. What a placeholder is: THE grammar of job descriptions
(``qcgflow/runtime/placeholders.py``, ``string.Template``'s as upstream's); ``${ x }`` with
spaces is refused when the template is made. ``after=[refs]`` adds dependencies. A keyword whose value is a ref
(``n=ref``) is a dependency whose result fills the placeholder when the task starts; so is
``${itval}`` in ``.map(mapped_ref)`` (iteration i: element i). The job then runs
``python -m qcgflow.fill`` which renders the results and execs the command (qcgflow/fill.py
says how values render and quote). A command task's result is a ``CommandResult``
(exit_code, wd, stdout, stderr).
"""

import os
from typing import Any, Dict, Iterable, Optional, Sequence

from qcgflow.graph import options as _options
from qcgflow.errors import GraphError, TaskOptionError
from qcgflow.graph.graph import COMMAND, TaskNode, TaskRef, find_refs
from qcgflow.graph.task import mapping
import qcgflow.runtime.placeholders as _grammar  # THE ${...} grammar (the job descriptions')


def placeholders(text: str) -> set:
    """The ``${name}`` / ``$name`` placeholders of ``text`` (``$$`` is a literal ``$``)."""
    return _grammar.names(text)


def fill(text: str, values: Dict[str, str]) -> str:
    """``text`` with the placeholders named in ``values`` replaced (others kept, ``$$``
    kept: the runtime's stages read it later)."""
    return _grammar.substitute(text, values, unescape=False)


def _refuse_spaced(texts: Sequence[str], option: str, where: str) -> None:
    """``${ x }`` is no placeholder (THE grammar): refused here rather than left to fail
    in bash, or to be silently not filled by ``bind(x=...)``."""
    for text in texts:
        for _, form, name in _grammar.spaced(text)[:1]:
            raise TaskOptionError(option, text, _grammar.spaced_message(form, name), where)


class CommandTemplate:
    """A command with ``${placeholders}`` and task options; ``bind`` / ``map`` make refs."""

    def __init__(self, execution: Dict[str, Any], base: str, task_options: Dict[str, Any],
                 where: str):
        self.execution = execution
        self.base = base
        self.where = where
        self.task_options = _options.validate(task_options, where)

    def _texts(self) -> Sequence[str]:
        return [self.execution.get("script") or self.execution.get("exec")] + \
            list(self.execution.get("args", ()))

    @property
    def placeholders(self) -> set:
        return set().union(*(placeholders(text) for text in self._texts()))

    def options(self, **task_options) -> "CommandTemplate":
        """A variant with these options changed (None restores a default)."""
        variant = CommandTemplate.__new__(CommandTemplate)
        variant.__dict__.update(self.__dict__)
        variant.task_options = _options.validate(task_options, self.where, self.task_options)
        return variant

    def bind(self, after: Sequence[TaskRef] = (), **values) -> TaskRef:
        """A ref to this command with ``values`` filled in; it runs after the ``after`` refs
        and after every ref among ``values``, whose result fills its placeholder.

        Raises:
            GraphError: a keyword names no placeholder, or a value holds a ref inside a
                container (give the ref itself).
        """
        return TaskRef(self._node(values, after, None))

    def map(self, iterable: Iterable, after: Sequence[TaskRef] = (), **values) -> TaskRef:
        """One iterative job, one iteration per element (``${itval}`` is the element,
        ``${it}`` its index); over a mapped ref, iteration i waits for that task's i and
        ``${itval}`` is its result."""
        mapped = mapping(iterable, self.where)
        if mapped[0] == "values":
            bad = [v for v in mapped[1] if isinstance(v, bool) or
                   not isinstance(v, (str, int, float))]
            if bad:
                raise GraphError("%s: .map() elements of a command must be strings or numbers "
                                 "(they become ${itval}), got %r" % (self.where, bad[0]))
        return TaskRef(self._node(values, after, mapped))

    def _node(self, values: Dict[str, Any], after, mapped) -> TaskNode:
        if type(after) is TaskRef:
            after = [after]
        wanted = self.placeholders
        filled, refs = {}, {}
        for key, value in values.items():
            if key not in wanted:
                raise GraphError("%s has no placeholder ${%s}; its placeholders are: %s"
                                 % (self.where, key, ", ".join(sorted(wanted)) or "none"))
            if type(value) is TaskRef:
                refs[key] = value  # filled when the task starts (qcgflow.fill)
                continue
            if next(find_refs(value), None) is not None:
                raise GraphError("%s: ${%s} holds a ref inside a %s; give the ref itself "
                                 "(${%s}=ref), a mapped ref fills it with the list of its "
                                 "results" % (self.where, key, type(value).__name__, key))
            # literal through both substitution stages of the runtime (or qcgflow.fill)
            filled[key] = _grammar.literal(str(value))
        execution = {key: (fill(value, filled) if isinstance(value, str) else
                           [fill(item, filled) for item in value])
                     for key, value in self.execution.items()}
        return TaskNode(COMMAND, base=self.base, execution=execution, mapped=mapped,
                        after=tuple(after), kwargs=refs, options=self.task_options)

    def __repr__(self) -> str:
        return "<qcgflow %s>" % self.where


def shell(template: str, **task_options) -> CommandTemplate:
    """A bash script template (run by ``/bin/bash -c``) with task options.

    Raises:
        TaskOptionError: an invalid option (the message says the fix).
    """
    if not isinstance(template, str) or not template.strip():
        raise TaskOptionError("template", template, "use a non-empty bash script text, e.g. "
                              "qcgflow.shell('echo ${x}')", "shell")
    _refuse_spaced([template], "template", "shell")
    return CommandTemplate({"script": template}, "shell", task_options, "shell %r" % (
        template if len(template) < 40 else template[:37] + "..."))


def mpi(exec: str, args: Sequence[Any] = (), cores: Any = None, model: str = "openmpi",
        model_opts: Optional[Dict[str, Any]] = None, **task_options) -> CommandTemplate:
    """An MPI program template: ``exec`` and ``args`` may hold placeholders; ``model`` is
    how it is started (openmpi, intelmpi, srunmpi, threads, default).

    Raises:
        TaskOptionError: an invalid option (the message says the fix).
    """
    if not isinstance(exec, str) or not exec:
        raise TaskOptionError("exec", exec, "use the program to start, e.g. "
                              "qcgflow.mpi('./solver', args=['-n', '${n}'])", "mpi")
    if isinstance(args, str) or not all(isinstance(a, (str, int, float)) for a in args):
        raise TaskOptionError("args", args, "use a list of strings or numbers, e.g. "
                              "args=['-n', '${n}']", "mpi %s" % exec)
    _refuse_spaced([exec], "exec", "mpi %s" % exec)
    _refuse_spaced([str(a) for a in args], "args", "mpi %s" % exec)
    task_options = dict(task_options, cores=cores, model=model, model_opts=model_opts)
    return CommandTemplate({"exec": exec, "args": [str(a) for a in args]},
                           os.path.basename(exec) or "mpi", task_options, "mpi %s" % exec)
