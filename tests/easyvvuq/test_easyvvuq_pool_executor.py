"""qcgflow.easyvvuq.Pool as a plain concurrent.futures.Executor (no easyvvuq needed):
real futures, running() only while the task runs, errors, rounds, with-blocks."""

import concurrent.futures as cf
import time

import pytest

from qcgflow.easyvvuq import Pool
from qcgflow.easyvvuq.chain import run_resources
from qcgflow.easyvvuq.pool import exit_code_of
from support.eventually import eventually

DEADLINE = 60.0


@pytest.fixture
def pool(tmp_path):
    with Pool(resources=1, warm=False, wd=str(tmp_path / "wd")) as made:
        yield made


def test_futures_are_plain_futures(pool):
    assert type(pool.submit(pow, 2, 3)) is cf.Future


def test_result(pool):
    assert pool.submit(pow, 2, 10).result(DEADLINE) == 1024


def test_running_only_while_executing(pool):
    first = pool.submit(time.sleep, 1.0)
    second = pool.submit(pow, 2, 2)  # one core: waits for the first
    eventually(first.running, DEADLINE, 0.01, "the first task to run")
    assert (second.running(), second.done()) == (False, False)


def test_not_running_when_done(pool):
    future = pool.submit(pow, 2, 2)
    future.result(DEADLINE)
    assert future.running() is False


def test_exception_is_the_functions(pool):
    future = pool.submit(int, "not a number")
    assert isinstance(future.exception(DEADLINE), ValueError)


def test_as_completed_gives_all(pool):
    futures = [pool.submit(pow, 2, i) for i in range(4)]
    done = {f.result() for f in cf.as_completed(futures, timeout=DEADLINE)}
    assert done == {1, 2, 4, 8}


def test_map(pool):
    assert list(pool.map(pow, [2, 3], [3, 2], timeout=DEADLINE)) == [8, 9]


def test_several_rounds(pool):
    rounds = [[f.result(DEADLINE) for f in [pool.submit(pow, r, 2)]] for r in range(3)]
    assert rounds == [[0], [1], [4]]


def test_with_block_waits_then_refuses(tmp_path):
    with Pool(resources=1, warm=False, wd=str(tmp_path / "wd")) as made:
        future = made.submit(time.sleep, 0.2)
    assert future.done() and pytest.raises(RuntimeError, made.submit, pow, 2, 2)


def test_bad_option_is_one_line_value_error():
    with pytest.raises(ValueError) as caught:
        Pool(cores=0, warm=False)
    assert "cores" in str(caught.value) and "\n" not in str(caught.value)


def test_bad_resources_for_names_run():
    with pytest.raises(ValueError, match="run 7"):
        run_resources({"cores": 1, "nodes": 1}, lambda previous: {"gpus": 1},
                      {"run_id": 7})


def test_resources_for_overrides_defaults():
    assert run_resources({"cores": 1, "nodes": 1}, lambda p: {"cores": 4}, {"run_id": 1}) \
        == {"cores": 4, "nodes": 1}


@pytest.mark.parametrize("text, code", [("exit code 3", 3), ("exit code -9", -9),
                                        ("wall time limit (1s) exceeded", None)])
def test_exit_code_of(text, code):
    assert exit_code_of(text) == code


def test_variant_shares_the_service(pool):
    with pool.options(cores=1) as variant:
        assert variant.submit(pow, 3, 2).result(DEADLINE) == 9
    assert pool.submit(pow, 2, 5).result(DEADLINE) == 32


def test_variant_bad_option_is_value_error(pool):
    with pytest.raises(ValueError, match="model"):
        pool.options(model="no-such-model")
