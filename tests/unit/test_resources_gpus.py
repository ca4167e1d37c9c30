"""GPUs as bindable consumables: parsing of nodeCrs, allocation, release, scheduling.

Pure tests over the decision core (resources, scheduler, manager) with factory pools.
"""

import itertools

import pytest

from factories import gpu_pool, job_desc, make_manager, spec
from qcgflow.runtime.errors import JobDescriptionError, NotEnoughResources, ResourcesError
from qcgflow.runtime.resources import CountRange, ResourcePool, ResourceRequest


def _range(value):
    if value is None:
        return None
    return CountRange.exact(value) if isinstance(value, int) else CountRange(*value)


def req(cores=None, nodes=None, gpus=0):
    return ResourceRequest(_range(cores), _range(nodes), gpus)


# ----------------------------------------------------------------------- parsing

@pytest.mark.parametrize("crs, gpus", [({"gpu": 2}, 2), ({"GPU": 1}, 1), ({"Gpu": 3}, 3),
                                       (None, 0), ({}, 0)])
def test_node_crs_gpu_parses_case_insensitively(crs, gpus):
    resources = {"numCores": 1}
    if crs is not None:
        resources["nodeCrs"] = crs
    assert spec("a", resources=resources).resources.gpus == gpus


@pytest.mark.parametrize("crs, words", [
    ({"gpu": 0}, "resources.nodeCrs.gpu must be a positive integer"),
    ({"gpu": "2"}, "resources.nodeCrs.gpu must be a positive integer"),
    ({"gpu": True}, "resources.nodeCrs.gpu must be a positive integer"),
    ({"tpu": 1}, "resources.nodeCrs.tpu: unknown consumable resource"),
    ({"gpu": 1, "GPU": 1}, "given twice"),
    ({"mem": 4}, "memory is not a schedulable resource"),
    ([1], "resources.nodeCrs must be a dictionary"),
])
def test_bad_node_crs_is_a_one_line_error_naming_job_and_field(crs, words):
    with pytest.raises(JobDescriptionError) as info:
        spec("sim", resources={"numCores": 1, "nodeCrs": crs})
    message = str(info.value)
    assert message.startswith("Job 'sim': ") and words in message and "\n" not in message


# ----------------------------------------------------------------------- the pool

def test_pool_reports_gpus_and_rejects_bad_ids():
    pool = gpu_pool((2, [3, 1]), (2, []))
    assert (pool.total_gpus, pool.free_gpus, pool.gpus) == (2, 2, {"n0": (1, 3)})
    with pytest.raises(ResourcesError, match="GPU id more than once"):
        ResourcePool([("a", [0], [1, 1])])
    with pytest.raises(ResourcesError, match="invalid GPU id"):
        ResourcePool([("a", [0], [-1])])


def test_gpu_ids_are_distinct_per_allocation_and_lowest_first():
    pool = gpu_pool((4, [0, 1, 2, 3]))
    first = pool.allocate(req(cores=1, gpus=2))
    second = pool.allocate(req(cores=1, gpus=1))
    assert first.parts[0].gpus == (0, 1) and second.parts[0].gpus == (2,)
    assert pool.allocate(req(cores=1, gpus=2)) is None  # only GPU 3 left
    assert pool.free_gpus == 1 and pool.free_cores == 2  # a refusal changes nothing
    pool.release(first)
    third = pool.allocate(req(cores=1, gpus=2))
    assert third.parts[0].gpus == (0, 1)
    assert pool.free_gpus == 1


def test_jobs_without_gpus_never_take_any():
    pool = gpu_pool((2, [0]))
    whole = pool.allocate(req(nodes=1))
    assert whole.parts[0].gpus == () and pool.free_gpus == 1
    pool.release(whole)
    assert pool.free_cores == 2


def test_first_fit_over_cores_and_gpus_together():
    # n0 has cores but no GPU, n1 has a GPU: a GPU job skips n0 even though it is first.
    pool = gpu_pool((2, []), (2, [7]))
    alloc = pool.allocate(req(cores=1, gpus=1))
    assert [(p.node, p.gpus) for p in alloc.parts] == [("n1", (7,))]
    # n1 still has a free core but no free GPU: a second GPU job does not fit anywhere.
    assert pool.allocate(req(cores=1, gpus=1)) is None
    # ... while a plain job still packs onto n0 first.
    assert pool.allocate(req(cores=1)).parts[0].node == "n0"


def test_multi_node_jobs_get_n_gpus_on_each_node_from_that_nodes_ids():
    pool = gpu_pool((2, [0, 1]), (2, [4, 5]), (2, [0]))
    alloc = pool.allocate(req(cores=1, nodes=2, gpus=2))
    assert [(p.node, p.cores, p.gpus) for p in alloc.parts] == [("n0", (0,), (0, 1)),
                                                                  ("n1", (0,), (4, 5))]
    assert alloc.total_gpus == 4
    # numNodes alone: whole free nodes with enough GPUs; n0/n1 are busy, n2 has only 1.
    assert pool.allocate(req(nodes=1, gpus=2)) is None
    whole = pool.allocate(req(nodes=1, gpus=1))
    assert [(p.node, p.cores, p.gpus) for p in whole.parts] == [("n2", (0, 1), (0,))]


