"""Graph -> standard QCG-PilotJob job descriptions (pure), and the files a run needs.

::

    Graph ──compile_graph (pure)──> [job description dicts]  (qcgflow.runtime.protocol format)
          ──write_calls (I/O)─────> <root>/.qcgflow/<job>/call.pkl for every Python task,
                                    fill.json for every command filled from results
    compile(target, path=FILE) = both, plus FILE = [submit, control finishAfterAllTasksDone]

A Python task becomes a plain job::

    exec: <python>  args: -m qcgflow.runner ${root_wd}/.qcgflow/<job>/call.pkl
                          ${root_wd}/.qcgflow/<job>/result.pkl        (result.${it}.pkl ${it})
    stdout/stderr: ${root_wd}/.qcgflow/<job>/stdout, stderr           (stdout.${it} ...)

A command task keeps its script or exec/args; its output goes to ``<job>.out`` /
``<job>.err`` (``<job>.${it}.out``) in its working directory.

These default stdout/stderr files are created only when the task writes to them: every
job says so in ``attributes.qcgflow.when_written`` (``["stdout", "stderr"]``), which
qcgflow's service honours (runtime/launch/streams.py) and upstream's ignores (it creates
them all, as before). A reader treats a missing default output as empty. One whose placeholders take
task results (``fill_refs``) runs the fill helper instead, which execs the command::

    exec: <python>  args: -m qcgflow.fill ${root_wd}/.qcgflow/<job>/fill.json ${it}
                          [${ncores} ... the runtime variables its template uses]
          (write_calls writes fill.json: the template and where the results are) Mapped tasks are iterative
jobs: Python ones ``{"start": 0, "stop": n}`` (elements in the call file), commands
``{"values": [...]}`` (``${itval}``); element-wise maps depend on ``<job>:${it}``.
"""

import json
import os
import pickle
import sys

import cloudpickle
from typing import Any, Dict, List, Optional

import qcgflow.fill as fill
import qcgflow.runtime.placeholders as _grammar  # THE ${...} grammar
from qcgflow.build import outputs
from qcgflow.build import payload
from qcgflow.graph import options as _options
from qcgflow.errors import GraphError
from qcgflow.graph.graph import (COMMAND, CONTAINERS, AnyOutcome, Graph, TaskNode, TaskRef,
                                 any_outcome_preds)

RUNNER = "qcgflow.runner"
WHEN_WRITTEN = ("stdout", "stderr")  # the streams whose default files exist only if written


def _run_path(name: str, leaf: str) -> str:
    return "${root_wd}/%s/%s/%s" % (payload.RUN_DIR, name, leaf)


def command_output(node: TaskNode, name: str) -> payload.CommandOutput:
    """Where a command task's outputs are (relative to the run's root)."""
    suffix = ".${it}" if node.mapped is not None else ""
    return payload.CommandOutput(node.options.get("wd", ""), "%s%s.out" % (name, suffix),
                                 "%s%s.err" % (name, suffix), node.iterations)


def _dependencies(graph: Graph, node: TaskNode) -> Dict[str, List[str]]:
    """``{"after": [...], "afterAny": [...]}`` (keys only when not empty); a predecessor
    reached only through ``any_outcome`` is an ``afterAny`` edge (qcgflow's extension)."""
    whole, element, loose = [], [], []
    any_preds = any_outcome_preds(node)
    for pred, per_iteration in graph.edges[node]:
        name = graph.names[pred]
        if pred in any_preds:
            loose.append(name)
        else:
            (element if per_iteration else whole).append(name)
    after = list(dict.fromkeys(whole))
    after += ["%s:${it}" % name for name in dict.fromkeys(element) if name not in whole]
    deps = {"after": after, "afterAny": list(dict.fromkeys(loose))}
    return {key: names for key, names in deps.items() if names}


