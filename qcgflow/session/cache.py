"""Resume and result caching: reuse what tasks computed before, keyed by qcgflow.graph.keys.

::

    a task succeeds ─> record: <wd>/.qcgflow/memo.jsonl gets one line per result
                       {"k": key, "j": job, "i": iteration|null, "s": sha256 of the result
                        | "c": 1 for a command, "t": its result store if in one}; with a
                       cache dir, also copied to <cache>/<key[:2]>/<key>.pkl (Python only)
    a run starts (resume / cache dir):
       plan, from the targets back: a task whose key has a record whose result file is
       still the one recorded (same sha256) or a loadable cache file is REUSED: its result
       file is put in place under this run's job name, it is not submitted, and the tasks
       only it needed are not run either; a mapped Python task with some iterations reused
       runs as one job whose runner skips those ("skip" in the call file); a mapped command
       is reused whole or run whole, but per iteration for ``qcgflow run FILE``
       (``partial_commands``: the reused iterations' script exits at once).
       A task reused whole after a task that runs runs too (its inputs may differ).
       -> "reused N of M tasks from <wd>"

Declared outputs (qcgflow/build/outputs.py): a task is reused from this directory only when they
are there; from the cache (another directory) only when they are restored from it, and a
Python task without any only when it is ``pure``: its file effects are otherwise unknown.

A missing, changed or corrupt result file, a failed task, a different key: no reuse, the
task runs. Reading a record never trusts the job name: job names of an edited graph may
shift, the sha256 says whether the file still holds that result.

``qcgflow run FILE`` runs a workflow in a child service: the keys of the jobs to run are
written to ``memo-pending.json`` first and turned into records from the run's jobs.report
when it ends (or at the next run, when ``qcgflow run`` itself was killed).
"""

import contextlib
import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import cloudpickle

from qcgflow.build import outputs
from qcgflow.build import payload
from qcgflow.build import store as _store
from qcgflow.build.compile import command_output
from qcgflow.graph.options import PARALLEL_MODELS
from qcgflow.graph.graph import COMMAND, TaskNode
from qcgflow.graph.keys import Keyer, NodeKeys
from qcgflow.runtime.client.workdir import REPORT_FILE, read_report, service_dirs
from qcgflow.runtime.protocol import SUCCEED

_log = logging.getLogger(__name__)

JOURNAL = "memo.jsonl"
PENDING = "memo-pending.json"


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload.write_atomic(path, data)  # readers never see half a file


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ok_result(data: bytes) -> bool:
    try:
        result = cloudpickle.loads(data)
    except Exception:  # noqa: BLE001 - a corrupt file: any unpickling error
        return False
    return type(result) is tuple and len(result) == 2 and result[0] == "ok"


def output_files(node: TaskNode, root: str, it: Optional[int]) -> List[Tuple[str, str]]:
    """``(path as declared, filled; absolute path)`` of ``node``'s declared outputs in
    iteration ``it`` of a run in ``root``."""
    declared = node.options.get("outputs") or []
    if not declared:
        return []
    itval = None
    if it is not None and node.mapped is not None and node.mapped[0] == "values" \
            and node.kind == COMMAND:
        itval = node.mapped[1][it]
    task_wd = os.path.join(root, node.options.get("wd", "").replace("${root_wd}", root))
    out = []
    for path in declared:
        filled = outputs.fill_it(path, it, itval)
        out.append((filled, os.path.normpath(os.path.join(task_wd, filled))))
    return out


def units(node: TaskNode) -> int:
    """Tasks a node counts for: its iterations, or 1."""
    return node.iterations or 1


