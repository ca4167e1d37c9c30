"""qcgflow.runtime.executor_api: QCGPJExecutor, templates, futures."""

import concurrent.futures as cf
import os
import signal
import threading
import time

import pytest

from qcgflow.runtime.api import ConnectionError, InvalidJobDescriptionError, TemplateError
from qcgflow.runtime.executor_api import (JOB_ID_ENV, BasicTemplate, QCGPJExecutor,
                                          QCGPJFuture, QCGPJTemplate, render_template)
from support.eventually import eventually
from support.processes import processes_under


@pytest.fixture
def executor(tmp_path):
    e = QCGPJExecutor(wd=str(tmp_path / "run"), resources="4")
    yield e
    e.shutdown(wait=False)


class EchoTemplate(QCGPJTemplate):
    """A JSON template with a default; ${it}-free so string.Template fills it all."""

    @staticmethod
    def template():
        return ('{"name": "${name}", "execution": {"exec": "/bin/sh", '
                '"args": ["-c", "echo ${word} $$%s > ${out}"]}}' % JOB_ID_ENV,
                {"word": "default", "out": "echo.out"})


def test_basic_template_future_is_a_real_future(executor):
    future = executor.submit(BasicTemplate.template, name="tj", exec="date")
    assert isinstance(future, cf.Future) and isinstance(future, QCGPJFuture)
    assert future.result(timeout=10) == {"tj": "SUCCEED"}
    assert future.done() and not future.running() and not future.cancelled()
    assert future.ids == ["tj"] and future.qcgpjm is executor.qcgpj_manager
    assert os.path.getsize(os.path.join(executor.wd, "stdout")) > 0
    assert os.path.exists(os.path.join(executor.wd, "stderr"))


def test_args_dicts_kwargs_and_defaults_precedence_and_job_id_env(executor):
    f1 = executor.submit(EchoTemplate.template, {"name": "e1", "word": "from-args"})
    f2 = executor.submit(EchoTemplate, {"name": "x", "word": "from-args"}, None,
                         name="e2", word="from-kwargs", out="e2.out")
    assert f1.result(10) == {"e1": "SUCCEED"} and f2.result(10) == {"e2": "SUCCEED"}
    assert open(os.path.join(executor.wd, "echo.out")).read() == "from-args e1\n"
    assert open(os.path.join(executor.wd, "e2.out")).read() == "from-kwargs e2\n"


def test_as_completed_wait_and_callbacks(executor):
    called = threading.Event()
    futures = [executor.submit(BasicTemplate.template, name="s%d" % i, exec="sleep",
                               args=["0.%d" % (3 - i)]) for i in range(3)]
    futures[0].add_done_callback(lambda f: called.set())
    done = [f.result() for f in cf.as_completed(futures, timeout=10)]
    assert sorted(done, key=str) == [{"s0": "SUCCEED"}, {"s1": "SUCCEED"}, {"s2": "SUCCEED"}]
    assert called.wait(5)
    late = executor.submit(BasicTemplate.template, name="late", exec="sleep", args=["0.1"])
    finished, pending = cf.wait([late], timeout=10, return_when=cf.FIRST_COMPLETED)
    assert finished == {late} and not pending


def test_failed_job_resolves_with_its_state(executor):
    future = executor.submit(BasicTemplate.template, name="bad", exec="/bin/false")
    assert future.result(10) == {"bad": "FAILED"}
    missing = executor.submit(BasicTemplate.template, name="nx", exec="/no/such/program")
    assert missing.result(10) == {"nx": "FAILED"}


def test_cancel_a_running_job(executor):
    future = executor.submit(BasicTemplate.template, name="long", exec="sleep", args=["30"])
    manager = executor.qcgpj_manager
    eventually(lambda: manager.status("long")["jobs"]["long"]["data"]["status"]
               == "EXECUTING", 10, message="long to be EXECUTING")
    assert future.cancel() and future.cancelled() and future.done()
    with pytest.raises(cf.CancelledError):
        future.result(1)
    assert manager.wait4("long", timeout=15) == {"long": "CANCELED"}
    assert future.cancel()  # again: still cancelled
    finished = executor.submit(BasicTemplate.template, name="quick", exec="/bin/true")
    finished.result(10)
    assert not finished.cancel() and not finished.cancelled()


def test_result_timeout(executor):
    future = executor.submit(BasicTemplate.template, name="slow", exec="sleep", args=["30"])
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.2)
    future.cancel()


