"""Unit tests of qcgflow.runtime.iterschedulers."""

import math

import pytest

from qcgflow.runtime.errors import IterationSchedulerError
from qcgflow.runtime.iterschedulers import KNOWN_SCHEDULERS, plan_iterations, validate_scheduler
from qcgflow.runtime.resources import CountRange


def amounts(name, params, minimum, total, iterations):
    plan = plan_iterations(name, params, CountRange(minimum, None), total, iterations)
    result = []
    for position in range(iterations):
        got = plan(position)
        assert got.min == got.max, "a plan must give an exact amount"
        result.append(got.min)
    return result


def reference_maximum_iters(minimum, total, iterations):
    """Step-by-step statement of maximum-iters, used to cross-check the closed form.

    Fewest steps; earlier steps take the extra iteration; inside a step each iteration in
    turn takes floor(what is left / iterations left), so larger shares come last.
    """
    if total < minimum:
        return [minimum] * iterations
    steps = math.ceil(iterations / (total // minimum))
    out, left_iters = [], iterations
    for step in range(steps):
        in_step = math.ceil(left_iters / (steps - step))
        left_res = total
        for k in range(in_step):
            share = left_res // (in_step - k)
            left_res -= share
            out.append(share)
        left_iters -= in_step
    return out


def test_known_schedulers():
    assert KNOWN_SCHEDULERS == ("maximum-iters", "split-into")


# -- maximum-iters ----------------------------------------------------------------------------

@pytest.mark.parametrize("minimum, total, iterations, expected", [
    (1, 4, 3, [1, 1, 2]),
    (1, 10, 3, [3, 3, 4]),
    (1, 11, 3, [3, 4, 4]),
    (1, 10, 5, [2] * 5),
    (1, 10, 20, [1] * 20),
    (1, 10, 10, [1] * 10),
    (3, 11, 3, [3, 4, 4]),
    (5, 11, 3, [5, 6, 11]),        # two steps: two iterations, then one
    (5, 11, 4, [5, 6, 5, 6]),      # two steps of two
    (6, 11, 4, [11] * 4),          # one iteration per step
    (1, 7, 1, [7]),
    (2, 3, 2, [3, 3]),
])
def test_maximum_iters_table(minimum, total, iterations, expected):
    assert amounts("maximum-iters", {}, minimum, total, iterations) == expected


@pytest.mark.parametrize("minimum", [1, 2, 3, 5])
@pytest.mark.parametrize("total", [1, 2, 3, 7, 10, 16])
@pytest.mark.parametrize("iterations", [1, 2, 3, 5, 9, 17, 40])
def test_maximum_iters_matches_step_by_step_reference(minimum, total, iterations):
    got = amounts("maximum-iters", {}, minimum, total, iterations)
    assert got == reference_maximum_iters(minimum, total, iterations)
    assert min(got) >= minimum


def test_maximum_iters_total_below_min_gives_min():
    assert amounts("maximum-iters", {}, 4, 3, 2) == [4, 4]


def test_maximum_iters_million_iterations_is_lazy():
    plan = plan_iterations("maximum-iters", {}, CountRange(1, None), 48, 1_000_000)
    # 20834 steps: the first 20802 hold 48 iterations (1 core each), the last 32 hold 47,
    # so the last iteration of each of those gets 2 of the 48 cores.
    assert 20802 * 48 + 32 * 47 == 1_000_000
    assert plan(0) == CountRange(1, 1)
    assert plan(20802 * 48 - 1) == CountRange(1, 1)
    assert plan(20802 * 48) == CountRange(1, 1)
    assert plan(20802 * 48 + 46) == CountRange(2, 2)
    assert plan(999_999) == CountRange(2, 2)


def test_maximum_iters_ignores_params():
    assert amounts("maximum-iters", {"parts": 2}, 1, 4, 2) == [2, 2]


def test_scheduler_name_is_case_insensitive():
    assert amounts("Maximum-Iters", {}, 1, 10, 3) == [3, 3, 4]
    assert amounts("SPLIT-INTO", {"parts": 2}, 1, 4, 4) == [2, 2, 2, 2]


# -- split-into -------------------------------------------------------------------------------

@pytest.mark.parametrize("minimum, total, iterations, parts, expected", [
    (1, 4, 4, 2, [2] * 4),
    (1, 10, 10, 10, [1] * 10),
    (1, 10, 10, 5, [2] * 10),
    (1, 10, 10, 2, [5] * 10),
    (1, 10, 3, 3, [3] * 3),          # uneven partitions: total // parts
    (3, 4, 4, 2, [3] * 4),           # total // parts below min: min
    (2, 3, 2, 5, [2] * 2),           # total // parts is zero: min
])
def test_split_into_table(minimum, total, iterations, parts, expected):
    assert amounts("split-into", {"parts": parts}, minimum, total, iterations) == expected


def test_split_into_defaults_parts_to_iterations():
    assert amounts("split-into", {}, 1, 10, 5) == [2] * 5
    assert amounts("split-into", None, 1, 10, 5) == [2] * 5


# -- plan edge cases ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", KNOWN_SCHEDULERS)
@pytest.mark.parametrize("position", [-1, 3])
def test_plan_rejects_positions_out_of_range(name, position):
    plan = plan_iterations(name, {}, CountRange(1, None), 4, 3)
    with pytest.raises(IndexError):
        plan(position)


@pytest.mark.parametrize("name", KNOWN_SCHEDULERS)
def test_plan_with_zero_iterations_is_empty(name):
    plan = plan_iterations(name, {}, CountRange(1, None), 4, 0)
    with pytest.raises(IndexError):
        plan(0)


@pytest.mark.parametrize("total, iterations", [(-1, 2), (4, -1)])
def test_plan_rejects_negative_sizes(total, iterations):
    with pytest.raises(ValueError):
        plan_iterations("maximum-iters", {}, CountRange(1, None), total, iterations)


# -- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, rng, message", [
    ("foo", {}, CountRange(1, None),
     "Unknown iteration resources scheduler 'foo' (known: maximum-iters, split-into)"),
    ("", {}, CountRange(1, None),
     "Unknown iteration resources scheduler '' (known: maximum-iters, split-into)"),
    ("maximum-iters", {}, CountRange(1, 4), "max is not allowed with the maximum-iters iteration scheduler"),
    ("maximum-iters", {}, CountRange(2, 2), "max is not allowed with the maximum-iters iteration scheduler"),
    ("split-into", {"parts": 2}, CountRange(1, 4), "max is not allowed with the split-into iteration scheduler"),
    ("split-into", {"parts": 0}, CountRange(1, None),
     "The split-into iteration scheduler parameter 'parts' must be a positive integer, got 0"),
    ("split-into", {"parts": -3}, CountRange(1, None),
     "The split-into iteration scheduler parameter 'parts' must be a positive integer, got -3"),
    ("split-into", {"parts": "2"}, CountRange(1, None),
     "The split-into iteration scheduler parameter 'parts' must be a positive integer, got '2'"),
    ("split-into", {"parts": 2.5}, CountRange(1, None),
     "The split-into iteration scheduler parameter 'parts' must be a positive integer, got 2.5"),
    ("split-into", {"parts": True}, CountRange(1, None),
     "The split-into iteration scheduler parameter 'parts' must be a positive integer, got True"),
    ("split-into", [2], CountRange(1, None),
     "The split-into iteration scheduler parameters must be an object, got [2]"),
])
def test_validate_rejects(name, params, rng, message):
    with pytest.raises(IterationSchedulerError) as info:
        validate_scheduler(name, params, rng)
    assert str(info.value) == message


@pytest.mark.parametrize("name, params", [
    ("maximum-iters", {}),
    ("maximum-iters", None),
    ("split-into", {"parts": 3}),
    ("split-into", {}),
])
def test_validate_accepts(name, params):
    assert validate_scheduler(name, params, CountRange(2, None)) is None


def test_plan_validates_too():
    with pytest.raises(IterationSchedulerError, match="Unknown iteration resources scheduler 'x'"):
        plan_iterations("x", {}, CountRange(1, None), 4, 2)