class Store:
    """The records of one run directory (and the optional shared cache directory).

    Appends are single ``write`` calls of whole lines to a file opened for appending, so
    sessions in the same directory (tasks submitting tasks) do not interleave lines; a
    broken line (a crash while writing) is skipped when reading.
    """

    def __init__(self, root: str, cache_dir: Optional[str] = None):
        self.root = os.path.abspath(root)
        self.base = os.path.join(self.root, payload.RUN_DIR)
        self.path = os.path.join(self.base, JOURNAL)
        self.cache_dir = os.path.abspath(cache_dir) if cache_dir else None
        self.records: Dict[str, Dict[str, Any]] = {}
        data = _read(self.path) or b""
        for line in data.splitlines():
            try:
                entry = json.loads(line)
                self.records[entry["k"]] = entry
            except (ValueError, KeyError, TypeError):
                continue

    def cache_path(self, key: str) -> str:
        return os.path.join(self.cache_dir, key[:2], key + ".pkl")

    def cache_files(self, key: str, declared: str) -> str:
        """Where the cache keeps a declared output of the result ``key``."""
        return os.path.join(self.cache_dir, key[:2], key + ".files", declared)

    def keep_files(self, key: str, files: List[Tuple[str, str]]) -> None:
        """Copy declared outputs to the cache (before the result that needs them)."""
        if self.cache_dir is None:
            return
        for declared, path in files:
            data = _read(path)
            if data is not None:
                _write(self.cache_files(key, declared), data)

    def cached_files(self, key: str, files: List[Tuple[str, str]]
                     ) -> Optional[List[Tuple[str, bytes]]]:
        """``(target path, bytes)`` of every declared output the cache holds for ``key``,
        None when one is missing."""
        out = []
        for declared, path in files:
            data = _read(self.cache_files(key, declared))
            if data is None:
                return None
            out.append((path, data))
        return out

    def result_path(self, job: str, it=None) -> str:
        return os.path.join(self.base, payload.result_file(job, it))

    def append(self, entries: List[Dict[str, Any]], remember: bool = True) -> None:
        """Add records to the store's file (``remember``: to ``records`` too; a caller
        that is done with the store passes False and writes in chunks, so that a sweep of
        1,000,000 iterations never holds its records in memory)."""
        if not entries:
            return
        os.makedirs(self.base, exist_ok=True)
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)
        if remember:
            for entry in entries:
                self.records[entry["k"]] = entry

    # ------------------------------------------------------------------ reading
    def python_result(self, key: str) -> Optional[Tuple[Optional[str], bytes]]:
        """(the recorded path or None for the cache, the bytes) of a verified result."""
        entry = self.records.get(key)
        if entry is not None and entry.get("s"):
            path = self.result_path(entry["j"], entry.get("i"))
            data = _read(path)
            if data is None and entry.get("t"):  # in its session's store: not the target
                path, data = path + " (stored)", _store.read_from(self.base, entry["t"], path)
            if data is not None and _sha(data) == entry["s"]:
                return path, data
        if self.cache_dir is not None:
            data = _read(self.cache_path(key))
            if data is not None and _ok_result(data):
                return None, data
        return None

    # ------------------------------------------------------------------ writing
    def entries(self, node: TaskNode, name: str, keys: NodeKeys,
                its: Optional[Iterable[int]] = None) -> List[Dict[str, Any]]:
        """Records for the results ``node`` (run as ``name``) has now; ``its``: only these
        iterations. A Python result goes to the cache directory too."""
        if keys.key is None:
            return []
        if keys.iterations is None:
            pairs = [(None, keys.key)]
        else:
            wanted = range(len(keys.iterations)) if its is None else its
            pairs = [(i, keys.iterations[i]) for i in wanted]
        if node.kind == COMMAND:
            return [{"k": key, "j": name, "i": it, "c": 1} for it, key in pairs]
        out = []
        for it, key in pairs:
            path = self.result_path(name, it)
            data, held = _store.held(self.base, path)  # in the session's result store
            data = _read(path) if data is None else data
            if data is None:
                continue
            entry = {"k": key, "j": name, "i": it, "s": _sha(data)}
            out.append(dict(entry, t=held) if held else entry)
            if self.cache_dir is not None and not os.path.exists(self.cache_path(key)) \
                    and _ok_result(data):
                self.keep_files(key, output_files(node, self.root, it))
                _write(self.cache_path(key), data)
        return out


def _partial(node: TaskNode) -> bool:
    """Whether some iterations of ``node`` may be reused and the others run: not when an
    output is shared by the iterations (the whole sweep makes it)."""
    return outputs.per_iteration(node.options.get("outputs") or [])