def test_template_errors():
    with pytest.raises(TemplateError, match=r"\$\{exec\} has no value") as info:
        render_template(BasicTemplate.template, name="x")
    assert isinstance(info.value, KeyError) and isinstance(info.value,
                                                           InvalidJobDescriptionError)
    with pytest.raises(TemplateError, match="not a job description"):
        render_template(lambda: "{'name': '${n}', 'execution': ", n="x")
    with pytest.raises(TemplateError, match="'execution' dictionary"):
        render_template(lambda: "['${n}']", n="x")
    with pytest.raises(TemplateError):
        render_template(42)
    with pytest.raises(NotImplementedError):
        QCGPJTemplate.template()
    description = render_template(BasicTemplate.template, name="n", exec="e", args=["1", 2])
    assert description == {"name": "n", "execution": {
        "exec": "e", "args": ["1", 2], "stdout": "stdout", "stderr": "stderr",
        "env": {JOB_ID_ENV: "${jname}"}}}
    text = render_template('{"name": "t", "execution": {"exec": "x", "env": {"A": "$$B"}}}')
    assert text["execution"]["env"] == {"A": "$B", JOB_ID_ENV: "${jname}"}


def test_service_refusal_surfaces_at_submit(executor):
    executor.submit(BasicTemplate.template, name="dup", exec="/bin/true").result(10)
    with pytest.raises(ConnectionError, match="Job dup already exist"):
        executor.submit(BasicTemplate.template, name="dup", exec="/bin/true")


def test_shutdown_waits_for_jobs_then_refuses_new_ones(tmp_path):
    executor = QCGPJExecutor(wd=str(tmp_path), resources="2")
    future = executor.submit(BasicTemplate.template, name="w", exec="sleep", args=["0.3"])
    started = time.monotonic()
    executor.shutdown(wait=True)
    assert future.result(0) == {"w": "SUCCEED"}
    assert 0.2 < time.monotonic() - started < 5
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(BasicTemplate.template, name="x", exec="date")
    executor.shutdown()  # twice is harmless
    assert executor.qcgpj_manager._process.returncode == 0


def test_shutdown_without_wait_cancels_pending_futures(tmp_path):
    executor = QCGPJExecutor(wd=str(tmp_path), resources="2")
    future = executor.submit(BasicTemplate.template, name="w", exec="sleep", args=["30"])
    started = time.monotonic()
    executor.shutdown(wait=False)
    assert time.monotonic() - started < 3
    assert future.cancelled()


def test_shutdown_with_cancel_futures(tmp_path):
    with QCGPJExecutor(wd=str(tmp_path), resources="1") as executor:
        running = executor.submit(BasicTemplate.template, name="r", exec="sleep", args=["30"])
        queued = executor.submit(BasicTemplate.template, name="q", exec="sleep", args=["30"])
        started = time.monotonic()
        executor.shutdown(cancel_futures=True)
    assert running.cancelled() and queued.cancelled()
    assert time.monotonic() - started < 12


def test_crashed_service_fails_pending_futures(tmp_path):
    executor = QCGPJExecutor(wd=str(tmp_path), resources="1", cfg={"kill_grace": 1})
    try:
        future = executor.submit(BasicTemplate.template, name="s", exec="sleep", args=["30"])
        manager = executor.qcgpj_manager
        eventually(lambda: manager.status("s")["jobs"]["s"]["data"]["status"]
                   == "EXECUTING", 10, message="s to be EXECUTING")
        os.kill(manager.pid, signal.SIGKILL)
        with pytest.raises(ConnectionError, match="has ended"):
            future.result(timeout=5)
    finally:
        executor.shutdown(wait=False)  # the crash was reported to the futures: no error here
        assert executor.qcgpj_manager._process.returncode == -9
        for orphan in processes_under(tmp_path):  # tasks of the crashed service
            orphan.kill()
        for orphan in processes_under(tmp_path):  # tasks of the crashed service
            orphan.kill()


def test_executor_options_reach_the_service(tmp_path):
    with QCGPJExecutor("--nodes", "3", wd=str(tmp_path), log_level="debug") as executor:
        manager = executor.qcgpj_manager
        assert manager.resources()["total_cores"] == 3
        assert ["--log", "debug"] == manager.server_args[1:3]
    with QCGPJExecutor(wd=str(tmp_path / "b"), resources="2", reserve_core=True) as executor:
        # the reserved core counts in the total and as used, as upstream reports it
        assert executor.qcgpj_manager.resources() == {"total_nodes": 1, "total_cores": 2,
                                                      "used_cores": 1, "free_cores": 1}


def test_map_submits_one_job_per_dict(executor):
    results = list(executor.map(BasicTemplate.template,
                                [{"name": "m%d" % i, "exec": "/bin/true"} for i in range(3)],
                                timeout=10))
    assert results == [{"m0": "SUCCEED"}, {"m1": "SUCCEED"}, {"m2": "SUCCEED"}]


def test_futures_resolve_by_polling_without_a_publisher(tmp_path):
    with QCGPJExecutor("--disable-pub", wd=str(tmp_path), resources="2",
                       cfg={"poll_delay": 0.3}) as executor:
        assert executor.qcgpj_manager.publisher_address is None
        futures = [executor.submit(BasicTemplate.template, name="p%d" % i, exec="sleep",
                                   args=["0.1"]) for i in range(3)]
        assert [f.result(10) for f in futures] == [{"p%d" % i: "SUCCEED"} for i in range(3)]
        started = time.monotonic()
    assert time.monotonic() - started < 2  # shutdown does not wait out a poll delay
