"""Content keys (qcgflow.graph.keys): what changes a key and what does not; the same key in
separate processes. Pure: no service."""

import subprocess
import sys
import textwrap
import threading

import pytest

import qcgflow
from qcgflow.graph.graph import Graph
from qcgflow.graph.keys import graph_keys

from graphresume_harness import child_env


@qcgflow.task
def f(x, *rest, **kw):
    return x


@qcgflow.task
def g(x, *rest, **kw):
    return x


def keys_of(target):
    graph = Graph.build(target)
    return {graph.names[node]: keys for node, keys in graph_keys(graph.order).items()}


def key(ref):
    return keys_of(ref)[Graph.build(ref).names[ref.node]].key


@pytest.mark.parametrize("a, b", [
    (lambda: f.bind(1), lambda: f.bind(1)),
    (lambda: f.bind({"x", "y", "z"}), lambda: f.bind({"z", "y", "x"})),
    (lambda: f.bind(1, k=[1, 2.5, None, b"x"]), lambda: f.bind(1, k=[1, 2.5, None, b"x"])),
    (lambda: f.options(name="other", retries=2).bind(1), lambda: f.bind(1)),
    (lambda: g.bind(f.bind(1)), lambda: g.bind(f.options(name="renamed").bind(1))),
], ids=["same-call", "set-order", "nested-values", "name-and-retries-ignored",
        "producer-renamed"])
def test_equal_keys(a, b):
    assert key(a()) == key(b())


@pytest.mark.parametrize("a, b", [
    (lambda: f.bind(1), lambda: f.bind(2)),
    (lambda: f.bind(1), lambda: f.bind(1.0)),
    (lambda: f.bind(1), lambda: f.bind(True)),
    (lambda: f.bind(1), lambda: g.bind(1)),
    (lambda: f.bind((1, 2)), lambda: f.bind([1, 2])),
    (lambda: f.bind(1), lambda: f.options(cores=2).bind(1)),
    (lambda: f.bind(1, k=1), lambda: f.bind(1, j=1)),
    (lambda: g.bind(f.bind(1)), lambda: g.bind(f.bind(2))),
    (lambda: g.bind(f.map([1, 2])), lambda: g.bind(f.map([1, 3]))),
    (lambda: qcgflow.shell("echo ${a}").bind(a=1), lambda: qcgflow.shell("echo ${a}").bind(a=2)),
    (lambda: qcgflow.shell("echo").bind(after=[f.bind(1)]),
     lambda: qcgflow.shell("echo").bind(after=[f.bind(2)])),
], ids=["argument", "int-vs-float", "int-vs-bool", "function", "tuple-vs-list", "option",
        "keyword-name", "upstream-argument", "fan-in-element", "command-value",
        "command-after"])
def test_different_keys(a, b):
    assert key(a()) != key(b())


def make(k):
    @qcgflow.task
    def scaled(x):
        return x * k
    return scaled


def test_closure_values_are_part_of_the_key():
    assert key(make(2).bind(1)) != key(make(3).bind(1))


def test_function_without_source_is_keyed_by_its_code():
    space = {}
    exec("def h(x):\n    return x + 1\n", space)
    exec("def h2(x):\n    return x + 2\n", space)
    plus_one, plus_two = qcgflow.task(space["h"]), qcgflow.task(space["h2"])
    assert key(plus_one.bind(1)) != key(plus_two.bind(1))


def test_python_iterations_are_keyed_by_element_not_position():
    first = keys_of(f.map([1, 2]))["f-0"].iterations
    second = keys_of(f.map([0, 1]))["f-0"].iterations
    assert first[0] == second[1]


def test_command_iterations_are_keyed_by_position_too():
    echo = qcgflow.shell("echo ${itval} > out_${it}")
    first = keys_of(echo.map([1, 2]))["shell-0"].iterations
    second = keys_of(echo.map([0, 1]))["shell-0"].iterations
    assert first[0] != second[1]


def test_element_wise_map_follows_the_producer_iterations():
    produced = f.map([1, 2, 3])
    keys = keys_of(g.map(produced))
    assert len(set(keys["g-0"].iterations)) == 3


def test_cache_false_has_no_key_and_neither_do_its_dependants():
    keys = keys_of(g.bind(f.options(cache=False).bind(1)))
    assert (keys["f-0"].key, keys["g-0"].key) == (None, None)


def test_unpicklable_argument_has_no_key():
    assert key(f.bind(threading.Lock())) is None


def test_cache_option_must_be_a_bool():
    with pytest.raises(qcgflow.TaskOptionError, match="use True or False"):
        f.options(cache="no")


SCRIPT = textwrap.dedent("""
    import qcgflow
    from qcgflow.graph.graph import Graph
    from qcgflow.graph.keys import graph_keys

    LIMIT = frozenset({"a", "b", "c"})

    @qcgflow.task
    def f(x, **kw):
        return x in LIMIT or x in {"p", "q", "r"}

    @qcgflow.task
    def g(*values):
        return values

    mapped = f.map(["a", "z"], opts={"s": {"x", "y", "z"}, "t": ("u", 1.5)})
    target = g.bind(f.bind({"k", "l", "m"}), g.map(mapped), mapped)
    graph = Graph.build(target)
    for node, keys in graph_keys(graph.order).items():
        print(graph.names[node], keys.key, keys.iterations)
""")


def test_same_keys_in_separate_processes(tmp_path):
    (tmp_path / "keys.py").write_text(SCRIPT)
    outputs = []
    for seed in ("1", "2"):  # str hashes (set order) differ between these processes
        done = subprocess.run([sys.executable, "keys.py"], cwd=str(tmp_path), timeout=60,
                              env=child_env({"PYTHONHASHSEED": seed}), capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert [line.split()[1] for line in outputs[0].splitlines()].count("None") == 0


def recursive_task():
    @qcgflow.task
    def countdown(n):
        return 0 if n == 0 else countdown(n - 1)  # itself, through the closure
    return countdown


def test_task_calling_itself_through_its_closure_is_keyed():
    assert key(recursive_task().bind(3)) is not None
