"""Unit tests of qcgflow.runtime.resources: requests, allocations and the pool."""

import random

import pytest

from qcgflow.runtime.errors import ResourcesError
from qcgflow.runtime.resources import (
    Allocation,
    CountRange,
    NodeAllocation,
    ResourcePool,
    ResourceRequest,
)


def pool_of(*sizes):
    """A pool of nodes n0, n1, ... with the given core counts (core ids 0..k-1)."""
    return ResourcePool([(f"n{i}", range(size)) for i, size in enumerate(sizes)])


def cores(lo, hi="same"):
    return ResourceRequest(CountRange(lo, lo if hi == "same" else hi), None)


def nodes(lo, hi="same", per_node=None):
    return ResourceRequest(per_node, CountRange(lo, lo if hi == "same" else hi))


ONE_CORE = ResourceRequest(None, None)


def check_invariants(pool, live):
    """used+free == total, live allocations disjoint and all accounted as used."""
    assert pool.used_cores + pool.free_cores == pool.total_cores
    handed = [(p.node, c) for a in live for p in a.parts for c in p.cores]
    assert len(handed) == len(set(handed)), "a core was handed out twice"
    assert len(handed) == pool.used_cores


# -- CountRange / data classes ---------------------------------------------------------

@pytest.mark.parametrize("lo, hi", [(0, None), (-1, 3), (3, 2), (True, None), (1.0, None), (2, 1.5)])
def test_count_range_rejects_bad_bounds(lo, hi):
    with pytest.raises(ValueError):
        CountRange(lo, hi)


def test_count_range_exact_helper():
    assert CountRange.exact(3) == CountRange(3, 3)


@pytest.mark.parametrize("parts, text, total, names", [
    ((NodeAllocation("n0", (0, 1)), NodeAllocation("n1", (0,))), "n0[0:1],n1[0]", 3, ("n0", "n1")),
    ((NodeAllocation("host", (5,)),), "host[5]", 1, ("host",)),
    ((NodeAllocation("a", (0, 1, 2, 3)),), "a[0:1:2:3]", 4, ("a",)),
])
def test_allocation_describe_total_and_names(parts, text, total, names):
    alloc = Allocation(parts)
    assert alloc.describe() == text
    assert alloc.total_cores == total
    assert alloc.node_names == names


# -- construction ------------------------------------------------------------------------

def test_pool_counts_and_nodes_view():
    pool = ResourcePool([("a", [3, 1, 2]), ("b", (0,))])
    assert (pool.total_nodes, pool.total_cores, pool.used_cores, pool.free_cores) == (2, 4, 0, 4)
    assert pool.nodes == (("a", (1, 2, 3)), ("b", (0,)))


@pytest.mark.parametrize("spec, message", [
    ([("a", [0]), ("a", [0])], "Duplicate node name 'a' in the resource configuration"),
    ([("a", [])], "Node 'a' has no cores"),
    ([], "The resource configuration has no nodes"),
    ([("a", [0, 0])], "Node 'a' lists a core id more than once"),
    ([("a", [-1])], "Node 'a' has an invalid core id -1"),
    ([("a", ["0"])], "Node 'a' has an invalid core id '0'"),
])
def test_pool_rejects_bad_configuration(spec, message):
    with pytest.raises(ResourcesError) as info:
        ResourcePool(spec)
    assert str(info.value) == message


# -- cores on any nodes ------------------------------------------------------------------

def test_default_request_is_one_core_on_first_node():
    pool = pool_of(2, 2)
    assert pool.allocate(ONE_CORE).describe() == "n0[0]"


def test_single_core_jobs_pack_first_node_then_next():
    pool = pool_of(2, 2)
    got = [pool.allocate(ONE_CORE).describe() for _ in range(4)]
    assert got == ["n0[0]", "n0[1]", "n1[0]", "n1[1]"]
    assert pool.allocate(ONE_CORE) is None


def test_single_core_reuses_lowest_freed_core():
    pool = pool_of(3, 3)
    allocs = [pool.allocate(ONE_CORE) for _ in range(5)]
    pool.release(allocs[1])  # n0[1]
    pool.release(allocs[3])  # n1[0]
    assert pool.allocate(ONE_CORE).describe() == "n0[1]"
    assert pool.allocate(ONE_CORE).describe() == "n1[0]"