class Plan:
    """What a run does with one node: ``full`` (reused, not run) or the iterations of a
    mapped Python task to ``skip``; ``writes`` are the files to put in place."""

    __slots__ = ("full", "skip", "writes", "reused")

    def __init__(self):
        self.full = False
        self.skip: Set[int] = set()
        self.writes: List[Tuple[str, bytes]] = []
        self.reused = 0


class Memo:
    """Resume and caching for one run directory: keys, plans, records, the report line."""

    def __init__(self, root: str, cache_dir: Optional[str] = None, reuse: bool = True,
                 keyer: Optional[Keyer] = None, partial_commands: bool = False):
        self.partial_commands = partial_commands  # the caller can skip their iterations
        self.store = Store(root, cache_dir)
        self.keyer = keyer or Keyer()
        self.reuse = reuse or cache_dir is not None
        self.total = self.reused = self.unneeded = 0

    def line(self) -> str:
        """``reused N of M tasks from <wd>``; N counts the tasks not run because only
        reused tasks need their results (said in parentheses)."""
        text = "reused %d of %d tasks from %s" % (self.reused + self.unneeded, self.total,
                                                 self.store.root)
        if self.unneeded:
            text += " (%d of them not needed: only reused tasks use their results)" \
                % self.unneeded
        return text

    def report(self) -> None:
        """Log the line (INFO, logger ``qcgflow.session.cache``)."""
        _log.info("%s", self.line())

    # ------------------------------------------------------------------ planning
    def plan(self, new: List[TaskNode], targets: Iterable[TaskNode],
             names: Dict[TaskNode, str], extra: Optional[Dict[TaskNode, Any]] = None
             ) -> Tuple[List[TaskNode], Dict[TaskNode, Plan]]:
        """The nodes of ``new`` (predecessors first) to keep, and the plans of those with
        something reused; reused files are put in place. Without ``reuse`` every node is
        kept (keys are computed for the records)."""
        self.keyer.add(new, extra)
        self.total += sum(units(node) for node in new)
        if not self.reuse:
            return new, {}
        dropped: Set[TaskNode] = set()
        found: Dict[TaskNode, Optional[Plan]] = {}
        while True:  # a task after one that runs runs too (its result may differ); what it
            # needs is then needed too, which may make more run: again, until nothing moves
            needed, plans = self._backward(new, targets, names, dropped, found)
            runs: Set[TaskNode] = set()
            more: Set[TaskNode] = set()
            for node in new:  # predecessors first: one pass carries it down the graph
                if node not in needed:
                    continue
                if any(ref.node in runs for ref, _ in node.dependencies()):
                    runs.add(node)
                    if node in plans:
                        more.add(node)
                elif node not in plans or not plans[node].full:
                    runs.add(node)
            if not more:
                break
            dropped |= more
        self.reused += sum(plan.reused for plan in plans.values())
        for plan in plans.values():  # every file was read before any is written
            for path, data in plan.writes:
                _write(path, data)
        for node, plan in plans.items():  # the records follow the files they copied
            if plan.writes:
                self.record(node, names[node], None if plan.full else sorted(plan.skip))
        kept = [node for node in new if node in needed]
        self.unneeded += sum(units(node) for node in new if node not in needed)
        self.report()
        return kept, plans

    def _backward(self, new: List[TaskNode], targets: Iterable[TaskNode],
                  names: Dict[TaskNode, str], dropped: Set[TaskNode],
                  found: Dict[TaskNode, Optional[Plan]]
                  ) -> Tuple[Set[TaskNode], Dict[TaskNode, Plan]]:
        """From the targets back: the nodes needed and the plans of the reusable ones
        (``dropped`` run: a task they run after runs again; ``found``: plans made before)."""
        needed = set(targets)
        plans: Dict[TaskNode, Plan] = {}
        for node in reversed(new):
            if node not in needed:
                continue
            if node not in found:
                found[node] = self._plan(node, names[node])
            plan = None if node in dropped else found[node]
            if plan is not None:
                plans[node] = plan
            if plan is None or not plan.full:
                needed.update(ref.node for ref, _ in node.dependencies())
        return needed, plans

    def _plan(self, node: TaskNode, name: str) -> Optional[Plan]:
        keys = self.keyer[node]
        if keys.key is None:
            return None
        plan = Plan()
        if node.kind == COMMAND:
            return self._command(node, name, keys, plan)
        pairs = [(None, keys.key)] if keys.iterations is None else \
            list(enumerate(keys.iterations))
        for it, key in pairs:
            found = self.store.python_result(key)
            if found is None:
                continue
            path, data = found
            files = output_files(node, self.store.root, it)
            if path is not None:  # recorded in this directory: its files must be there
                if any(not os.path.exists(full) for _, full in files):
                    continue
            elif files:  # from the cache: its declared outputs come back with it
                restored = self.store.cached_files(key, files)
                if restored is None:
                    continue
                plan.writes.extend(restored)
            elif not node.options.get("pure"):
                continue  # file effects qcgflow cannot know: not reused in another directory
            target = self.store.result_path(name, it)
            if path != target:
                plan.writes.append((target, data))
            plan.skip.add(it)
        if not plan.skip or (len(plan.skip) < len(pairs) and not _partial(node)):
            return None
        plan.full = len(plan.skip) == len(pairs)
        plan.reused = len(plan.skip)
        if plan.full:
            plan.skip = set()
        return plan

    def _command(self, node: TaskNode, name: str, keys: NodeKeys, plan: Plan
                 ) -> Optional[Plan]:
        """A command is reused per iteration when it succeeded in this directory and its
        declared outputs are there (its files are in the wd: never from a cache). Only a
        caller that can skip iterations (``partial_commands``) gets part of a sweep, and
        only of a sweep whose outputs all name their iteration and that runs no MPI."""
        its = [None] if keys.iterations is None else list(range(len(keys.iterations)))
        root = self.store.root
        found = []
        for it in its:
            entry = self.store.records.get(keys.key if it is None else keys.iterations[it])
            if entry is None or not entry.get("c"):
                continue
            if any(not os.path.exists(full) for _, full in output_files(node, root, it)):
                continue
            found.append((it, entry))
        if not found:
            return None
        if len(found) < len(its) and not (self.partial_commands and _partial(node)
                                          and node.options.get("model") not in PARALLEL_MODELS):
            return None
        for it, entry in found:
            if entry["j"] == name:
                continue
            old = command_output(node, entry["j"]).result(root, it)
            new = command_output(node, name).result(root, it)
            for source, target in ((old.stdout, new.stdout), (old.stderr, new.stderr)):
                data = _read(source)
                if data is not None:
                    plan.writes.append((target, data))
        plan.full = len(found) == len(its)
        plan.skip = set() if plan.full else {it for it, _ in found}
        plan.reused = len(found)
        return plan

    # ------------------------------------------------------------------ recording
    def record(self, node: TaskNode, name: str, its: Optional[Iterable[int]] = None) -> None:
        """Record the results ``node`` has now (after it succeeded); never raises."""
        keys = self.keyer.keys.get(node)
        if keys is None:
            return
        try:
            self.store.append(self.store.entries(node, name, keys, its))
        except OSError as exc:
            _log.warning("cannot record the result of %s for resuming: %s", name, exc)


