"""A compiled requests file of a command-only workflow, run by upstream ``qcg-pm-service``
0.14.2 (side venv) and by ``qcgflow service``: the same output files, the same contents."""

import os
import subprocess
import sys

import pytest

import qcgflow

from upstream_venv import UPSTREAM, upstream_python  # tests/upstream_venv.py

DEADLINE = 120


@pytest.fixture(scope="module")
def upstream_service():
    try:
        python = upstream_python()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        pytest.skip("needs %s in a side venv, which could not be installed (%s)"
                    % (UPSTREAM, exc))
    return str(python.parent / "qcg-pm-service")


def workflow():
    """prepare -> square.map([1, 2, 3]) (after prepare) -> total (fan-in on the map)."""
    prepare = qcgflow.shell("echo ${greeting} > prepared.txt", name="prepare")
    prepare = prepare.bind(greeting="hello")
    square = qcgflow.shell("echo $((${itval} * ${itval})) > square.${it}.txt",
                           name="square")
    squares = square.map([1, 2, 3], after=[prepare])
    total = qcgflow.shell("cat prepared.txt square.*.txt; "
                          "echo $(( $(cat square.*.txt | paste -sd+) ))", name="total")
    return total.bind(after=[squares])


def compile_into(directory) -> str:
    os.makedirs(directory)
    path = os.path.join(directory, "reqs.json")
    qcgflow.compile(workflow(), path=path)
    return path


def outputs(directory):
    """Every file the jobs wrote (names and contents), the service's own files left out."""
    found = {}
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if name == "reqs.json" or name.startswith(".") or not os.path.isfile(full):
            continue
        with open(full, encoding="utf-8") as handle:
            found[name] = handle.read()
    return found


def serve(command, directory):
    done = subprocess.run(command + ["--file-path", os.path.join(directory, "reqs.json"),
                                     "--nodes", "2", "--wd", directory],
                          cwd=directory, capture_output=True, text=True, timeout=DEADLINE,
                          start_new_session=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def both(upstream_service, tmp_path_factory):
    """The outputs of the same requests file under upstream and under qcgflow."""
    root = tmp_path_factory.mktemp("upstream-vs-ours")
    theirs, ours = str(root / "upstream"), str(root / "qcgflow")
    compile_into(theirs)
    compile_into(ours)
    serve([upstream_service], theirs)
    serve([sys.executable, "-m", "qcgflow.cli", "service"], ours)
    return outputs(theirs), outputs(ours)


def test_upstream_writes_the_expected_outputs(both):
    theirs, _ = both
    assert theirs["total.out"] == "hello\n1\n4\n9\n14\n"


def _written(found):
    """Without the empty default output files: upstream creates every one, qcgflow's
    service only those written (attributes.qcgflow.when_written, docs/compatibility.md)."""
    return {name: text for name, text in found.items()
            if text or not name.endswith((".out", ".err"))}


def test_upstream_creates_the_empty_default_outputs(both):
    theirs, ours = both
    empty = sorted(name for name in theirs if name not in ours)
    assert empty and all(theirs[name] == "" for name in empty)


def test_both_write_the_same_files(both):
    theirs, ours = both
    assert sorted(ours) == sorted(_written(theirs))


def test_both_write_the_same_contents(both):
    theirs, ours = both
    assert ours == _written(theirs)
