"""The layering rules of docs/architecture.md, checked on the source with ``ast``."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qcgflow"
RUNTIME = PACKAGE / "runtime"

# Rule 3: the decision core does no I/O and reads no clock or environment.
DECISION_CORE = ["resources", "totals", "jobs", "registry", "iterschedulers", "scheduler", "deps",
                 "variables"]
IO_MODULES = {"asyncio", "zmq", "subprocess", "socket", "os", "time", "threading", "select",
              "selectors", "signal", "shutil", "io", "pathlib", "multiprocessing"}
CLOCK_CALLS = {("time", "time"), ("time", "monotonic"), ("datetime", "now"),
               ("datetime", "today"), ("datetime", "utcnow")}

# Rule 4: started on every node / per task: only these imports.
LEAN_MODULES = {
    "runtime/launch/agent.py": {"os", "sys", "json", "signal", "time", "zmq"},
    "runner.py": {"os", "sys", "cloudpickle", "traceback"},
}

# Rule 5: size limit, with deliberate exemptions (none yet).
MAX_LINES = 600
SIZE_EXEMPT = set()

# Rule 2: outside the runtime, only these runtime modules may be imported (and by whom).
GRAPH_API_MAY_IMPORT = {"qcgflow.runtime.protocol": None,  # anyone
                        # THE ${...} grammar: part of the job-description format too
                        "qcgflow.runtime.placeholders": None,
                        # talking to a service, starting one (client/spawn.py), reading
                        # its jobs.report and finding its directories (client/workdir.py)
                        "qcgflow.runtime.client": {"session/driver.py", "session/localservice.py",
                                                   "session/cache.py", "cli/workflow.py",
                                                   "cli/rerun.py"},
                        # leaf helpers without state: bounded reads of user-named files
                        "qcgflow.runtime.inputfile": None,
                        # is a service alive in a directory (the journal's lock)
                        "qcgflow.runtime.journal": {"cli/workflow.py"},
                        # a SIGKILLed service's jobs.report completed from its journal
                        # before it is summed up or the cache reads what succeeded
                        # (resume.complete_report)
                        "qcgflow.runtime.resume": {"session/cache.py", "cli/workflow.py"}}
# The command line is a composition root of its own: it starts the service.
# ``qcgflow run --resume`` ends the tasks a killed service left running, as ``qcgflow
# service --resume`` does (runtime.resume.kill_leftovers).
RUNTIME_ENTRY_POINTS = {"cli/main.py": {"qcgflow.runtime.service", "qcgflow.runtime.stats.cli"},
                        "cli/rerun.py": {"qcgflow.runtime.resume"}}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def rel(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imported_names(path: pathlib.Path):
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = ["qcgflow"] + list(path.relative_to(PACKAGE).parent.parts)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.append(module)
            names.extend("%s.%s" % (module, alias.name) for alias in node.names)
    return names


def test_the_package_has_modules():
    assert len(modules()) > 10


@pytest.mark.parametrize("path", [p for p in modules() if RUNTIME in p.parents], ids=rel)
def test_runtime_imports_nothing_outside_runtime(path):
    outside = [n for n in imported_names(path)
               if n.startswith("qcgflow") and not n.startswith("qcgflow.runtime")
               and n != "qcgflow"]
    assert outside == []


@pytest.mark.parametrize("path", [p for p in modules() if RUNTIME not in p.parents], ids=rel)
def test_graph_api_reaches_runtime_only_through_protocol_and_client(path):
    allowed_here = RUNTIME_ENTRY_POINTS.get(rel(path), set())
    bad = []
    for name in imported_names(path):
        if not name.startswith("qcgflow.runtime"):
            continue
        module = next((m for m in list(GRAPH_API_MAY_IMPORT) + list(allowed_here)
                       if name == m or name.startswith(m + ".")), None)
        if module in allowed_here:
            continue
        if module is None or (GRAPH_API_MAY_IMPORT[module] is not None
                              and rel(path) not in GRAPH_API_MAY_IMPORT[module]):
            bad.append(name)
    assert bad == []


@pytest.mark.parametrize("name", DECISION_CORE)
def test_decision_core_does_no_io(name):
    path = RUNTIME / ("%s.py" % name)
    roots = {n.split(".")[0] for n in imported_names(path)}
    assert roots & IO_MODULES == set()


@pytest.mark.parametrize("name", DECISION_CORE)
def test_decision_core_reads_no_clock(name):
    tree = ast.parse((RUNTIME / ("%s.py" % name)).read_text())
    calls = {(node.func.value.id, node.func.attr) for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name)}
    assert calls & CLOCK_CALLS == set()


def test_node_side_modules_import_little():
    """Rule 4, for the node-side modules that exist (they arrive with their issues)."""
    heavy = {}
    for relpath, allowed in LEAN_MODULES.items():
        path = PACKAGE / relpath
        if path.exists():
            roots = {n.split(".")[0] for n in imported_names(path)} - {"qcgflow"}
            if roots - allowed:
                heavy[relpath] = sorted(roots - allowed)
    assert heavy == {}


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_module_size(path):
    if rel(path) in SIZE_EXEMPT:
        return
    assert len(path.read_text().splitlines()) <= MAX_LINES


# Rule 6: no import cycle anywhere in qcgflow/ (imports inside functions count).
# The graph side's layers, lowest first: a module never imports a higher layer's module.
LAYERS = ["graph", "build", "session", "workflows", "cli"]


def module_name(path: pathlib.Path) -> str:
    parts = ["qcgflow"] + list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
    """module -> the qcgflow modules it imports, anywhere in its body (in functions too).

    An import names its module; ``from P import x`` names P (its ``__init__`` runs) and
    ``P.x`` when that is a module; a name that is no module stands for the module holding
    it. The parent packages Python runs on the way are not edges: a package's
    ``__init__`` that loads names lazily stays at the top of its package.
    """
    paths = {module_name(path): path for path in modules()}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for imported in imported_names(path):
            while imported and imported not in paths:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def strongly_connected(graph: dict) -> list:
    """The components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d", "e"]]


