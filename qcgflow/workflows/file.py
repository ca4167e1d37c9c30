"""Workflow files: a YAML or JSON file -> the graph API -> standard job descriptions.

::

    wf.yaml / wf.json ──_load (lines of every key)──> plain data + a line map
        ──_Builder: checks the schema, options through qcgflow.graph.options (the SAME table as
          @task / shell), sweeps, dependencies in file order──> TaskRefs (shell / exec
          templates of qcgflow.graph.commands, Python tasks of qcgflow.task)
        ──compile_graph──> job descriptions ──_finish: per-iteration dependencies, stdin /
          stdout / stderr, the file's order──> Workflow.jobs

Every problem is a ``WorkflowFileError`` whose text names the file, the line and the path
inside the file: ``wf.yaml:14: tasks.simulate.cores: expected an integer or {min, max}``.
The reference is docs/workflow-files.md.
"""

import difflib
import importlib
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qcgflow.graph import options as _options
from qcgflow.workflows import placeholders as _placeholders
from qcgflow.graph.commands import CommandTemplate, placeholders
from qcgflow.build.compile import compile_graph, requests, write_calls
from qcgflow.errors import GraphError, TaskOptionError
from qcgflow.graph.graph import Graph
from qcgflow.graph.task import TaskFunction
from qcgflow.workflows.programs import beside, script_beside
from qcgflow.workflows.retries import model_problem, with_retries
from qcgflow.workflows.source import Path, Source, WorkflowFileError, dotted, load  # noqa: F401
from qcgflow.workflows.sweeps import IDENTIFIER, Sweep, fill, parse_sweep, prelude, scalar, word

TOP_KEYS = ("name", "defaults", "tasks")
KINDS = ("exec", "script", "python")
STREAMS = ("stdin", "stdout", "stderr")
OPTION_KEYS = tuple(k for k in _options.OPTIONS if k != "name")
TASK_KEYS = KINDS + ("args", "kwargs") + STREAMS + OPTION_KEYS + ("after", "after_any",
                                                                  "foreach")


# --------------------------------------------------------------------------- the builder

class Workflow:
    """A loaded workflow file: ``name``, ``graph``, ``refs`` (task name -> TaskRef) and the
    final job descriptions ``jobs`` (in the file's dependency order)."""

    def __init__(self, name: str, file: str, graph: Graph, refs: Dict[str, Any],
                 jobs: List[Dict[str, Any]]):
        self.name = name
        self.file = file
        self.graph = graph
        self.refs = refs
        self.jobs = jobs

    def requests(self, jobs: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
        """The requests-file content of ``jobs`` (default: all): submit them, finish when
        all are done; a job with ``retries`` gets its attempt loop here
        (qcgflow/workflows/retries.py), so that ``jobs`` keep the command as written."""
        return requests([with_retries(job) for job in (self.jobs if jobs is None else jobs)])

    def write(self, path: str) -> None:
        """Write the requests file ``path`` and the call files of Python tasks beside it
        (``<dir of path>/.qcgflow/``): run it with ``qcgflow service --file-path PATH
        --wd <dir of path>``."""
        write_calls(self.graph, os.path.dirname(os.path.abspath(path)))
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.requests(), handle, indent=2)
            handle.write("\n")


def _unknown(src: Source, path: Path, key: str, known: Sequence[str]) -> WorkflowFileError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = "did you mean %r? " % close[0] if close else ""
    return src.error(path + (key,), "unknown key; %sthe keys are: %s" % (hint, ", ".join(known)))


