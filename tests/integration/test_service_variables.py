"""Variables in job descriptions (COMPAT.md "Variables"; seed "submit")."""

import re

from support.jobs import job, submit
from support.services import run_service


def test_rcnt_in_the_name_counts_requests(tmp_path):
    result = run_service(tmp_path, [
        submit(job("a_${rcnt}", "true")),
        {"request": "listJobs"},
        submit(job("b_${rcnt}", "true"), job("c_${rcnt}", "true")),
    ], timeout=20)
    assert result.reply(1)["data"]["jobs"] == ["a_1"]
    jobs = result.reply(3)["data"]["jobs"]
    assert jobs[0].startswith("b_") and jobs[1].startswith("c_")
    assert jobs[0][2:] == jobs[1][2:]  # same request, same counter
    assert int(jobs[0][2:]) > 1
    assert set(result.states) == {"a_1"} | set(jobs)


def test_jname_and_rcnt_in_args(tmp_path):
    result = run_service(tmp_path, [submit(
        job("j_${rcnt}", "echo", ["${jname}", "${rcnt}"], stdout="${jname}.out"))], timeout=20)
    assert result.state("j_1") == "SUCCEED", result.describe()
    assert result.read("j_1.out").split() == ["j_1", "1"]


def test_unknown_variable_in_the_name_is_an_error(tmp_path):
    result = run_service(tmp_path, [submit(job("a_${foo}", "true")), {"request": "listJobs"}],
                         timeout=20)
    assert result.reply(1)["code"] != 0
    assert result.reply(1)["message"] == ("Job identifier '(a_${foo})' contains invalid "
                                          "characters or unknown variables")
    assert result.reply(2)["data"]["length"] == 0


def test_dollar_dollar_is_undoubled_by_each_stage(tmp_path):
    """As upstream (two ``safe_substitute`` passes): ``$${ncores}`` reaches the execution
    stage as ``${ncores}``; ``$$$$`` is the literal ``$`` in front of a name."""
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["$${ncores}", "cost:$$5", "$$$${ncores}", "${ncores}"],
            stdout="a.out"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").split() == ["1", "cost:$5", "${ncores}", "1"]


def test_dollar_dollar_it_gives_each_iteration_its_directory(tmp_path):
    """upstream test_fileinterface (``wd: <name>_$${it}``): one directory per iteration."""
    result = run_service(tmp_path, [submit(
        job("a", "pwd", iteration={"stop": 3}, wd=str(tmp_path / "a_$${it}"),
            stdout="out.$${it}"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    for it in range(3):
        directory = tmp_path / ("a_%d" % it)
        assert (directory / ("out.%d" % it)).read_text().strip() == str(directory)
    assert not (tmp_path / "a_${it}").exists()


def test_unknown_variables_outside_the_name_are_left_alone(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", script='echo "${QCGFLOW_T_VAR}-x"', stdout="a.out",
            env={"QCGFLOW_T_VAR": "shell"}))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").strip() == "shell-x"


def test_ncores_nnodes_nlist_on_two_nodes(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["${ncores}", "${nnodes}", "${nlist}"], cores=3, stdout="a.out"))],
        nodes="2,2", timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").strip() == "3 2 n0,n1"


def test_root_wd_is_the_service_working_directory(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["${root_wd}"], wd="sub", stdout="a.out"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("sub/a.out").strip() == str(result.wd)


def test_it_in_wd_and_file_names(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "pwd", wd="run_${it}", stdout="out_${it}.txt", iteration={"stop": 2}))],
        timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    for i in range(2):
        assert result.read("run_%d/out_%d.txt" % (i, i)).strip() == str(result.wd / ("run_%d" % i))


def test_submit_stage_variables(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "a", "echo", ["${sname}", "${date}", "${time}", "${dateTime}", "${uniq}"],
        stdout="a.out"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    sname, date, time_, date_time, uniq = result.read("a.out").split()
    assert sname and "$" not in sname
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", date)
    assert re.fullmatch(r"\d\d-\d\d-\d\d", time_)
    assert date_time.startswith(date) and time_ in date_time
    assert re.fullmatch(r"[0-9a-fA-F-]{8,}", uniq)


def test_variables_in_env_and_script(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "a", script='echo "$MY_CORES ${ncores}"', env={"MY_CORES": "${ncores}"}, cores=2,
        stdout="a.out"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").strip() == "2 2"