@pytest.mark.parametrize("sizes, req, expected", [
    ((4,), cores(3), "n0[0:1:2]"),
    ((2, 2), cores(3), "n0[0:1],n1[0]"),
    ((2, 2), cores(4), "n0[0:1],n1[0:1]"),
    ((1, 1, 1), cores(2), "n0[0],n1[0]"),
    ((2, 2), cores(1, None), "n0[0:1],n1[0:1]"),       # min only: as many as free
    ((2, 2), cores(1, 3), "n0[0:1],n1[0]"),            # capped at max
    ((2, 2), cores(4, 10), "n0[0:1],n1[0:1]"),         # max above free: all free
])
def test_cores_on_any_nodes(sizes, req, expected):
    assert pool_of(*sizes).allocate(req).describe() == expected


def test_cores_range_takes_what_is_free_when_at_least_min():
    pool = pool_of(4)
    pool.allocate(cores(3))
    alloc = pool.allocate(cores(1, 4))
    assert alloc.describe() == "n0[3]"


def test_cores_range_below_min_free_is_none_and_pool_unchanged():
    pool = pool_of(4)
    pool.allocate(cores(3))
    assert pool.allocate(cores(2, 4)) is None
    assert (pool.used_cores, pool.free_cores) == (3, 1)


def test_cores_skip_full_nodes():
    pool = pool_of(2, 2, 2)
    pool.allocate(cores(2))  # fills n0
    assert pool.allocate(cores(3)).describe() == "n1[0:1],n2[0]"


# -- nodes with cores per node -----------------------------------------------------------

@pytest.mark.parametrize("sizes, req, expected", [
    ((4, 4), nodes(2, per_node=CountRange(2, 2)), "n0[0:1],n1[0:1]"),
    ((4, 4, 4), nodes(2, per_node=CountRange(3, 3)), "n0[0:1:2],n1[0:1:2]"),
    ((4, 4), nodes(1, per_node=CountRange(2, None)), "n0[0:1:2:3]"),      # per node: all free
    ((4, 4), nodes(1, per_node=CountRange(2, 3)), "n0[0:1:2]"),            # per node: capped
    ((4, 4, 4), nodes(1, None, per_node=CountRange(1, 1)), "n0[0],n1[0],n2[0]"),  # as many nodes
    ((4, 4, 4), nodes(1, 2, per_node=CountRange(1, 1)), "n0[0],n1[0]"),    # nodes capped
    ((2, 4, 4), nodes(2, per_node=CountRange(3, 3)), "n1[0:1:2],n2[0:1:2]"),  # n0 too small
])
def test_nodes_with_cores_per_node(sizes, req, expected):
    assert pool_of(*sizes).allocate(req).describe() == expected


def test_nodes_with_cores_skips_nodes_without_enough_free():
    pool = pool_of(4, 4, 4)
    pool.allocate(cores(3))  # n0 keeps 1 free
    alloc = pool.allocate(nodes(2, per_node=CountRange(2, 2)))
    assert alloc.describe() == "n1[0:1],n2[0:1]"


def test_nodes_with_cores_gives_free_amount_within_range():
    pool = pool_of(4, 4)
    pool.allocate(cores(2))  # n0 has 2 free
    alloc = pool.allocate(nodes(2, per_node=CountRange(2, 4)))
    assert alloc.describe() == "n0[2:3],n1[0:1:2:3]"


def test_nodes_with_cores_too_few_qualifying_is_none():
    pool = pool_of(4, 4)
    pool.allocate(cores(3))
    assert pool.allocate(nodes(2, per_node=CountRange(2, 2))) is None
    assert pool.used_cores == 3


# -- whole nodes ---------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, req, expected", [
    ((2, 3), nodes(1), "n0[0:1]"),
    ((2, 3), nodes(2), "n0[0:1],n1[0:1:2]"),
    ((2, 3, 1), nodes(1, None), "n0[0:1],n1[0:1:2],n2[0]"),
    ((2, 3, 1), nodes(1, 2), "n0[0:1],n1[0:1:2]"),
])
def test_whole_nodes(sizes, req, expected):
    assert pool_of(*sizes).allocate(req).describe() == expected


def test_whole_nodes_skip_partly_used_nodes():
    pool = pool_of(2, 2, 2)
    pool.allocate(ONE_CORE)
    assert pool.allocate(nodes(2)).describe() == "n1[0:1],n2[0:1]"
    assert pool.allocate(nodes(1)) is None


def test_whole_nodes_not_enough_free_nodes_is_none():
    pool = pool_of(2, 2)
    pool.allocate(ONE_CORE)
    assert pool.allocate(nodes(2)) is None
    assert pool.used_cores == 1