class _Builder:
    def __init__(self, data: Any, src: Source, base_dir: str, python: Optional[str]):
        self.python = python
        self.data = data
        self.src = src
        self.base_dir = base_dir
        self.defaults: Dict[str, Any] = {}
        self.after: Dict[str, List[Tuple[str, bool]]] = {}
        # after_any: released in any final state (compiled to the service's afterAny)
        self.after_any: Dict[str, List[Tuple[str, bool]]] = {}
        self.sweeps: Dict[str, Optional[Sweep]] = {}
        self.refs: Dict[str, Any] = {}

    def error(self, path: Path, problem: str) -> WorkflowFileError:
        return self.src.error(path, problem)

    def build(self) -> Workflow:
        data = self.data
        if not isinstance(data, dict):
            raise self.error((), "a workflow file is a mapping with 'tasks' (and optionally "
                                 "'name' and 'defaults'); a JSON list is a requests file: run "
                                 "it with 'qcgflow run' or 'qcgflow service --file-path'")
        for key in data:
            if key not in TOP_KEYS:
                raise _unknown(self.src, (), key, TOP_KEYS)
        name = data.get("name", os.path.splitext(os.path.basename(self.src.file))[0])
        if not isinstance(name, str) or not name.strip():
            raise self.error(("name",), "expected a non-empty string")
        self._defaults(data.get("defaults", {}))
        tasks = data.get("tasks")
        if not isinstance(tasks, dict) or not tasks:
            raise self.error(("tasks",) if "tasks" in data else (),
                             "expected 'tasks': a mapping of task names to tasks")
        for task, spec in tasks.items():
            self._check_task(task, spec)
        order = self._order(tasks)
        for task in order:
            self._sweep(task, tasks[task])
        tasks = {task: self._placeholders(task, tasks[task]) for task in order}
        for task in order:
            self.refs[task] = self._ref(task, tasks[task])
        graph = Graph.build([self.refs[t] for t in order])
        jobs = {job["name"]: job for job in compile_graph(graph, self.python)}
        final = [self._finish(task, tasks[task], jobs[task]) for task in order]
        return Workflow(name, self.src.file, graph, dict(self.refs), final)

    # ---- checks

    def _defaults(self, defaults: Any) -> None:
        if not isinstance(defaults, dict):
            raise self.error(("defaults",), "expected a mapping of options, e.g. "
                                            "{cores: 1, wt: 10m}")
        for key in defaults:
            if key not in OPTION_KEYS:
                raise _unknown(self.src, ("defaults",), key, OPTION_KEYS)
        try:
            _options.validate(defaults, "defaults")
        except TaskOptionError as exc:
            raise self._option_error(("defaults",), exc) from None
        # defaults serve every task: ${it} / ${itval} are accepted (a task without a sweep
        # then leaves them to the shell, as the runtime does)
        self.defaults = _placeholders.check_options(
            defaults, ("defaults",), list(_placeholders.SWEEP_ONLY) +
            list(_placeholders.ALWAYS), {}, self.base_dir, self.src.text_error)

    def _option_error(self, prefix: Path, exc: TaskOptionError) -> WorkflowFileError:
        return self.error(prefix + (exc.option,), "invalid value %s: %s"
                          % (json.dumps(exc.value, default=str), exc.fix))

    def _check_task(self, task: str, spec: Any) -> None:
        path = ("tasks", task)
        try:
            _options.validate({"name": task}, "task")
        except TaskOptionError as exc:
            raise self.error(path, "invalid task name: %s" % exc.fix) from None
        if not isinstance(spec, dict):
            raise self.error(path, "expected a mapping with one of exec, script or python")
        for key in spec:
            if key not in TASK_KEYS:
                raise _unknown(self.src, path, key, TASK_KEYS)
        kinds = [k for k in KINDS if k in spec]
        if len(kinds) != 1:
            raise self.error(path, "a task needs exactly one of exec, script or python, got %s"
                             % (", ".join(kinds) or "none"))
        kind = kinds[0]
        if not isinstance(spec[kind], str) or not spec[kind].strip():
            raise self.error(path + (kind,), "expected a non-empty string")
        self._check_arguments(path, spec, kind)
        self.after[task] = self._after_list(task, spec.get("after", []))
        self.after_any[task] = self._after_list(task, spec.get("after_any", []), "after_any")

    def _check_arguments(self, path: Path, spec: Dict[str, Any], kind: str) -> None:
        if kind == "script" and "args" in spec:
            raise self.error(path + ("args",), "a script takes no args; put them in the "
                                               "script or use exec")
        if "args" in spec:
            args = spec["args"]
            if not isinstance(args, list):
                raise self.error(path + ("args",), "expected a list")
            if kind == "exec":
                for index, item in enumerate(args):
                    if not scalar(item):
                        raise self.error(path + ("args", index),
                                         "expected a string or a number")
        if "kwargs" in spec:
            if kind != "python":
                raise self.error(path + ("kwargs",), "kwargs are for python tasks only")
            if not isinstance(spec["kwargs"], dict):
                raise self.error(path + ("kwargs",), "expected a mapping")
        for stream in STREAMS:
            if stream in spec:
                if kind == "python":
                    raise self.error(path + (stream,), "a python task's output goes to "
                                                       ".qcgflow/<task>/; %s is for exec "
                                                       "and script tasks" % stream)
                if not isinstance(spec[stream], str) or not spec[stream]:
                    raise self.error(path + (stream,), "expected a file name")

    def _after_list(self, task: str, after: Any, key: str = "after") -> List[Tuple[str, bool]]:
        path = ("tasks", task, key)
        if isinstance(after, (str, dict)):
            after = [after]
        if not isinstance(after, list):
            raise self.error(path, "expected a list of task names")
        tasks = self.data["tasks"]
        result = []
        for index, item in enumerate(after):
            here = path + (index,)
            per_iteration = False
            if isinstance(item, dict):
                for key in item:
                    if key not in ("task", "per_iteration"):
                        raise _unknown(self.src, here, key, ("task", "per_iteration"))
                per_iteration = item.get("per_iteration", False)
                if not isinstance(per_iteration, bool):
                    raise self.error(here + ("per_iteration",), "expected true or false")
                item = item.get("task")
            if not isinstance(item, str):
                raise self.error(here, "expected a task name or {task: NAME, "
                                       "per_iteration: true}")
            if item not in tasks:
                close = difflib.get_close_matches(item, list(tasks), n=1)
                raise self.error(here, "unknown task %r%s" % (
                    item, "; did you mean %r?" % close[0] if close else ""))
            if item == task:
                raise self.error(here, "a task cannot run after itself")
            result.append((item, per_iteration))
        return result

    def _order(self, tasks: Dict[str, Any]) -> List[str]:
        """Tasks in dependency order (file order where free); a cycle is an error."""
        order: List[str] = []
        state: Dict[str, int] = {}

        def visit(task: str, trail: List[str]) -> None:
            if state.get(task) == 2:
                return
            if state.get(task) == 1:
                cycle = trail[trail.index(task):] + [task]
                raise self.error(("tasks", cycle[0], "after"), "dependency cycle: %s"
                                 % " -> ".join(cycle))
            state[task] = 1
            for pred, _ in self.after[task] + self.after_any[task]:
                visit(pred, trail + [task])
            state[task] = 2
            order.append(task)
        for task in tasks:
            visit(task, [])
        return order

    def _sweep(self, task: str, spec: Dict[str, Any]) -> None:
        path = ("tasks", task)
        sweep = parse_sweep(spec["foreach"], path + ("foreach",), self.src) \
            if "foreach" in spec else None
        edges = [("after", index, edge) for index, edge in enumerate(self.after[task])] + \
            [("after_any", index, edge) for index, edge in enumerate(self.after_any[task])]
        for key, index, (pred, per_iteration) in edges:
            if not per_iteration:
                continue
            here = path + (key, index)
            theirs = self.sweeps[pred]
            if theirs is None:
                raise self.error(here, "a per-iteration dependency needs a sweep: %r has no "
                                       "foreach" % pred)
            if sweep is None:
                sweep = theirs  # inherits the predecessor's iterations and parameters
            elif len(sweep) != len(theirs):
                raise self.error(here, "a per-iteration dependency needs sweeps of equal "
                                       "size: %r has %d iterations, %r has %d"
                                 % (task, len(sweep), pred, len(theirs)))
        self.sweeps[task] = sweep

    def _placeholders(self, task: str, spec: Dict[str, Any]) -> Dict[str, Any]:
        """The task with every ``${...}`` checked, escapes undone, ``${workflow_dir}``
        filled (qcgflow/workflows/placeholders.py)."""
        sweep = self.sweeps[task]
        return _placeholders.check_task(spec, ("tasks", task),
                                        sweep.names if sweep is not None else None,
                                        sweep is not None, self.base_dir,
                                        self.src.text_error)

    # ---- graph

    def _task_options(self, task: str, spec: Dict[str, Any]) -> Dict[str, Any]:
        own = {k: v for k, v in spec.items() if k in OPTION_KEYS}
        return dict(self.defaults, **own, name=task)

    def _outputs(self, task: str, spec: Dict[str, Any], opts: Dict[str, Any],
                 sweep: Optional[Sweep]) -> None:
        """``outputs`` with a one-parameter sweep's name as ``${itval}``; a product's
        parameters, and ``${itval}`` in a Python task (whose runner knows only ``${it}``),
        cannot name files."""
        if not isinstance(opts.get("outputs"), list):
            return  # not there, or invalid: the option check reports it
        path = ("tasks", task, "outputs") if "outputs" in spec else ("defaults", "outputs")
        filled = []
        for text in opts["outputs"]:
            if not isinstance(text, str):
                return
            if sweep is not None and sweep.names is not None and len(sweep.names) > 1 \
                    and set(sweep.names) & placeholders(text):
                raise self.error(path, "the parameters of a product sweep cannot name a "
                                       "file; use ${it} (the iteration's index)")
            text = fill(text, sweep, False, set())
            if "python" in spec and "${itval}" in text:
                raise self.error(path, "a python task's outputs are named by ${it} (the "
                                       "iteration's index), not by its value")
            filled.append(text)
        opts["outputs"] = filled

    def _ref(self, task: str, spec: Dict[str, Any]):
        path = ("tasks", task)
        opts = self._task_options(task, spec)
        sweep = self.sweeps[task]
        self._outputs(task, spec, opts, sweep)
        try:
            if "python" in spec:
                return self._python(task, spec, opts, sweep)
            template = CommandTemplate(self._execution(spec, sweep), task, opts,
                                       "task %s" % task)
            after = [self.refs[pred] for pred, _ in self.after[task] + self.after_any[task]]
            if sweep is None:
                return template.bind(after=after)
            return template.map(sweep.itvals, after=after)
        except TaskOptionError as exc:
            prefix = path if exc.option in spec else ("defaults",)
            raise self._option_error(prefix, exc) from None
        except WorkflowFileError:
            raise
        except GraphError as exc:
            raise self.error(path, str(exc)) from None

    def _execution(self, spec: Dict[str, Any], sweep: Optional[Sweep]) -> Dict[str, Any]:
        used: set = set()
        if "script" in spec:
            script = fill(script_beside(self.base_dir, spec["script"]), sweep, True, used)
            if sweep is not None and sweep.names is not None and len(sweep.names) > 1:
                script = prelude(sweep, used) + script
            return {"script": script}
        texts = [beside(self.base_dir, spec["exec"])] + [str(a) for a in spec.get("args", [])]
        named = sweep is not None and sweep.names is not None and len(sweep.names) > 1
        if named and any(set(sweep.names) & placeholders(t) for t in texts):
            words = [word(t, sweep, used) for t in texts]
            return {"script": prelude(sweep, used) + "exec " + " ".join(words)}
        return {"exec": fill(texts[0], sweep, False, used),
                "args": [fill(t, sweep, False, used) for t in texts[1:]]}

    def _python(self, task: str, spec: Dict[str, Any], opts: Dict[str, Any],
                sweep: Optional[Sweep]):
        path = ("tasks", task, "python")
        module_name, _, function = spec["python"].partition(":")
        if not module_name or not IDENTIFIER.match(function or "-"):
            raise self.error(path, "expected 'module:function', e.g. 'analysis:summarize'")
        added = [p for p in (self.base_dir, os.getcwd()) if p not in sys.path]
        sys.path[:0] = added
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the user's module: any error it raises on import
            raise self.error(path, "cannot import %r: %s: %s" % (
                module_name, type(exc).__name__, exc)) from None
        finally:
            for p in added:
                sys.path.remove(p)
        fn = getattr(module, function, None)
        if not callable(fn):
            raise self.error(path, "%r has no function %r" % (module_name, function))
        _by_value(module, self.base_dir)
        task_fn = TaskFunction(fn, opts)
        args, kwargs = spec.get("args", []), spec.get("kwargs", {})
        if sweep is None:
            return task_fn.bind(*args, **kwargs)
        return task_fn.map(sweep.elements(), *args, **kwargs)

    def _finish(self, task: str, spec: Dict[str, Any], job: Dict[str, Any]) -> Dict[str, Any]:
        """Dependencies as the file says (per-iteration ones as ``name:${it}``) and the
        standard streams, which the graph API leaves to compile's defaults."""
        job.pop("dependencies", None)
        for key, edges in (("after", self.after[task]), ("afterAny", self.after_any[task])):
            names = ["%s:${it}" % p if per else p for p, per in edges]
            if names:
                job.setdefault("dependencies", {})[key] = list(dict.fromkeys(names))
        problem = model_problem(job)
        if problem:
            raise self.error(("tasks", task, "retries") if "retries" in spec else
                             ("defaults", "retries"), problem)
        sweep = self.sweeps[task]
        if sweep is not None and sweep.names is not None:
            # the run summary names an iteration by its parameters (md[T=1.3])
            named: Dict[str, Any] = {"names": list(sweep.names)}
            if "values" not in job.get("iteration", {}):
                named["values"] = list(sweep.itvals)
            job.setdefault("attributes", {}).setdefault("qcgflow", {})["sweep"] = named
        for stream in STREAMS:
            if stream not in spec:
                continue
            text = spec[stream]
            if sweep is not None and sweep.names is not None and len(sweep.names) > 1 \
                    and set(sweep.names) & placeholders(text):
                raise self.error(("tasks", task, stream), "the parameters of a product sweep "
                                 "cannot name a file; use ${it} (the iteration's index)")
            job["execution"][stream] = fill(text, sweep, False, set())
            _given(job, stream)
        return job


