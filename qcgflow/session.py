"""``qcgflow.run``: compile a graph, run it on a local service, return the results.

::

    run(target)
     ├─ Graph.build ─ compile_graph ─ write_calls(<wd>/.qcgflow/...)
     ├─ LocalService.start: `python -m qcgflow.cli service --net --wd WD [--nodes N]
     │     --ready-fd W` in its own session; ONE JSON ready line on the pipe (no sleeps)
     ├─ ServiceClient: subscribe(JFI) ─ submit ─ wait for every job's final state
     │     (events; a jobStatus re-check whenever no event came for a while)
     ├─ finish request; the process is waited for (killed with its group if it lingers)
     └─ outcomes -> results in the shape of target, or the first failure raised:
          TaskFailed.as_instanceof_cause()  (the task's own exception type)
          DependencyFailed(root=the failed task)  for tasks that never ran

The only graph-API module that talks to the runtime, through ``runtime.client`` alone.
"""

import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from . import payload
from .compile import command_output, compile_graph, write_calls
from .errors import DependencyFailed, RunError, TaskError, TaskFailed
from .graph import COMMAND, Graph, TaskNode, TaskRef
from .runtime.client import TOPIC_JOB_FINISHED, ClientError, ServiceClient

_log = logging.getLogger(__name__)

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 60.0
FINISH_TIMEOUT = 10.0
RECHECK_AFTER = 1.0  # s without an event before the job states are asked for (lost events)
FINAL_STATES = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


# --------------------------------------------------------------------------- the service