# -- fits_ever -----------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, req, fits", [
    ((2,), cores(8), False),
    ((2,), cores(2), True),
    ((1,), nodes(2), False),
    ((1, 1), nodes(2), True),
    ((2,), cores(4, None), False),
    ((2,), cores(2, 100), True),
    ((2, 2), nodes(1, per_node=CountRange(3, 3)), False),
    ((2, 3), nodes(1, per_node=CountRange(3, 3)), True),
    ((3, 3), nodes(2, per_node=CountRange(3, None)), True),
    ((3, 2), nodes(2, per_node=CountRange(3, None)), False),
    ((1,), ONE_CORE, True),
])
def test_fits_ever(sizes, req, fits):
    assert pool_of(*sizes).fits_ever(req) is fits


def test_fits_ever_ignores_current_usage():
    pool = pool_of(2)
    pool.allocate(cores(2))
    assert pool.fits_ever(cores(2)) is True
    assert pool.allocate(cores(2)) is None


# -- release -------------------------------------------------------------------------------

def test_release_restores_counts_and_cores():
    pool = pool_of(2, 2)
    alloc = pool.allocate(cores(3))
    pool.release(alloc)
    assert (pool.used_cores, pool.free_cores) == (0, 4)
    assert pool.allocate(cores(4)).describe() == "n0[0:1],n1[0:1]"


def test_release_twice_raises_runtime_error():
    pool = pool_of(2)
    alloc = pool.allocate(ONE_CORE)
    pool.release(alloc)
    with pytest.raises(RuntimeError, match="already free"):
        pool.release(alloc)
    assert pool.free_cores == 2


@pytest.mark.parametrize("bad, match", [
    (Allocation((NodeAllocation("zz", (0,)),)), "unknown node 'zz'"),
    (Allocation((NodeAllocation("n0", (7,)),)), "unknown core 7"),
    (Allocation((NodeAllocation("n0", (0, 0)),)), "more than once"),
    (Allocation((NodeAllocation("n0", (0,)), NodeAllocation("n0", (1,)))), "more than once"),
])
def test_release_invalid_allocation_raises(bad, match):
    pool = pool_of(2)
    pool.allocate(cores(2))
    with pytest.raises(RuntimeError, match=match):
        pool.release(bad)


def test_failed_release_changes_nothing():
    pool = pool_of(2, 2)
    pool.allocate(cores(4))
    half_bad = Allocation((NodeAllocation("n0", (0,)), NodeAllocation("n1", (9,))))
    with pytest.raises(RuntimeError):
        pool.release(half_bad)
    assert pool.free_cores == 0
    assert pool.allocate(ONE_CORE) is None


def test_full_then_release_many_single_cores():
    pool = pool_of(3, 3, 3)
    live = [pool.allocate(ONE_CORE) for _ in range(9)]
    assert pool.allocate(ONE_CORE) is None
    check_invariants(pool, live)
    for alloc in live[::2]:
        pool.release(alloc)
    live = live[1::2]
    check_invariants(pool, live)
    again = [pool.allocate(ONE_CORE) for _ in range(5)]
    assert all(a is not None for a in again)
    check_invariants(pool, live + again)
    assert pool.free_cores == 0


# -- property-style random walk ------------------------------------------------------------

def random_request(rnd):
    kind = rnd.randrange(4)
    lo = rnd.randint(1, 4)
    hi = rnd.choice([lo, lo + rnd.randint(0, 3), None])
    if kind == 0:
        return ONE_CORE
    if kind == 1:
        return ResourceRequest(CountRange(lo, hi), None)
    nlo = rnd.randint(1, 3)
    nhi = rnd.choice([nlo, nlo + 1, None])
    if kind == 2:
        return ResourceRequest(CountRange(lo, hi), CountRange(nlo, nhi))
    return ResourceRequest(None, CountRange(nlo, nhi))


def check_allocation_matches(pool_nodes, req, alloc):
    """The allocation respects the request's ranges and the nodes' cores."""
    sizes = dict(pool_nodes)
    for part in alloc.parts:
        assert list(part.cores) == sorted(set(part.cores)) and part.cores
        assert set(part.cores) <= set(sizes[part.node])
    if req.nodes is None:
        lo, hi = (1, 1) if req.cores is None else (req.cores.min, req.cores.max)
        assert alloc.total_cores >= lo and (hi is None or alloc.total_cores <= hi)
        return
    assert len(alloc.parts) >= req.nodes.min
    assert req.nodes.max is None or len(alloc.parts) <= req.nodes.max
    for part in alloc.parts:
        if req.cores is None:
            assert len(part.cores) == len(sizes[part.node])
        else:
            assert len(part.cores) >= req.cores.min
            assert req.cores.max is None or len(part.cores) <= req.cores.max