def _given(job: Dict[str, Any], stream: str) -> None:
    """The file gives ``stream`` a name: that file is created when the task starts, even
    if nothing is written (as upstream does), unlike compile's default names."""
    ours = job.get("attributes", {}).get("qcgflow", {})
    lazy = ours.get("when_written")
    if lazy and stream in lazy:
        lazy = [name for name in lazy if name != stream]
        if lazy:
            ours["when_written"] = lazy
        else:
            del ours["when_written"]
            if not ours:
                del job["attributes"]["qcgflow"]
                if not job["attributes"]:
                    del job["attributes"]


def _by_value(module, base_dir: str) -> None:
    """Pickle the functions of a module beside the workflow file by value: the call files
    then run wherever qcgflow is importable, without the workflow's directory on the path."""
    location = getattr(module, "__file__", None) or ""
    if os.path.abspath(location).startswith(os.path.join(base_dir, "")):
        import cloudpickle
        try:
            cloudpickle.register_pickle_by_value(module)
        except (ValueError, AttributeError):
            pass


def load_workflow(path: str, file: Optional[str] = None,
                  python: Optional[str] = None) -> Workflow:
    """Load, check and compile a workflow file (``.yaml``, ``.yml`` or ``.json``);
    ``file`` is its name in messages, ``python`` the interpreter of Python tasks.

    Raises:
        WorkflowFileError: anything wrong with the file; the text is ``file:line: path:
            problem`` (one line).
    """
    data, src = load(path, file)
    return _Builder(data, src, os.path.dirname(os.path.abspath(path)), python).build()
