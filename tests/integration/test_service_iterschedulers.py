"""Iteration resource schedulers (COMPAT.md "Iteration resource schedulers")."""

import pytest

from support.jobs import submit
from support.services import run_service


def _iterative(count, scheduler, minimum=1, **extra):
    cores = {"min": minimum, "scheduler": scheduler}
    cores.update(extra)
    return {"name": "it", "iteration": {"stop": count},
            "execution": {"exec": "echo", "args": ["${ncores}"], "stdout": "out_${it}"},
            "resources": {"numCores": cores}}


def _ncores(result, count):
    assert result.state("it") == "SUCCEED", result.describe()
    return [int(result.read("out_%d" % i)) for i in range(count)]


def test_split_into_two_parts(tmp_path):
    result = run_service(tmp_path, [submit(_iterative(
        4, {"name": "split-into", "params": {"parts": 2}}))], nodes="4", timeout=20)
    assert _ncores(result, 4) == [2, 2, 2, 2]


def test_split_into_default_parts_is_the_iteration_count(tmp_path):
    result = run_service(tmp_path, [submit(_iterative(2, {"name": "split-into"}))], nodes="4",
                         timeout=20)
    assert _ncores(result, 2) == [2, 2]


@pytest.mark.parametrize("iterations, cores, expected", [
    (3, 4, [1, 1, 2]),
    (3, 10, [3, 3, 4]),
    (3, 11, [3, 4, 4]),
    (5, 10, [2] * 5),
    (20, 10, [1] * 20),
])
def test_maximum_iters(tmp_path, iterations, cores, expected):
    result = run_service(tmp_path, [submit(_iterative(iterations, {"name": "maximum-iters"}))],
                         nodes=str(cores), timeout=20)
    assert _ncores(result, iterations) == expected


def test_max_is_not_allowed_with_maximum_iters(tmp_path):
    result = run_service(tmp_path, [submit(_iterative(3, {"name": "maximum-iters"}, max=2)),
                                    {"request": "listJobs"}], nodes="4", timeout=20)
    assert result.reply(1)["code"] != 0
    assert "max" in result.reply(1)["message"]
    assert result.reply(2)["data"]["length"] == 0


def test_unknown_scheduler_is_rejected(tmp_path):
    result = run_service(tmp_path, [submit(_iterative(3, {"name": "round-robin"})),
                                    {"request": "listJobs"}], nodes="4", timeout=20)
    assert result.reply(1)["code"] != 0
    assert "round-robin" in result.reply(1)["message"]
    assert result.reply(2)["data"]["length"] == 0