def job_description(graph: Graph, node: TaskNode, python: str) -> Dict[str, Any]:
    """The job description of one node (see the module docstring)."""
    name = graph.names[node]
    execution, resources = _options.job_fields(node.options)
    mapped = node.mapped is not None
    suffix = ".${it}" if mapped else ""
    if node.kind == COMMAND:
        refs = fill_refs(node)
        execution.update(_fill_execution(node, name, python) if refs else
                         command_execution(node))
        output = command_output(node, name)
        execution["stdout"], execution["stderr"] = output.stdout, output.stderr
    else:
        args = ["-m", RUNNER, _run_path(name, payload.CALL_FILE),
                _run_path(name, "result%s.pkl" % suffix)]
        execution.update(exec=python, args=args + (["${it}"] if mapped else []),
                         stdout=_run_path(name, "stdout" + suffix),
                         stderr=_run_path(name, "stderr" + suffix))
    job: Dict[str, Any] = {"name": name, "execution": execution}
    if mapped:
        how, values = node.mapped
        if node.kind == COMMAND and how == "values" and \
                not all(str(v) == str(i) for i, v in enumerate(values)):
            job["iteration"] = {"values": [str(v) for v in values]}
        else:  # also values 0..n-1 (a range sweep): ${itval} of a range iteration is the
            # index on both services (docs/COMPAT), so the job stays O(1) in size instead
            # of n strings in the requests file, the service and the resume records
            job["iteration"] = {"start": 0, "stop": node.iterations}
    if resources:
        job["resources"] = resources
    dependencies = _dependencies(graph, node)
    if dependencies:
        job["dependencies"] = dependencies
    ours: Dict[str, Any] = {"when_written": list(WHEN_WRITTEN)}
    if node.options.get("retries"):
        ours["retries"] = node.options["retries"]
    job["attributes"] = {"qcgflow": ours}
    return job


def command_execution(node: TaskNode) -> Dict[str, Any]:
    """A command's ``script`` or ``exec``/``args``, wrapped when it declares ``outputs``
    (removed before it runs, checked after: qcgflow/build/outputs.py)."""
    execution = {key: value for key, value in node.execution.items()
                 if key not in ("script", "exec", "args")}
    execution.update(outputs.wrap(node.execution, node.options.get("outputs"),
                                  mapped=node.mapped is not None))
    return execution


def fill_refs(node: TaskNode) -> Dict[str, Any]:
    """A command task's placeholders filled from task results when it starts: the bound
    refs, and ``itval`` (the producer's element) in an element-wise map that uses it.
    Empty for a Python task and for a command without such placeholders."""
    if node.kind != COMMAND:
        return {}
    refs: Dict[str, Any] = dict(node.kwargs)
    if node.mapped is not None and node.mapped[0] == "element" and \
            "itval" in _template_placeholders(node):
        refs["itval"] = node.mapped[1]
    return refs


def _template_placeholders(node: TaskNode) -> set:
    execution = command_execution(node)
    texts = [execution.get("script") or execution.get("exec")]
    return set().union(*(_grammar.names(text) for text in texts + list(
        execution.get("args", ()))))


def _fill_variables(node: TaskNode) -> List[str]:
    used = _template_placeholders(node) - set(fill_refs(node))
    return [variable for variable in fill.RUNTIME_VARIABLES if variable in used]


def _fill_execution(node: TaskNode, name: str, python: str) -> Dict[str, Any]:
    """The job's command when placeholders take results: the fill helper, given the
    iteration and the runtime variables the template uses (see qcgflow/fill.py)."""
    args = ["-m", fill.MODULE, _run_path(name, fill.SPEC_FILE), "${it}"]
    return {"exec": python,
            "args": args + ["${%s}" % variable for variable in _fill_variables(node)]}


def fill_spec(graph: Graph, node: TaskNode) -> Dict[str, Any]:
    """The fill spec file's content of a command task with result placeholders."""
    refs = {}
    for key, ref in fill_refs(node).items():
        element = key == "itval" and ref is not node.kwargs.get(key)
        refs[key] = fill.ref_entry(graph.names[ref.node], placeholder(graph, ref, element))
    return fill.spec(graph.names[node], command_execution(node), refs, _fill_variables(node),
                     node.mapped is not None)


def compile_graph(graph: Graph, python: Optional[str] = None) -> List[Dict[str, Any]]:
    """Job descriptions for every node, predecessors first (pure: no files, no clock).

    ``python`` is the interpreter Python tasks run with (default: this one).
    """
    python = python or sys.executable
    return [job_description(graph, node, python) for node in graph.order]


# --------------------------------------------------------------------------- call files

def placeholder(graph: Graph, ref: TaskRef, element: bool = False):
    """What stands for ``ref``'s result in a call file."""
    node = ref.node
    name = graph.names[node]
    if node.kind == COMMAND:
        output = command_output(node, name)
        output.element = element
        return output
    return payload.ResultOf(name, node.iterations, element)


