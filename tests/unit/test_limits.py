"""``runtime/limits.check_depth``: every request of every interface is walked by it first,
so it must refuse exactly what nests deeper than the limit and name where."""

import pytest

from qcgflow.runtime.limits import MAX_DEPTH, RequestTooDeep, check_depth


def nested(depth, leaf=1):
    """A value of ``depth`` nested containers, alternating dict and list."""
    value = leaf
    for level in range(depth):
        value = {"k%d" % (depth - level): value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [0, 1, 2, MAX_DEPTH - 1, MAX_DEPTH])
def test_up_to_the_limit_is_accepted(depth):
    check_depth(nested(depth))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, MAX_DEPTH + 5, 5000])
def test_deeper_is_refused(depth):
    with pytest.raises(RequestTooDeep, match="nested deeper than %d levels" % MAX_DEPTH):
        check_depth(nested(depth))


def test_the_message_names_the_path_to_the_deep_part():
    request = {"request": "submit", "jobs": [{"name": "a"}, {"name": "b", "x": nested(4)}]}
    with pytest.raises(RequestTooDeep) as caught:
        check_depth(request, limit=4)
    assert "(at jobs[1].x.k1)" in str(caught.value)


def test_a_long_path_is_cut_after_six_steps():
    with pytest.raises(RequestTooDeep) as caught:
        check_depth(nested(20), limit=10)
    assert str(caught.value).endswith("...)")
    assert str(caught.value).count("[") + str(caught.value).count(".k") <= 7


def test_wide_values_within_the_limit_pass():
    check_depth({"jobs": [{"name": "j%d" % i, "execution": {"args": ["a"] * 5}}
                          for i in range(10000)]})
