"""Graph building: refs and dependencies, deterministic names, cycles, clashes, errors."""

import pickle

import pytest

import qcgflow
from qcgflow.errors import (CycleError, DependencyFailed, GraphError, NameClashError,
                            TaskFailed)
from qcgflow.graph.graph import Graph, TaskRef, find_refs


@qcgflow.task
def f(x):
    return x + 1


@qcgflow.task
def g(*args, **kwargs):
    return args, kwargs


def names(graph):
    return [graph.names[node] for node in graph.order]


def test_bind_makes_a_ref_and_runs_nothing():
    assert type(f.bind(1)) is TaskRef


def test_calling_a_task_runs_the_plain_function():
    assert f(1) == 2


def test_calling_a_task_with_a_ref_says_use_bind():
    with pytest.raises(TypeError, match=r"use f.bind"):
        f(f.bind(1))


@pytest.mark.parametrize("wrap", [
    lambda r: [r], lambda r: (r,), lambda r: {"k": r}, lambda r: {frozenset([r])},
    lambda r: [{"a": (1, [r])}],
], ids=["list", "tuple", "dict", "set", "deep"])
def test_refs_nested_in_containers_are_found(wrap):
    ref = f.bind(1)
    assert list(find_refs(wrap(ref))) == [ref]


def test_predecessors_come_first_in_argument_order():
    a, b = f.bind(1), f.bind(2)
    graph = Graph.build(g.bind(b, k=[a]))
    assert names(graph) == ["f-0", "f-1", "g-0"]


def test_names_are_deterministic_for_equal_graphs():
    def build():
        a = f.bind(1)
        return names(Graph.build([g.bind(a, f.bind(2)), g.bind(a)]))
    assert build() == build()


def test_a_shared_ref_is_one_node():
    a = f.bind(1)
    graph = Graph.build([g.bind(a, a), g.bind(a)])
    assert len(graph) == 3


def test_explicit_name_is_used():
    graph = Graph.build(f.options(name="prepare").bind(1))
    assert names(graph) == ["prepare"]


def test_automatic_names_skip_explicit_ones():
    graph = Graph.build([f.options(name="f-0").bind(1), f.bind(2)])
    assert names(graph) == ["f-0", "f-1"]


def test_two_tasks_with_one_name_clash():
    named = f.options(name="x")
    with pytest.raises(NameClashError, match="'x'.*options\\(name=...\\)"):
        Graph.build([named.bind(1), named.bind(2)])


def test_a_cycle_is_rejected_naming_it():
    a = f.bind(1)
    b = g.bind(a)
    a.node.args = (b,)  # only possible by editing nodes: refs are made from existing refs
    with pytest.raises(CycleError, match="dependency cycle: f -> g -> f"):
        Graph.build(b)


def test_a_long_chain_builds_without_recursion():
    ref = f.bind(0)
    for _ in range(5000):
        ref = f.bind(ref)
    assert len(Graph.build(ref)) == 5001


def test_a_target_without_refs_is_an_error():
    with pytest.raises(GraphError, match="nothing to run"):
        Graph.build([1, 2])


def test_the_networkx_view_has_the_edges():
    a = f.bind(1)
    dag = Graph.build(g.map(f.map([1, 2]), a)).dag
    assert sorted(dag.edges(data="element")) == [("f-0", "g-0", True), ("f-1", "g-0", False)]


@pytest.mark.parametrize("iterable, message", [
    ([], "empty iterable"), ("abc", "needs a list"), ({"a": 1}, "needs a list"),
])
def test_bad_map_iterables(iterable, message):
    with pytest.raises(GraphError, match=message):
        f.map(iterable)


def test_map_over_a_plain_ref_is_an_error():
    with pytest.raises(GraphError, match="not mapped"):
        f.map(f.bind(1))


def test_map_of_a_mapped_ref_keeps_its_length():
    assert g.map(f.map(range(7))).node.iterations == 7


def test_refs_do_not_pickle():
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(f.bind(1))


# --------------------------------------------------------------------------- templates

def test_template_keywords_must_name_placeholders():
    with pytest.raises(GraphError, match=r"no placeholder \$\{y\}.*: x"):
        qcgflow.shell("echo ${x}").bind(y=1)


def test_template_placeholder_cannot_take_a_ref_nested_in_a_value():
    with pytest.raises(GraphError, match=r"\$\{x\} holds a ref inside a list"):
        qcgflow.shell("echo ${x}").bind(x=[f.bind(1)])  # a ref itself is fine (qcgflow.fill)


def test_template_map_elements_must_be_text_or_numbers():
    with pytest.raises(GraphError, match="strings or numbers"):
        qcgflow.shell("echo ${itval}").map([object()])


def test_template_values_escape_dollars():
    ref = qcgflow.shell("echo ${x} ${it} $HOME").bind(x="$5")
    # literal through the runtime's two stages (each turns $$ into $, as upstream)
    assert ref.node.execution == {"script": "echo $$$$5 ${it} $HOME"}


def test_mpi_template_fills_exec_and_args():
    ref = qcgflow.mpi("${bin}/solver", args=["-n", "${n}", "${ncores}"]).bind(bin="/o", n=3)
    assert ref.node.execution == {"exec": "/o/solver", "args": ["-n", "3", "${ncores}"]}


# --------------------------------------------------------------------------- errors

def test_task_failed_as_instanceof_cause_is_both():
    error = TaskFailed("f-0", ValueError("bad"), "Traceback...").as_instanceof_cause()
    assert isinstance(error, ValueError) and isinstance(error, TaskFailed)


def test_task_failed_text_has_the_remote_traceback():
    error = TaskFailed("f-0", KeyError("k"), "Traceback: line 3").as_instanceof_cause()
    assert "remote traceback:\nTraceback: line 3" in str(error)


def test_task_failed_keeps_the_cause_args():
    assert TaskFailed("f-0", KeyError("k")).as_instanceof_cause().args == ("k",)


def test_task_failed_without_cause_is_itself():
    error = TaskFailed("sh-0", messages="exit code 3")
    assert error.as_instanceof_cause() is error


def test_dependency_failed_names_the_root_and_its_error():
    error = DependencyFailed("g-0", "f-0", TaskFailed("f-0", ValueError("bad")))
    assert str(error) == ("task 'g-0' was not run: the task 'f-0' it depends on failed "
                          "(ValueError: bad)")
