"""The layering rules of docs/architecture.md, checked on the source with ``ast``."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qcgflow"
RUNTIME = PACKAGE / "runtime"

# Rule 3: the decision core does no I/O and reads no clock or environment.
DECISION_CORE = ["resources", "jobs", "registry", "iterschedulers", "scheduler", "deps",
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
                        # talking to a service, starting one (client/spawn.py), reading
                        # its jobs.report and finding its directories (client/workdir.py)
                        "qcgflow.runtime.client": {"session/driver.py", "session/localservice.py",
                                                   "session/cache.py", "cli/workflow.py",
                                                   "cli/rerun.py"},
                        # leaf helpers without state: bounded reads of user-named files
                        "qcgflow.runtime.inputfile": None,
                        # is a service alive in a directory (the journal's lock)
                        "qcgflow.runtime.journal": {"cli/workflow.py"}}
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
