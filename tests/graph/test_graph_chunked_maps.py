"""Big maps of ``qcgflow.run`` run in chunks (qcgflow/session/fastpath.py ``chunk``): several
elements per service iteration, each with its own result and error, resumable element by
element. Real service, real warm workers."""

import glob
import json
import os

import pytest

import qcgflow
from qcgflow.session import fastpath

from graph_harness import run_wd

DEADLINE = 120


class Odd(Exception):
    pass


@qcgflow.task
def square(x):
    return x * x


@qcgflow.task
def total(values):
    return sum(values)


@qcgflow.task
def once_bad(x, flag, log):
    """Raises for x == 137 while ``flag`` exists; logs every run of an element."""
    with open(log, "a") as handle:
        handle.write("%d\n" % x)
    if x == 137 and os.path.exists(flag):
        raise Odd("element %d is odd" % x)
    return x


@qcgflow.task
def speaks(x):
    print("element %d speaks" % x)
    return x


def submitted(wd):
    """The iterative jobs the service was given (its journal's submit records): name ->
    (the runner's last argument, the number of service iterations)."""
    jobs = {}
    for path in glob.glob(os.path.join(wd, ".qcgpjm-service-*", "journal.jsonl")):
        with open(path, errors="replace") as handle:
            for line in handle:
                record = json.loads(line)
                for job in record.get("jobs", ()) if record.get("k") == "submit" else ():
                    if "iteration" in job:
                        jobs[job["name"]] = (job["execution"]["args"][-1],
                                             job["iteration"]["stop"])
    return jobs


def test_a_big_map_runs_in_chunks_with_every_result(tmp_path):
    wd = run_wd(tmp_path)
    elements = 2000
    assert qcgflow.run(total.bind(square.map(range(elements))), nodes=2, wd=wd,
                       timeout=DEADLINE) == sum(x * x for x in range(elements))
    assert qcgflow.run(square.map(range(elements)), nodes=2, wd=wd + "-list",
                       timeout=DEADLINE) == [x * x for x in range(elements)]
    jobs = submitted(wd)
    (argument, chunks), = [value for name, value in jobs.items() if name.startswith("square")]
    size = min(fastpath.CHUNK_MOST, elements // (2 * fastpath.CHUNKS_PER_CORE))
    assert argument == "chunk:%d:%d:${it}" % (size, elements)
    assert chunks == -(-elements // size)


def test_small_maps_and_element_wise_maps_are_not_chunked(tmp_path):
    wd = run_wd(tmp_path)
    first = square.map(range(300))
    assert qcgflow.run(total.bind(square.map(first)), nodes=2, wd=wd,
                       timeout=DEADLINE) == sum(x ** 4 for x in range(300))
    assert qcgflow.run(square.map(range(20)), nodes=2, wd=wd + "-small",
                       timeout=DEADLINE) == [x * x for x in range(20)]
    for name, (argument, count) in list(submitted(wd).items()) + \
            list(submitted(wd + "-small").items()):
        assert argument == "${it}", name


def test_an_element_that_raises_fails_the_map_as_itself(tmp_path):
    wd = run_wd(tmp_path)
    flag, log = str(tmp_path / "flag"), str(tmp_path / "runs.log")
    open(flag, "w").close()
    with pytest.raises(Odd, match="element 137 is odd") as caught:
        qcgflow.run(once_bad.map(range(400), flag, log), nodes=2, wd=wd, timeout=DEADLINE)
    assert caught.value.task.endswith(":137")  # the element, not its chunk
    with open(log) as handle:
        assert sorted(int(line) for line in handle) == list(range(400))  # all had a turn
    assert any(arg.startswith("chunk:") for arg, _ in submitted(wd).values())


def test_a_resume_reuses_elements_inside_chunks(tmp_path):
    wd = run_wd(tmp_path)
    flag, log = str(tmp_path / "no-flag"), str(tmp_path / "runs.log")
    assert qcgflow.run(once_bad.map(range(400), flag, log), nodes=2, wd=wd,
                       timeout=DEADLINE) == list(range(400))
    os.unlink(log)
    assert qcgflow.run(once_bad.map(range(450), flag, log), nodes=2, wd=wd,
                       timeout=DEADLINE, resume=True) == list(range(450))
    with open(log) as handle:
        assert sorted(int(line) for line in handle) == list(range(400, 450))
    assert any(arg.startswith("chunk:") for arg, _ in submitted(wd).values())


def test_an_element_prints_into_its_chunks_stdout(tmp_path):
    wd = run_wd(tmp_path)
    assert qcgflow.run(speaks.map(range(200)), nodes=2, wd=wd,
                       timeout=DEADLINE) == list(range(200))
    text = ""
    for path in glob.glob(os.path.join(wd, ".qcgflow", "speaks-*", "stdout.*")):
        with open(path) as handle:
            text += handle.read()
    assert all("element %d speaks" % x in text for x in range(200))