def test_cores_on_any_nodes_spread_only_over_gpu_nodes():
    pool = gpu_pool((2, []), (2, [0]), (2, [1, 2]))
    alloc = pool.allocate(req(cores=4, gpus=1))
    assert [(p.node, len(p.cores), p.gpus) for p in alloc.parts] == [("n1", 2, (0,)),
                                                                       ("n2", 2, (1,))]
    assert pool.allocate(req(cores=1, gpus=1)) is None  # GPU 2 is free, n2's cores are not
    pool.release(alloc)
    wide = pool.allocate(req(cores=(1, None), gpus=2))  # "as many cores as free" on n2 only
    assert [(p.node, len(p.cores), p.gpus) for p in wide.parts] == [("n2", 2, (1, 2))]


def test_fits_ever_counts_only_nodes_with_enough_gpus():
    pool = gpu_pool((4, [0]), (2, [0, 1]))
    assert pool.fits_ever(req(cores=1, gpus=2))
    assert not pool.fits_ever(req(cores=3, gpus=2))   # the 2-GPU node has 2 cores
    assert not pool.fits_ever(req(cores=1, gpus=3))
    assert not pool.fits_ever(req(cores=1, nodes=2, gpus=2))
    assert pool.fits_ever(req(cores=1, nodes=2, gpus=1))


def test_release_checks_gpus_and_is_atomic():
    pool = gpu_pool((2, [0, 1]))
    alloc = pool.allocate(req(cores=1, gpus=1))
    pool.release(alloc)
    with pytest.raises(RuntimeError, match="already free"):
        pool.release(alloc)
    assert (pool.free_cores, pool.free_gpus) == (2, 2)


def test_disabled_node_gpus_are_not_free_and_not_given():
    pool = gpu_pool((2, [0]), (2, [1]))
    pool.disable("n0")
    assert pool.free_gpus == 1
    assert pool.allocate(req(cores=1, gpus=1)).parts[0].node == "n1"
    assert pool.allocate(req(cores=1, gpus=1)) is None
    pool.enable("n0")
    assert pool.allocate(req(cores=1, gpus=1)).parts[0].gpus == (0,)


# ----------------------------------------------------------------------- the manager

def gpu_job(name, gpus, **resources):
    return job_desc(name, resources=dict({"numCores": 1, "nodeCrs": {"gpu": gpus}}, **resources))


def test_overlapping_jobs_never_share_a_gpu_and_queue_for_them():
    harness = make_manager(nodes=(("n0", range(8), (0, 1, 2)),))
    harness.submit(*[gpu_job("g%d" % i, 1) for i in range(5)])
    running = harness.running()
    assert len(running) == 3  # 8 cores but 3 GPUs
    ids = [alloc.parts[0].gpus for _, _, alloc in running]
    assert sorted(itertools.chain(*ids)) == [0, 1, 2]
    harness.finish("g1")
    assert harness.running_names() == ["g0", "g2", "g3"]
    held = [alloc.parts[0].gpus for job, _, alloc in harness.running()]
    assert len(set(itertools.chain(*held))) == 3
    harness.drain()
    assert harness.pool.free_gpus == 3


def test_gpu_job_waiting_does_not_block_plain_jobs_first_fit():
    harness = make_manager(nodes=(("n0", range(4), (0,)),))
    harness.submit(gpu_job("g0", 1), gpu_job("g1", 1), job_desc("plain"))
    assert harness.running_names() == ["g0", "plain"]


def test_iterative_gpu_job_with_an_iteration_scheduler():
    harness = make_manager(nodes=(("n0", range(4), (0, 1)), ("n1", range(4), (0, 1))))
    desc = job_desc("it", iteration={"stop": 6},
                    resources={"numCores": {"min": 1, "scheduler": {"name": "maximum-iters"}},
                               "nodeCrs": {"gpu": 1}})
    harness.submit(desc)
    running = harness.running()
    assert len(running) == 4  # four GPUs over two nodes
    pairs = [(alloc.parts[0].node, g) for _, _, alloc in running for g in alloc.parts[0].gpus]
    assert len(set(pairs)) == 4
    harness.drain()
    assert harness.state("it").value == "SUCCEED"


def test_over_ask_is_refused_at_submit_naming_job_and_field():
    harness = make_manager(nodes=(("n0", range(4), (0, 1)), ("n1", range(4), ())))
    with pytest.raises(NotEnoughResources) as info:
        harness.submit(gpu_job("big", 3))
    message = str(info.value)
    assert "big" in message and "resources.nodeCrs.gpu" in message and "more than 2" in message
    with pytest.raises(NotEnoughResources, match="too few nodes"):
        harness.submit(gpu_job("wide", 1, numNodes=2))
    assert harness.registry.get("big") is None


def test_resources_info_and_status_report_total_used_and_free_gpus():
    from qcgflow.runtime.handlers import _status_resources, resources_data
    pool = gpu_pool((2, [0, 1]), (2, [4]))
    pool.allocate(req(cores=1, gpus=2))
    info = resources_data(pool)
    assert (info["total_gpus"], info["used_gpus"], info["free_gpus"]) == (3, 2, 1)
    assert info["gpus"] == {"n0": [0, 1], "n1": [4]}
    status = _status_resources(pool)
    assert (status["TotalGPUs"], status["UsedGPUs"], status["FreeGPUs"]) == (3, 2, 1)
    plain = gpu_pool((2, []))
    assert "total_gpus" not in resources_data(plain) and "TotalGPUs" not in _status_resources(plain)