@pytest.mark.parametrize("seed", range(5))
def test_random_allocate_release_keeps_invariants(seed):
    rnd = random.Random(seed)
    sizes = [rnd.randint(1, 6) for _ in range(rnd.randint(1, 6))]
    pool = pool_of(*sizes)
    live = []
    for _ in range(600):
        if live and rnd.random() < 0.45:
            pool.release(live.pop(rnd.randrange(len(live))))
        else:
            req = random_request(rnd)
            free_before = pool.free_cores
            alloc = pool.allocate(req)
            if alloc is None:
                assert pool.free_cores == free_before  # never partial
            else:
                assert pool.fits_ever(req)
                check_allocation_matches(pool.nodes, req, alloc)
                live.append(alloc)
        check_invariants(pool, live)
    for alloc in live:
        pool.release(alloc)
    assert pool.free_cores == pool.total_cores == sum(sizes)
    assert pool.allocate(ResourceRequest(None, CountRange(len(sizes), len(sizes)))) is not None


@pytest.mark.parametrize("seed", range(3))
def test_random_fits_ever_agrees_with_empty_pool(seed):
    rnd = random.Random(1000 + seed)
    for _ in range(200):
        sizes = [rnd.randint(1, 5) for _ in range(rnd.randint(1, 4))]
        req = random_request(rnd)
        empty = pool_of(*sizes)
        assert empty.fits_ever(req) is (empty.allocate(req) is not None)


# ----------------------------------------------------------------------------- packing

def test_cores_without_nodes_go_to_one_node_with_room_not_across_two():
    """n0 has one free core: a 2-core request takes the free n1 whole instead of spanning
    n0[1],n1[0] (upstream's linear fill), as an MPI ensemble member wants."""
    pool = pool_of(2, 2, 2)
    pool.allocate(ONE_CORE)
    assert pool.allocate(cores(2)).describe() == "n1[0:1]"
    assert pool.allocate(cores(1)).describe() == "n0[1]"  # the hole is left for small jobs


def test_cores_without_nodes_use_the_fewest_nodes_when_none_has_room():
    pool = pool_of(4, 4, 4, 4)
    singles = [pool.allocate(ONE_CORE) for _ in range(16)]
    # Free 1 core of n0, 2 of n1, 3 of n2 (cores 1-3) and all 4 of n3.
    for index in (3, 6, 7, 9, 10, 11, 12, 13, 14, 15):
        pool.release(singles[index])
    live = [a for i, a in enumerate(singles) if i not in (3, 6, 7, 9, 10, 11, 12, 13, 14, 15)]
    got = pool.allocate(cores(7))
    # Two nodes (the most free cores), not four as a linear fill from n0 would take.
    assert got.describe() == "n2[1:2:3],n3[0:1:2:3]"
    check_invariants(pool, live + [got])


def test_packing_keeps_first_fit_for_single_cores_and_whole_pool_requests():
    pool = pool_of(2, 2)
    assert [pool.allocate(ONE_CORE).describe() for _ in range(3)] == ["n0[0]", "n0[1]", "n1[0]"]
    fresh = pool_of(2, 3)
    assert fresh.allocate(cores(5)).describe() == "n0[0:1],n1[0:1:2]"


def test_packed_allocation_of_a_range_takes_what_is_free():
    pool = pool_of(2, 4)
    pool.allocate(ONE_CORE)
    assert pool.allocate(cores(2, 4)).describe() == "n1[0:1:2:3]"


def test_one_core_requests_choose_as_the_general_path_and_reuse_their_allocations():
    import random
    from qcgflow.runtime.resources import CountRange as _Range, ResourceRequest as _Request
    one = _Request(cores=_Range(1, 1), nodes=None)
    fast = ResourcePool([("a", (0, 1, 2)), ("b", (5, 7)), ("c", (1,))])
    slow = ResourcePool([("a", (0, 1, 2)), ("b", (5, 7)), ("c", (1,))])
    rng = random.Random(3)
    live_fast, live_slow, seen = [], [], {}
    for _ in range(400):
        if live_fast and (rng.random() < 0.45 or fast.free_cores == 0):
            i = rng.randrange(len(live_fast))
            fast.release(live_fast.pop(i))
            slow.release(live_slow.pop(i))
        else:
            got, expected = fast.allocate(one), slow._take_any(1, 1)
            assert got.describe() == expected.describe() and got == expected
            # the same core always comes back as the same object
            assert seen.setdefault(got.describe(), got) is got
            live_fast.append(got)
            live_slow.append(expected)
        assert fast.free_cores == slow.free_cores
    for allocation in live_fast:
        fast.release(allocation)
    with pytest.raises(RuntimeError, match="already free"):
        fast.release(live_fast[0])  # released twice: named, as on the general path
    assert fast.free_cores == fast.total_cores
