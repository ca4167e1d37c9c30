"""THE ``${...}`` grammar (qcgflow/runtime/placeholders.py) is upstream's: one requests
file whose job arguments hold every form of the grammar's table, run by upstream
``qcg-pm-service`` 0.14.2 and by ``qcgflow service``, gives the same arguments to the
programs (both substitution stages included), and the grammar's own reading of the table
says the same."""

import json
import os
import subprocess
import sys

import pytest

from qcgflow.runtime import placeholders as grammar

DEADLINE = 120

# Each form as one argument of an iterative job (iterations 0 and 1, values a and b).
FORMS = ["${it}", "$it", "${ it }", "${it }", "${  it}", "$${it}", "$$it", "$$$$it",
         "$$$${it}", "${itval}", "$itval", "${itval2}", "$it.x", "${ncores}", "$1", "${}",
         "${it", "${it:-d}", "a$", "$", "\\${it}", "${jname}", "$${jname}", "${HOME}",
         "$$", "$$$$", "${ jname }"]


@pytest.fixture(scope="module")
def upstream_service(upstream):  # upstream: the side venv's python (conftest.py)
    return str(upstream.parent / "qcg-pm-service")


def requests():
    job = {"name": "forms",
           "execution": {"exec": sys.executable,
                         "args": ["-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
                         + FORMS,
                         "stdout": "out.${it}"},
           "iteration": {"values": ["a", "b"]},
           "resources": {"numCores": {"exact": 1}}}
    return [{"request": "submit", "jobs": [job]}, {"request": "control",
                                                   "command": "finishAfterAllTasksDone"}]


def serve(command, directory):
    os.makedirs(directory)
    path = os.path.join(directory, "reqs.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(requests(), handle)
    done = subprocess.run(command + ["--file-path", path, "--nodes", "2", "--wd", directory],
                          cwd=directory, capture_output=True, text=True, timeout=DEADLINE,
                          start_new_session=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(open(os.path.join(directory, "out.%d" % it)).read()) for it in (0, 1)]


@pytest.fixture(scope="module")
def both(upstream_service, tmp_path_factory):
    root = tmp_path_factory.mktemp("placeholders")
    return (serve([upstream_service], str(root / "upstream")),
            serve([sys.executable, "-m", "qcgflow.cli", "service"], str(root / "qcgflow")))


def expected(form, it, itval):
    """The grammar's reading: the submit stage (only ``$$`` matters here: jname differs
    between services and is compared apart), then the execution stage."""
    submitted = grammar.substitute(form, {}, unescape=True)
    return grammar.substitute(submitted, {"it": str(it), "itval": itval, "ncores": "1"},
                              unescape=True)


@pytest.mark.parametrize("index", range(len(FORMS)), ids=FORMS)
def test_both_services_give_a_program_the_same_argument(both, index):
    theirs, ours = both
    assert [run[index] for run in ours] == [run[index] for run in theirs]


@pytest.mark.parametrize("index", [i for i, form in enumerate(FORMS) if "jname" not in form],
                         ids=[form for form in FORMS if "jname" not in form])
def test_the_grammar_reads_each_form_as_upstream_does(both, index):
    theirs, _ = both
    assert [run[index] for run in theirs] == [
        expected(FORMS[index], it, itval) for it, itval in ((0, "a"), (1, "b"))]