def _child_env() -> Dict[str, str]:
    """This environment, with this process's import path: tasks must find the same code."""
    env = dict(os.environ)
    paths = [_PACKAGE_ROOT] + [os.path.abspath(p or os.curdir) for p in sys.path
                               if os.path.isdir(p or os.curdir)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class LocalService:
    """A ``qcgflow service --net`` child process; ``ready`` is its ready line."""

    def __init__(self, popen: subprocess.Popen, ready: Dict[str, Any], stderr_file):
        self.popen = popen
        self.ready = ready
        self.stderr_file = stderr_file

    @classmethod
    def start(cls, wd: str, nodes: Optional[Any] = None,
              timeout: float = START_TIMEOUT) -> "LocalService":
        read_fd, write_fd = os.pipe()
        stderr_file = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "qcgflow.cli", "service", "--net", "--wd", wd,
                   "--ready-fd", str(write_fd)]
        if nodes is not None:
            command += ["--nodes", str(nodes)]
        try:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=stderr_file,
                                     stdout=subprocess.DEVNULL, pass_fds=(write_fd,),
                                     start_new_session=True, cwd=wd, env=_child_env())
        except OSError as exc:
            os.close(read_fd)
            stderr_file.close()
            raise RunError("cannot start the service: %s" % exc) from None
        finally:
            os.close(write_fd)
        service = cls(popen, {}, stderr_file)
        try:
            service.ready = service._read_ready(read_fd, timeout)
        except BaseException:
            service.stop()
            raise
        finally:
            os.close(read_fd)
        return service

    def _read_ready(self, fd: int, timeout: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        buffer = b""
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunError("the service did not start within %.0f s" % timeout)
            if poller.poll(int(left * 1000) + 1):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buffer += chunk
        try:
            return json.loads(buffer.split(b"\n", 1)[0])
        except ValueError:
            self.popen.wait(FINISH_TIMEOUT)
            raise RunError("the service did not start (exit code %s): %s"
                           % (self.popen.returncode, self.stderr_tail())) from None

    def stderr_tail(self, limit: int = 2000) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")[-limit:].strip()

    def liveness(self) -> Optional[str]:
        """None while the process runs; why it is gone otherwise."""
        if self.popen.poll() is None:
            return None
        return "the service process %d ended (exit code %s): %s" % (
            self.popen.pid, self.popen.returncode, self.stderr_tail(500))

    def stop(self, client: Optional[ServiceClient] = None) -> None:
        """``finish`` (when a client is given), then wait; SIGKILL the group if it lingers."""
        try:
            if client is not None and self.popen.poll() is None:
                try:
                    client.request({"request": "finish"}, timeout=FINISH_TIMEOUT)
                except ClientError as exc:
                    _log.warning("finish request failed: %s", exc)
                try:
                    self.popen.wait(FINISH_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(FINISH_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            try:  # whatever is left of its session (tasks it could not stop)
                os.killpg(self.popen.pid, signal.SIGKILL)
            except OSError:
                pass
            self.popen.wait()
        finally:
            self.stderr_file.close()


# --------------------------------------------------------------------------- waiting

def _wait_final(client: ServiceClient, stream, names: List[str], service: LocalService,
                deadline: Optional[float]) -> Dict[str, str]:
    """Every job's final state, from JFI events (re-checked with jobStatus when quiet)."""
    states: Dict[str, str] = {}
    pending = set(names)
    while pending:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise RunError("the run did not finish within its timeout; unfinished: %s"
                           % ", ".join(sorted(pending)[:10]))
        event = stream.next(RECHECK_AFTER if left is None else min(left, RECHECK_AFTER))
        if event is not None:
            if event.topic == TOPIC_JOB_FINISHED and event.job in pending:
                states[event.job] = event.state
                pending.discard(event.job)
            continue
        dead = service.liveness()
        if dead:
            raise RunError(dead)
        reply = client.request({"request": "jobStatus", "jobNames": sorted(pending)}) or {}
        for name, entry in (reply.get("jobs") or {}).items():
            state = (entry.get("data") or {}).get("status")
            if state in FINAL_STATES and name in pending:
                states[name] = state
                pending.discard(name)
    return states


def _messages(client: ServiceClient, names: List[str]) -> Dict[str, str]:
    if not names:
        return {}
    reply = client.request({"request": "jobStatus", "jobNames": names}) or {}
    return {name: str((entry.get("data") or {}).get("messages") or "")
            for name, entry in (reply.get("jobs") or {}).items()}


# --------------------------------------------------------------------------- outcomes

class _Outcomes:
    """What happened to each node: its value, or the TaskError to raise (computed lazily,
    predecessors first, so that a dependant's error names the root failure)."""

    def __init__(self, graph: Graph, root: str, states: Dict[str, str],
                 messages: Dict[str, str]):
        self.graph, self.root, self.states, self.messages = graph, root, states, messages
        self.base = os.path.join(root, payload.RUN_DIR)
        self.errors: Dict[TaskNode, Optional[TaskError]] = {}

    def error(self, node: TaskNode) -> Optional[TaskError]:
        if node not in self.errors:
            for pred in self.graph.order:  # predecessors first: no deep recursion
                if pred not in self.errors:
                    self.errors[pred] = self._error(pred)
        return self.errors[node]

    def _failed_predecessor(self, node: TaskNode) -> Optional[TaskError]:
        for pred, _ in self.graph.edges[node]:
            if self.errors[pred] is not None:
                return self.errors[pred]
        return None

    def _error(self, node: TaskNode) -> Optional[TaskError]:
        name = self.graph.names[node]
        state = self.states.get(name)
        if state == "SUCCEED":
            return None
        own = self._own_failure(node, name) if state in ("FAILED", "CANCELED") else None
        if own is not None:
            return own
        upstream = self._failed_predecessor(node)
        if upstream is not None:
            root = upstream.root if isinstance(upstream, DependencyFailed) else upstream.task
            root_error = upstream.root_error if isinstance(upstream, DependencyFailed) \
                else upstream
            return DependencyFailed(name, root.split(":")[0], root_error)
        return TaskFailed(name, messages=self.messages.get(name) or str(state).lower())

    def _own_failure(self, node: TaskNode, name: str) -> Optional[TaskFailed]:
        """The task's own failure: an error result file, or the runtime's reason when no
        predecessor failed (a command's exit code, wall time, a signal)."""
        if node.kind != COMMAND:
            iterations = [None] if node.iterations is None else range(node.iterations)
            for it in iterations:
                path = os.path.join(self.base, payload.result_file(name, it))
                if os.path.exists(path):
                    result = payload.read_result(path)
                    if result[0] == "error":
                        task = name if it is None else "%s:%s" % (name, it)
                        return TaskFailed(task, result[1], result[3], cause_type=result[2])
        if self._failed_predecessor(node) is not None:
            return None
        return TaskFailed(name, messages=self.messages.get(name) or str(self.states.get(name)))

    def value(self, node: TaskNode) -> Any:
        name = self.graph.names[node]
        if node.kind == COMMAND:
            return command_output(node, name).load(self.base, None) \
                if node.iterations is None else [
                    command_output(node, name).result(self.root, i)
                    for i in range(node.iterations)]
        return payload.ResultOf(name, node.iterations).load(self.base, None)


def _shape(target: Any, values: Dict[TaskNode, Any]) -> Any:
    kind = type(target)
    if kind is TaskRef:
        return values[target.node]
    if kind is dict:
        return {key: _shape(item, values) for key, item in target.items()}
    if kind in payload.CONTAINERS:
        return kind(_shape(item, values) for item in target)
    return target


# --------------------------------------------------------------------------- run

def run(target: Any, nodes: Optional[Any] = None, wd: Optional[str] = None,
        timeout: Optional[float] = None) -> Any:
    """Run the graph of ``target`` on a local service and return its results.

    Args:
        target: a ref, or a list / tuple / dict of refs (nesting allowed).
        nodes: the service's resources (``4``: 4 cores; ``"a:2,b:2"``); default: this
            host's CPUs.
        wd: the run's working directory (created if missing; call, result and output
            files stay there); default: a new ``$TMPDIR/qcgflow-run-*``.
        timeout: seconds for the whole run (None: no limit).

    Returns:
        ``target`` with every ref replaced by its result: a Python task's return value (a
        list for a mapped task), a command task's ``CommandResult`` (a list when mapped).

    Raises:
        TaskFailed: a target task failed; also an instance of the task's own exception
            class (``except ValueError`` works), its text holds the remote traceback.
        DependencyFailed: a target task did not run; ``root`` names the failed task.
        RunError: the service could not start, refused the jobs, or the timeout passed.
        GraphError, TaskOptionError: the graph is not valid (nothing is started).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    graph = Graph.build(target)
    jobs = compile_graph(graph)
    root = os.path.abspath(wd) if wd else tempfile.mkdtemp(prefix="qcgflow-run-")
    os.makedirs(root, exist_ok=True)
    write_calls(graph, root)
    names = [job["name"] for job in jobs]
    service = LocalService.start(root, nodes)
    client = None
    try:
        client = ServiceClient(service.ready["address"], liveness=service.liveness,
                               keys_dir=service.ready.get("keys_dir"))
        with client.subscribe(TOPIC_JOB_FINISHED, address=service.ready["pub_address"]) \
                as stream:
            try:
                client.request({"request": "submit", "jobs": jobs})
            except ClientError as exc:
                raise RunError("the service refused the jobs: %s" % exc) from None
            states = _wait_final(client, stream, names, service, deadline)
        messages = _messages(client, [n for n in names if states[n] != "SUCCEED"])
    except ClientError as exc:
        raise RunError("lost the service: %s" % exc) from None
    finally:
        service.stop(client)
        if client is not None:
            client.close()
    outcomes = _Outcomes(graph, root, states, messages)
    for ref in graph.targets:
        error = outcomes.error(ref.node)
        if error is not None:
            raise error.as_instanceof_cause() if isinstance(error, TaskFailed) else error
    return _shape(target, {ref.node: outcomes.value(ref.node) for ref in graph.targets})