def test_the_import_graph_sees_imports_inside_functions():
    assert "qcgflow.build.payload" in import_graph()["qcgflow.runner"]


def test_no_import_cycles():
    assert [sorted(c) for c in strongly_connected(import_graph())] == []


def test_graph_side_layers_import_only_downwards():
    rank = {"qcgflow.%s" % layer: i for i, layer in enumerate(LAYERS)}
    upward = []
    for module, targets in import_graph().items():
        mine = rank.get(".".join(module.split(".")[:2]))
        for target in targets:
            theirs = rank.get(".".join(target.split(".")[:2]))
            if mine is not None and theirs is not None and theirs > mine:
                upward.append("%s -> %s" % (module, target))
    assert upward == []


# Rule 8: composition over inheritance in the composition roots.
SERVICE_MODULES = {"qcgflow.runtime.service", "qcgflow.runtime.serving",
                   "qcgflow.runtime.governor.service"}
# role -> the classes that play it (module, class), checked against the Protocol's methods
ROLE_PLAYERS = {
    "TaskExecutor": [("executor", "Executor"), ("governor.dispatcher", "RemoteExecutor")],
    "Launcher": [("launch.local", "LocalLauncher"), ("launch.pyworker", "WarmLauncher"),
                 ("launch.agents", "AgentLauncher"), ("launch.srun", "SrunLauncher"),
                 ("governor.dispatcher", "RemoteExecutor")],
    "Hub": [("roles", "NoHub"), ("governor.service", "Managers")],
    "Control": [("serving", "Service")],
}


def _base_names(node: ast.ClassDef):
    for base in node.bases:
        if isinstance(base, ast.Name):
            yield base.id
        elif isinstance(base, ast.Attribute):
            yield base.attr


@pytest.mark.parametrize("path", [p for p in modules() if RUNTIME in p.parents], ids=rel)
def test_no_class_subclasses_the_service(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    subclasses = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                  and "Service" in set(_base_names(node))]
    assert subclasses == []


@pytest.mark.parametrize("name", ["handlers.py", "governor/service.py"])
def test_request_handlers_do_not_import_a_service_composition_root(name):
    """Handlers get a roles.Control, not the service: they cannot import what builds it
    (governor/service.py holds the governor's handler and may import serving only)."""
    imported = set(imported_names(RUNTIME / name))
    allowed = {"qcgflow.runtime.serving"} if name == "governor/service.py" else set()
    assert imported & SERVICE_MODULES - allowed == set()


def test_request_handler_holds_a_control_not_the_service():
    from qcgflow.runtime.handlers import RequestHandler
    import inspect
    assert list(inspect.signature(RequestHandler).parameters) == ["manager", "control"]


def test_roles_are_protocols():
    import typing
    from qcgflow.runtime import roles
    assert all(typing.Protocol in getattr(roles, role).__mro__ for role in ROLE_PLAYERS)


@pytest.mark.parametrize("role, module, cls",
                         [(role, m, c) for role, players in ROLE_PLAYERS.items()
                          for m, c in players],
                         ids=lambda value: str(value))
def test_role_players_have_every_method_of_their_role(role, module, cls):
    import importlib
    from qcgflow.runtime import roles
    protocol = getattr(roles, role)
    wanted = {name for name in vars(protocol) if not name.startswith("_") or name == "__len__"}
    wanted -= {"_is_protocol", "_is_runtime_protocol"}
    player = getattr(importlib.import_module("qcgflow.runtime." + module), cls)
    assert sorted(name for name in wanted if not callable(getattr(player, name, None))) == []

