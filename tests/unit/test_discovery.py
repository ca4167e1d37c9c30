"""Unit tests of qcgflow.runtime.discovery (local resources)."""

import pytest

from qcgflow.runtime.discovery import local_nodes, parse_nodes_spec
from qcgflow.runtime.errors import ResourcesError
from qcgflow.runtime.resources import ResourcePool


@pytest.mark.parametrize("spec, expected", [
    ("4", [("n0", 4)]),
    ("n1:2", [("n1", 2)]),
    ("4,2,2", [("n0", 4), ("n1", 2), ("n2", 2)]),
    ("a:8,b:8", [("a", 8), ("b", 8)]),
    ("n1:4, n2:4, n3:4", [("n1", 4), ("n2", 4), ("n3", 4)]),
    ("  4 ,  2 ", [("n0", 4), ("n1", 2)]),
    ("4,b:2,2", [("n0", 4), ("b", 2), ("n2", 2)]),    # unnamed: named after position
    ("node-01.cluster:16", [("node-01.cluster", 16)]),
    ("a : 3", [("a", 3)]),
    ("007", [("n0", 7)]),
])
def test_parse_nodes_spec(spec, expected):
    assert parse_nodes_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "Invalid --nodes value '': no nodes given (expected [NAME:]CORES[:gpus=IDS][,[NAME:]CORES[:gpus=IDS]]...)"),
    ("   ", "Invalid --nodes value '   ': no nodes given (expected [NAME:]CORES[:gpus=IDS][,[NAME:]CORES[:gpus=IDS]]...)"),
    ("4,,2", "Invalid --nodes value '4,,2': entry 2 is empty (expected [NAME:]CORES[:gpus=IDS][,[NAME:]CORES[:gpus=IDS]]...)"),
    ("4,", "Invalid --nodes value '4,': entry 2 is empty (expected [NAME:]CORES[:gpus=IDS][,[NAME:]CORES[:gpus=IDS]]...)"),
    ("x:y", "Invalid --nodes value 'x:y': core count must be a positive integer"),
    ("n1:0", "Invalid --nodes value 'n1:0': core count must be a positive integer"),
    ("0", "Invalid --nodes value '0': core count must be a positive integer"),
    ("4,-2", "Invalid --nodes value '-2': core count must be a positive integer"),
    ("n1:", "Invalid --nodes value 'n1:': core count must be a positive integer"),
    ("n1:2.5", "Invalid --nodes value 'n1:2.5': core count must be a positive integer"),
    ("n1:\u00b2", "Invalid --nodes value 'n1:\u00b2': core count must be a positive integer"),
    ("abc", "Invalid --nodes value 'abc': core count must be a positive integer"),
    (":4", "Invalid --nodes value ':4': node name is empty"),
    ("n1:2,n1:4", "Invalid --nodes value 'n1:4': duplicate node name 'n1'"),
    ("2,n0:4", "Invalid --nodes value 'n0:4': duplicate node name 'n0'"),
    ("n1:2, 2", "Invalid --nodes value '2': duplicate node name 'n1'"),
    ("a b:2", "Invalid --nodes value 'a b:2': node name must not contain spaces or any of , : [ ]"),
    ("a:b:2", "Invalid --nodes value 'a:b:2': node name must not contain spaces or any of , : [ ]"),
    ("a[1]:2", "Invalid --nodes value 'a[1]:2': node name must not contain spaces or any of , : [ ]"),
])
def test_parse_nodes_spec_errors(spec, message):
    with pytest.raises(ResourcesError) as info:
        parse_nodes_spec(spec)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


# -- local_nodes ----------------------------------------------------------------------------------

def test_local_nodes_default_is_the_host():
    assert local_nodes(None, system_core=False, hostname="box", cpu_count=3) == [("box", [0, 1, 2])]


def test_local_nodes_from_spec():
    got = local_nodes("4,b:2", system_core=False, hostname="box", cpu_count=64)
    assert got == [("n0", [0, 1, 2, 3]), ("b", [0, 1])]


@pytest.mark.parametrize("spec, cpu_count, expected", [
    (None, 4, [("box", [1, 2, 3])]),
    ("2,2", 1, [("n0", [1]), ("n1", [0, 1])]),
    ("1,2", 1, [("n1", [0, 1])]),              # first node emptied: dropped
    ("a:2", 1, [("a", [1])]),
])
def test_local_nodes_system_core_reserves_core_0_of_first_node(spec, cpu_count, expected):
    assert local_nodes(spec, system_core=True, hostname="box", cpu_count=cpu_count) == expected


@pytest.mark.parametrize("spec, cpu_count, message", [
    (None, 1, "--system-core needs at least 2 cores (one is kept for the manager), "
              "but the local host provides only 1"),
    ("1", 8, "--system-core needs at least 2 cores (one is kept for the manager), "
             "but --nodes '1' provides only 1"),
])
def test_local_nodes_system_core_needs_two_cores(spec, cpu_count, message):
    with pytest.raises(ResourcesError) as info:
        local_nodes(spec, system_core=True, hostname="box", cpu_count=cpu_count)
    assert str(info.value) == message


@pytest.mark.parametrize("hostname, cpu_count, message", [
    ("box", 0, "Cannot use host 'box' as a node: no CPU cores were detected (use --nodes)"),
    ("", 4, "Cannot use the local host as a node: its host name is empty"),
])
def test_local_nodes_bad_host_facts(hostname, cpu_count, message):
    with pytest.raises(ResourcesError) as info:
        local_nodes(None, system_core=False, hostname=hostname, cpu_count=cpu_count)
    assert str(info.value) == message


def test_local_nodes_invalid_spec_propagates():
    with pytest.raises(ResourcesError, match="Invalid --nodes value 'x:y'"):
        local_nodes("x:y", system_core=False, hostname="box", cpu_count=4)


def test_local_nodes_spec_ignores_host_facts():
    assert local_nodes("2", system_core=False, hostname="", cpu_count=0) == [("n0", [0, 1])]


@pytest.mark.parametrize("spec, system_core", [("4,2,2", False), ("1,3", True), (None, True)])
def test_local_nodes_feed_a_resource_pool(spec, system_core):
    nodes = local_nodes(spec, system_core=system_core, hostname="box", cpu_count=4)
    pool = ResourcePool(nodes)
    assert pool.total_cores == sum(len(cores) for _, cores in nodes)
