"""Dependencies between jobs (COMPAT.md "Dependencies")."""

from support.jobs import history_time, job, submit
from support.services import run_service

LIST = {"request": "listJobs"}


def _starts_after(result, later: str, earlier: str) -> bool:
    return history_time(result.entry(later), "SCHEDULED") >= \
        history_time(result.entry(earlier), result.state(earlier))


def test_after_waits_for_success(tmp_path):
    result = run_service(tmp_path, [submit(
        job("b", "cat", ["a.out"], after=["a"], stdout="b.out"),
        job("a", "echo", ["from-a"], stdout="a.out"),
    )], timeout=20)
    assert result.states == {"a": "SUCCEED", "b": "SUCCEED"}, result.describe()
    assert result.read("b.out") == "from-a\n"
    assert _starts_after(result, "b", "a")


def test_after_a_job_of_an_earlier_request(tmp_path):
    result = run_service(tmp_path, [
        submit(job("a", "echo", ["from-a"], stdout="a.out")),
        submit(job("b", "cat", ["a.out"], after=["a"], stdout="b.out")),
    ], timeout=20)
    assert result.states == {"a": "SUCCEED", "b": "SUCCEED"}, result.describe()
    assert result.read("b.out") == "from-a\n"


def test_failed_dependency_omits_the_dependant_with_the_cause(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", script="exit 1"),
        job("b", "true", after=["a"]),
        job("c", "true", after=["b"]),
    )], timeout=20)
    assert result.states == {"a": "FAILED", "b": "OMITTED", "c": "OMITTED"}, result.describe()
    b = result.entry("b")
    assert "EXECUTING" not in [h["state"] for h in b["history"]]
    assert "a" in b["messages"] and "FAILED" in b["messages"]
    assert "b" in result.entry("c")["messages"]


def test_after_an_iterative_job_waits_for_all_iterations(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "true", iteration={"stop": 4}),
        job("b", "true", after=["a"]),
    )], timeout=20)
    assert result.state("b") == "SUCCEED", result.describe()
    last_iteration = max(history_time(result.entry("a:%d" % i), "SUCCEED") for i in range(4))
    assert history_time(result.entry("b"), "SCHEDULED") >= last_iteration


def test_after_an_iterative_job_with_a_failed_iteration_is_omitted(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", script="test ${it} -ne 2", iteration={"stop": 4}),
        job("b", "true", after=["a"]),
    )], timeout=20)
    assert result.state("a") == "FAILED", result.describe()
    assert result.state("b") == "OMITTED"


def test_after_a_single_iteration(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", script="test ${it} -ne 2", iteration={"stop": 3}),
        job("ok", "true", after=["a:1"]),
        job("ko", "true", after=["a:2"]),
    )], timeout=20)
    assert result.state("ok") == "SUCCEED", result.describe()
    assert result.state("ko") == "OMITTED"
    assert _starts_after(result, "ok", "a:1")


def test_per_iteration_dependency(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", script="test ${it} -ne 1", iteration={"stop": 3}),
        job("b", "true", after=["a:${it}"], iteration={"stop": 3}),
    )], timeout=20)
    states = result.states
    assert [states["a:%d" % i] for i in range(3)] == ["SUCCEED", "FAILED", "SUCCEED"], \
        result.describe()
    assert [states["b:%d" % i] for i in range(3)] == ["SUCCEED", "OMITTED", "SUCCEED"]
    assert states["b"] == "FAILED"
    for i in (0, 2):
        assert _starts_after(result, "b:%d" % i, "a:%d" % i)
    assert "a:1" in result.entry("b:1").get("messages", "")


def test_unknown_dependency_is_omitted_with_the_reason(tmp_path):
    result = run_service(tmp_path, [submit(job("b", "true", after=["ghost"]),
                                           job("c", "true"))], timeout=20)
    assert result.reply(1)["code"] == 0
    assert result.states == {"b": "OMITTED", "c": "SUCCEED"}, result.describe()
    assert "ghost" in result.entry("b")["messages"]


def test_self_dependency_is_rejected(tmp_path):
    result = run_service(tmp_path, [submit(job("ok", "true"), job("a", "true", after=["a"])),
                                    LIST], timeout=20)
    assert result.reply(1)["code"] != 0
    assert "'a'" in result.reply(1)["message"] or "a ->" in result.reply(1)["message"]
    assert result.reply(2)["data"]["length"] == 0
    assert result.report_lines == []


def test_cycle_is_rejected_naming_it(tmp_path):
    result = run_service(tmp_path, [submit(
        job("ok", "true"),
        job("x", "true", after=["z"]),
        job("y", "true", after=["x"]),
        job("z", "true", after=["y"]),
    ), LIST], timeout=20)
    message = result.reply(1)["message"]
    assert result.reply(1)["code"] != 0
    assert "cycle" in message.lower()
    for name in ("x", "y", "z"):
        assert name in message
    assert "ok" not in message
    assert result.reply(2)["data"]["length"] == 0
    assert result.report_lines == []


def test_two_job_cycle_is_rejected(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", after=["b"]),
                                           job("b", "true", after=["a"]))], timeout=20)
    assert result.reply(1)["code"] != 0
    assert "a" in result.reply(1)["message"] and "b" in result.reply(1)["message"]
    assert result.report_lines == []


def test_chain_of_200(tmp_path):
    jobs = [job("j0", script="echo 0 > chain.txt")]
    jobs += [job("j%d" % i, script="echo %d >> chain.txt" % i, after=["j%d" % (i - 1)])
             for i in range(1, 200)]
    result = run_service(tmp_path, [submit(*jobs)], timeout=40)
    assert result.returncode == 0, result.describe()
    assert set(result.states.values()) == {"SUCCEED"}
    assert len(result.states) == 200
    assert result.read("chain.txt").split() == [str(i) for i in range(200)]