# Job-state names are defined once (runtime/jobs.py) and imported from runtime.protocol.
STATE_NAMES = {"QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED", "FAILED", "CANCELED", "OMITTED"}


def state_literals(path: pathlib.Path):
    """(line, text) of every string constant in ``path`` that is exactly a job-state name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in STATE_NAMES]


def test_the_state_names_of_protocol_are_the_runtime_enum():
    from qcgflow.runtime import protocol
    from qcgflow.runtime.jobs import JobState
    assert [getattr(protocol, state.name) for state in JobState] == \
        [state.value for state in JobState]


def test_state_literals_finds_a_literal(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('ok = state == "SUCCEED"\ntext = "SUCCEED or not"\n')
    assert state_literals(sample) == [(1, "SUCCEED")]


@pytest.mark.parametrize("path", [p for p in modules() if RUNTIME not in p.parents], ids=rel)
def test_graph_side_imports_state_names_instead_of_writing_them(path):
    assert state_literals(path) == []


# The session's tracker decides; the driver does the I/O (docs/architecture.md).
SESSION_PURE = ["session/tracker.py", "session/events.py", "session/bundles.py"]


@pytest.mark.parametrize("relpath", SESSION_PURE)
def test_the_session_tracker_does_no_io(relpath):
    names = imported_names(PACKAGE / relpath)
    roots = {n.split(".")[0] for n in names}
    assert (roots & IO_MODULES, [n for n in names if n.startswith("qcgflow.runtime.client")]) \
        == (set(), [])


@pytest.mark.parametrize("relpath", SESSION_PURE)
def test_the_session_tracker_reads_no_clock(relpath):
    tree = ast.parse((PACKAGE / relpath).read_text())
    calls = {(node.func.value.id, node.func.attr) for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name)}
    assert calls & CLOCK_CALLS == set()

# --------------------------------------------------------------------------- rule 7
# One way to start a service child: only runtime/client/spawn.py builds a service command
# line (``[python, "-m", MODULE, "service", ...]``); the runtime names no graph-side module
# in its code (docstrings may explain what the graph side does).
SPAWN = "runtime/client/spawn.py"
GRAPH_SIDE = ("qcgflow.cli", "qcgflow.runner", "qcgflow.fill", "qcgflow.graph", "qcgflow.build",
              "qcgflow.session", "qcgflow.workflows", "qcgflow.easyvvuq", "qcgflow.errors")


def _words(node):
    return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def builds_service_command(path: pathlib.Path) -> bool:
    """A list or tuple display holding ``"service"`` with ``"-m"`` or a qcgflow module."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.List, ast.Tuple)):
            words = _words(node)
            if "service" in words and ("-m" in words or any(
                    w.startswith("qcgflow") for w in words)):
                return True
    return False


def _docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                yield body[0].value


def graph_side_names(path: pathlib.Path):
    """String constants of the code (not docstrings) that name a graph-side module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = {id(node) for node in _docstrings(tree)}
    return sorted(node.value for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docs
                  and any(re.search(r"(?<![\w.])%s(?![\w])" % re.escape(name), node.value)
                          for name in GRAPH_SIDE))


def test_only_spawn_builds_a_service_command_line():
    assert [rel(p) for p in modules() if builds_service_command(p)] == [SPAWN]


def test_the_rule_sees_a_service_command_line(tmp_path):
    """The detector itself: the shapes the four old starters used are found."""
    for text in ('cmd = [sys.executable, "-m", "qcgflow.cli", "service", "--net"]\n',
                 'argv = place + [python, "-m", MODULE, "service"]\n',
                 'c = ["qcgflow", "service", "--wd", wd]\n'):
        (tmp_path / "m.py").write_text(text)
        assert builds_service_command(tmp_path / "m.py"), text
    (tmp_path / "m.py").write_text('words = ["run", "-m", "x"]\n')
    assert not builds_service_command(tmp_path / "m.py")


@pytest.mark.parametrize("path", [p for p in modules() if RUNTIME in p.parents], ids=rel)
def test_runtime_names_no_graph_side_module(path):
    assert graph_side_names(path) == []


def test_the_rule_sees_a_graph_side_name(tmp_path):
    (tmp_path / "m.py").write_text('"""Docs may say qcgflow.runner."""\n'
                                   'REUSABLE = {"qcgflow.runner"}\nX = "qcgflow.runtime"\n'
                                   'Y = "-m qcgflow.cli service"\n')
    assert graph_side_names(tmp_path / "m.py") == ["-m qcgflow.cli service", "qcgflow.runner"]
