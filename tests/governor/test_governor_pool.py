"""GovernorPool: one partition per manager, allocations never span two managers."""

import pytest

from qcgflow.runtime.governor.pool import GovernorPool, manager_of
from qcgflow.runtime.resources import CountRange, ResourceRequest


def cores(n):
    return ResourceRequest(cores=CountRange.exact(n), nodes=None)


def pool_of(**managers):
    pool = GovernorPool()
    for manager_id, nodes in managers.items():
        pool.add(manager_id, nodes)
    return pool


def test_totals_are_sums_over_managers():
    pool = pool_of(m1=[("n1", 2)], m2=[("n1", 2), ("n2", 4)])
    assert (pool.total_nodes, pool.total_cores, pool.free_cores) == (3, 8, 8)


def test_allocation_goes_to_the_manager_with_most_free_cores():
    pool = pool_of(m1=[("n1", 2)], m2=[("n1", 4)])
    assert [manager_of(pool.allocate(cores(1))) for _ in range(4)] == ["m2", "m2", "m1", "m2"]


def test_allocation_never_spans_two_managers():
    pool = pool_of(m1=[("n1", 2)], m2=[("n1", 2)])
    assert pool.allocate(cores(3)) is None
    assert not pool.fits_ever(cores(3))
    assert pool.fits_ever(cores(2))


def test_release_returns_cores_to_their_manager():
    pool = pool_of(m1=[("n1", 2)])
    alloc = pool.allocate(cores(2))
    assert (alloc.describe(), pool.free_cores) == ("m1/n1[0:1]", 0)
    pool.release(alloc)
    assert pool.free_cores == 2


def test_dropped_manager_leaves_the_totals_and_its_release_is_ignored():
    pool = pool_of(m1=[("n1", 2)], m2=[("n1", 2)])
    alloc = pool.allocate(cores(2))
    pool.drop(manager_of(alloc))
    pool.release(alloc)
    assert (pool.total_cores, pool.free_cores) == (2, 2)


@pytest.mark.parametrize("manager_id, message", [
    ("m1", "already registered"), ("a/b", "contains '/'"),
])
def test_bad_manager_ids_are_refused(manager_id, message):
    pool = pool_of(m1=[("n1", 1)])
    with pytest.raises(ValueError, match=message):
        pool.add(manager_id, [("n1", 1)])


def test_empty_pool_fits_nothing():
    assert (GovernorPool().fits_ever(cores(1)), GovernorPool().allocate(cores(1))) == (
        False, None)


def test_queue_depth_dispatches_more_units_but_reports_real_totals():
    pool = GovernorPool(depth=2)
    pool.add("m1", [("n1", 2)])
    for _ in range(4):
        assert pool.allocate(cores(1)) is not None
    assert (pool.allocate(cores(1)), pool.total_cores, pool.used_cores) == (None, 2, 2)
    assert not pool.fits_ever(cores(3))  # the real size decides what can ever run