def _replace_refs(graph: Graph, obj: Any) -> Any:
    kind = type(obj)
    if kind is TaskRef:
        return placeholder(graph, obj)
    if kind is AnyOutcome:
        ref = obj.ref
        return payload.ResultOf(graph.names[ref.node], ref.node.iterations, outcomes=True)
    if kind is dict:
        return {key: _replace_refs(graph, value) for key, value in obj.items()}
    if kind in CONTAINERS:
        return kind(_replace_refs(graph, item) for item in obj)
    return obj


def write_calls(graph: Graph, root: str, inline: bool = False) -> Dict[TaskNode, str]:
    """Create ``<root>/.qcgflow/<job>/`` for every node and the call file of each Python
    task (arguments with refs replaced by placeholders of their results).

    ``inline``: a call whose pickle is small is not written; it is returned instead, as
    the runner's CALL argument (``payload.inline_call``) that replaces the call file's path
    in the job (qcgflow/session/fastpath.py). Returns those arguments by node."""
    base = os.path.join(root, payload.RUN_DIR)
    inlined: Dict[TaskNode, str] = {}
    for node in graph.order:
        name = graph.names[node]
        directory = os.path.join(base, name)
        if node.kind == COMMAND:
            os.makedirs(directory, exist_ok=True)
            if fill_refs(node):
                with open(os.path.join(directory, fill.SPEC_FILE), "w",
                          encoding="utf-8") as handle:
                    json.dump(fill_spec(graph, node), handle, indent=1)
            continue
        mapped = None
        if node.mapped is not None:
            how, what = node.mapped
            mapped = placeholder(graph, what, element=True) if how == "element" \
                else _replace_refs(graph, what)
        try:
            content = payload.call(node.fn, _replace_refs(graph, node.args),
                                   _replace_refs(graph, node.kwargs), mapped,
                                   outputs=node.options.get("outputs"))
            data = cloudpickle.dumps(content)
            argument = payload.inline_call(data) if inline else None
            if argument is None or node.mapped is not None:  # a map's streams are in it
                os.makedirs(directory, exist_ok=True)
            if argument is None:
                payload.write_atomic(os.path.join(directory, payload.CALL_FILE), data)
            else:  # a plain task: no directory either (its streams are beside it)
                inlined[node] = argument
        except (TypeError, AttributeError, pickle.PicklingError) as exc:
            raise GraphError("task %s: its function and arguments cannot be pickled for the "
                             "call file: %s" % (name, exc)) from None
    return inlined


def requests(jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A requests file's content: submit the jobs, then finish when all are done."""
    return [{"request": "submit", "jobs": jobs},
            {"request": "control", "command": "finishAfterAllTasksDone"}]


def compile(target: Any, path: Optional[str] = None,
            python: Optional[str] = None) -> List[Dict[str, Any]]:
    """The job descriptions of ``target`` (a ref, or a list / dict of refs).

    With ``path``, also write a requests file there (submit + finishAfterAllTasksDone) and
    the call files of the Python tasks under ``<dir of path>/.qcgflow/``: run it with
    ``qcgflow service --file-path PATH --wd <dir of path>`` (or upstream ``qcg-pm-service``,
    where qcgflow is importable by ``python``).

    Warns (``UserWarning``) when a written requests file uses ``afterAny``
    (``qcgflow.any_outcome``): upstream QCG-PilotJob refuses it.

    Raises:
        GraphError: no ref in target, a cycle, a name clash.
    """
    graph = Graph.build(target)
    jobs = compile_graph(graph, python)
    if path is not None:
        extension = [job["name"] for job in jobs if "afterAny" in job.get("dependencies", {})]
        if extension:
            import warnings
            warnings.warn("%s: %s use%s any_outcome (dependencies.afterAny, a qcgflow "
                          "extension): the requests file runs on 'qcgflow service', not on "
                          "upstream QCG-PilotJob" % (path, ", ".join(extension),
                                                     "s" if len(extension) == 1 else ""),
                          stacklevel=2)
        root = os.path.dirname(os.path.abspath(path))
        write_calls(graph, root)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(requests(jobs), handle, indent=2)
            handle.write("\n")
    return jobs