def write_skips(root: str, plans: Dict[TaskNode, Plan], names: Dict[TaskNode, str]) -> None:
    """Add the iterations to skip to the call files of partly reused mapped tasks."""
    for node, plan in plans.items():
        if plan.full or not plan.skip or node.kind == COMMAND:
            continue  # a command's iterations are skipped by its script (plan_workflow)
        path = os.path.join(root, payload.RUN_DIR, names[node], payload.CALL_FILE)
        call = payload.read_call(path)
        payload.write_call(path, call["fn"], call["args"], call["kwargs"], call["map"],
                           skip=sorted(plan.skip), outputs=call.get("outputs"))


# --------------------------------------------------------------------------- qcgflow run

def run_settings(wd: Optional[str], resume: Optional[bool], cache_dir: Optional[str]
                 ) -> Optional[Tuple[Optional[str], bool]]:
    """``(cache_dir, reuse)`` for the Memo of ``qcgflow.run``, None when nothing is kept
    (no ``wd``, no cache: a new temporary directory). ``resume`` None and ``cache_dir``
    None take ``$QCGFLOW_RESUME`` (``"1"``) and ``$QCGFLOW_CACHE_DIR``.

    Raises:
        ValueError: ``resume=True`` without ``wd`` or ``cache_dir``: nothing to resume.
    """
    if resume and wd is None and cache_dir is None:
        raise ValueError("qcgflow.run(resume=True) needs wd=: the directory of the run to "
                         "resume (or cache_dir=)")
    if resume is None:
        resume = os.environ.get("QCGFLOW_RESUME") == "1"
    cache_dir = cache_dir or os.environ.get("QCGFLOW_CACHE_DIR") or None
    if wd is None and cache_dir is None:
        return None
    return cache_dir, bool(resume)


