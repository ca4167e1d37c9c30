"""ResourcePool.disable/enable: nodes taken out of service (lost or not yet ready agents)."""

import pytest

from qcgflow.runtime.resources import CountRange, ResourcePool, ResourceRequest

ONE = ResourceRequest(None, None)


def pool_of(*sizes):
    return ResourcePool([(f"n{i}", range(size)) for i, size in enumerate(sizes)])


def test_disabled_node_gets_no_allocation():
    pool = pool_of(2, 2)
    pool.disable("n0")
    alloc = pool.allocate(ResourceRequest(CountRange(2, 2), None))
    assert alloc.node_names == ("n1",)


def test_disable_holds_free_cores():
    pool = pool_of(2, 2)
    assert pool.disable("n0") == 2
    assert pool.free_cores == 2


def test_invariant_holds_while_disabled():
    pool = pool_of(2, 2)
    pool.disable("n1")
    assert pool.used_cores + pool.free_cores == pool.total_cores


def test_release_on_disabled_node_is_held_not_freed():
    pool = pool_of(2)
    alloc = pool.allocate(ONE)
    pool.disable("n0")
    pool.release(alloc)
    assert pool.free_cores == 0


def test_enable_frees_held_and_released_cores():
    pool = pool_of(2)
    alloc = pool.allocate(ONE)
    pool.disable("n0")
    pool.release(alloc)
    assert pool.enable("n0") == 2


def test_enabled_node_allocates_again():
    pool = pool_of(1, 1)
    pool.disable("n0")
    pool.enable("n0")
    assert pool.allocate(ONE).node_names == ("n0",)


def test_whole_node_request_skips_disabled_node():
    pool = pool_of(2, 2)
    pool.disable("n0")
    assert pool.allocate(ResourceRequest(None, CountRange(2, 2))) is None


def test_double_release_of_held_core_is_detected():
    pool = pool_of(2)
    alloc = pool.allocate(ONE)
    pool.release(alloc)
    pool.disable("n0")
    with pytest.raises(RuntimeError, match="already free"):
        pool.release(alloc)


def test_disable_twice_is_harmless():
    pool = pool_of(2)
    pool.disable("n0")
    assert pool.disable("n0") == 0


def test_is_enabled_reports_state():
    pool = pool_of(1, 1)
    pool.disable("n1")
    assert (pool.is_enabled("n0"), pool.is_enabled("n1")) == (True, False)


def test_unknown_node_raises_key_error():
    with pytest.raises(KeyError):
        pool_of(1).disable("nope")