@contextlib.contextmanager
def script_env(resume: bool, cache_dir: Optional[str], rt_stats: bool = False):
    """``qcgflow run SCRIPT --resume / --cache DIR / --enable-rt-stats``: the defaults of
    the script's ``qcgflow.run`` calls (``QCGFLOW_RESUME``, ``QCGFLOW_CACHE_DIR``,
    ``QCGFLOW_RT_STATS``), restored after."""
    wanted = {"QCGFLOW_RESUME": "1" if resume else None,
              "QCGFLOW_CACHE_DIR": os.path.abspath(cache_dir) if cache_dir else None,
              "QCGFLOW_RT_STATS": "1" if rt_stats else None}
    saved = {name: os.environ.get(name) for name in wanted}
    handler = logging.StreamHandler()  # the command line shows "reused N of M ..."
    handler.setFormatter(logging.Formatter("qcgflow run: %(message)s"))
    level, propagate = _log.level, _log.propagate
    try:
        for name, value in wanted.items():
            if value is not None:
                os.environ[name] = value
        if resume or cache_dir:
            _log.addHandler(handler)
            _log.setLevel(logging.INFO)
            _log.propagate = False
        yield
    finally:
        _log.removeHandler(handler)
        _log.setLevel(level)
        _log.propagate = propagate
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def plan_workflow(workflow, wd: str, requests_path: str, resume: bool,
                  cache_dir: Optional[str]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """For ``qcgflow run FILE`` after ``workflow.write(requests_path)``: the jobs to run
    (the requests file is rewritten without the reused ones and without dependencies on
    them) and the report line (None without resume or cache). Writes the pending keys that
    ``finish_workflow`` turns into records."""
    finish_workflow(wd)  # a run whose ``qcgflow run`` was killed: record what it did
    graph = workflow.graph
    jobs = {job["name"]: job for job in workflow.jobs}
    extra = {node: jobs[graph.names[node]]["execution"] for node in graph.order
             if node.kind == COMMAND}
    memo = Memo(wd, cache_dir, reuse=resume, partial_commands=True)
    _, plans = memo.plan(list(graph.order), list(graph.order), graph.names, extra)
    reused = {graph.names[node] for node, plan in plans.items() if plan.full}
    write_skips(wd, plans, graph.names)
    skips = {graph.names[node]: plan.skip for node, plan in plans.items() if not plan.full}
    nodes = {graph.names[node]: node for node in graph.order}
    todo = []
    for job in workflow.jobs:
        if job["name"] in reused:
            continue
        skip = skips.get(job["name"], set())
        node = nodes[job["name"]]
        if skip and node.kind == COMMAND:  # the reused iterations exit at once
            execution = {k: v for k, v in job["execution"].items()
                         if k not in ("script", "exec", "args")}
            execution.update(outputs.wrap(job["execution"], skip=skip))
            job = dict(job, execution=execution)
        outputs.clean(wd, node, job, skip)
        deps = job.get("dependencies") or {}
        if deps:
            # reused predecessors are not submitted: drop their edges (after and afterAny)
            left = {key: [a for a in names if a.split(":")[0] not in reused]
                    for key, names in deps.items()}
            left = {key: names for key, names in left.items() if names}
            job = dict(job)
            if left:
                job["dependencies"] = left
            else:
                job.pop("dependencies")
        todo.append(job)
    if reused or any(skips.values()):
        with open(requests_path, "w", encoding="utf-8") as handle:
            json.dump(workflow.requests(todo), handle, indent=2)  # retries' loops included
            handle.write("\n")
    pending = {"before": service_dirs(wd), "jobs": {}}
    for node in graph.order:
        name = graph.names[node]
        keys = memo.keyer[node]
        if name in reused or keys.key is None:
            continue
        pending["jobs"][name] = {"key": keys.key, "iterations": keys.iterations,
                                 "command": node.kind == COMMAND}
        if node.kind != COMMAND and node.options.get("outputs") and cache_dir:
            its = [None] if keys.iterations is None else range(len(keys.iterations))
            pending["jobs"][name]["files"] = [output_files(node, wd, it) for it in its]
    _write(os.path.join(wd, payload.RUN_DIR, PENDING), json.dumps(pending).encode())
    line = memo.line() if memo.reuse else None
    return todo, line


def finish_workflow(wd: str, cache_dir: Optional[str] = None, reports_complete=False) -> int:
    """Turn the pending keys of the last ``qcgflow run`` in ``wd`` into records, from its
    jobs.report (succeeded jobs and iterations); returns how many were recorded.
    ``reports_complete``: ``resume.complete_report`` ran already (``qcgflow run``'s end)."""
    path = os.path.join(wd, payload.RUN_DIR, PENDING)
    data = _read(path)
    if data is None:
        return 0
    try:
        pending = json.loads(data)
        before, jobs = set(pending["before"]), pending["jobs"]
    except (ValueError, KeyError, TypeError):
        os.unlink(path)
        return 0
    # what succeeded, compactly: a set of job names, and per sweep 1 byte per iteration
    # (not a dict of 1,000,000 "job:it" keys)
    whole_ok: set = set()
    its_ok: Dict[str, bytearray] = {}
    from qcgflow.runtime.resume import complete_report  # noqa: PLC0415 - ends of runs only
    for service_dir in service_dirs(wd):
        if service_dir not in before:
            if not reports_complete:  # a SIGKILL's lost report batch, or it runs again
                complete_report(service_dir)
            for entry in read_report(os.path.join(service_dir, REPORT_FILE)):
                job, _, it = str(entry.get("name")).partition(":")
                info = jobs.get(job)
                if info is None:
                    continue
                ok = entry.get("state") == SUCCEED
                if not it:
                    (whole_ok.add if ok else whole_ok.discard)(job)
                elif info["iterations"] is not None and it.isdigit() and \
                        int(it) < len(info["iterations"]):
                    marks = its_ok.setdefault(job, bytearray(len(info["iterations"])))
                    marks[int(it)] = ok
    store = Store(wd, cache_dir)
    entries: List[Dict[str, Any]] = []
    recorded = 0
    for name, info in jobs.items():
        whole = name in whole_ok
        marks = its_ok.get(name, b"")
        if info["iterations"] is None:
            pairs = [(None, info["key"])] if whole else []
        else:
            pairs = ((i, key) for i, key in enumerate(info["iterations"])
                     if whole or (i < len(marks) and marks[i]))
        for it, key in pairs:
            if len(entries) >= 10000:  # written in chunks: bounded memory
                store.append(entries, remember=False)
                recorded += len(entries)
                entries = []
            if info["command"]:
                entries.append({"k": key, "j": name, "i": it, "c": 1})
                continue
            result = _read(store.result_path(name, it))
            if result is not None and _ok_result(result):
                entries.append({"k": key, "j": name, "i": it, "s": _sha(result)})
                if store.cache_dir is not None and not os.path.exists(store.cache_path(key)):
                    files = info.get("files")
                    store.keep_files(key, files[it or 0] if files else [])
                    _write(store.cache_path(key), result)
    store.append(entries, remember=False)
    recorded += len(entries)
    os.unlink(path)
    return recorded
