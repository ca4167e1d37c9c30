"""Local execution of tasks (COMPAT.md "Execution"; issue 2 item 6)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.jobs import job, submit
from support.services import run_service

MODULES_INIT = Path("/usr/share/modules/init/bash")


# --------------------------------------------------------------------------- files and dirs

def test_wd_is_created_relative_to_the_service_wd(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "pwd", wd="deep/sub/dir", stdout="pwd.out"))],
                         timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    expected = result.wd / "deep" / "sub" / "dir"
    assert expected.is_dir()
    assert (expected / "pwd.out").read_text().strip() == str(expected)
    assert result.entry("a")["runtime"]["wd"] == str(expected)


def test_absolute_wd(tmp_path):
    target = tmp_path / "elsewhere"
    result = run_service(tmp_path, [submit(job("a", "pwd", wd=str(target), stdout="pwd.out"))],
                         timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert (target / "pwd.out").read_text().strip() == str(target)


def test_default_wd_is_the_service_wd(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "pwd", stdout="pwd.out"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("pwd.out").strip() == str(result.wd)


def test_stdout_and_stderr_are_relative_to_the_job_wd(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", script="echo out; echo err >&2", wd="w", stdout="o.txt", stderr="e.txt"))],
        timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("w/o.txt") == "out\n"
    assert result.read("w/e.txt") == "err\n"
    assert not (result.wd / "o.txt").exists()


def test_stderr_file_exists_even_when_empty(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["hi"], stdout="o.txt", stderr="e.txt"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert (result.wd / "e.txt").exists()
    assert result.read("e.txt") == ""


def test_stdin_is_read_relative_to_the_job_wd(tmp_path):
    (tmp_path / "wd" / "w").mkdir(parents=True)
    (tmp_path / "wd" / "w" / "in.txt").write_text("line one\nline two\n")
    result = run_service(tmp_path, [submit(
        job("a", "wc", ["-l"], wd="w", stdin="in.txt", stdout="o.txt"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("w/o.txt").strip() == "2"


def test_missing_stdin_file_fails_the_job_with_the_reason(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "cat", stdin="nope.txt"))], timeout=20)
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    assert "nope.txt" in entry.get("messages", "")


def test_env_is_added_to_the_service_environment(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "a", script='echo "$FOO $QCGFLOW_T_INHERITED"', env={"FOO": "bar"}, stdout="o.txt"))],
        env={"QCGFLOW_T_INHERITED": "inherited"}, timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("o.txt").strip() == "bar inherited"


def test_script_runs_in_bash(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "a", script='for i in 1 2 3; do echo -n "$i"; done; [[ -n "$BASH_VERSION" ]] && echo',
        stdout="o.txt"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("o.txt").strip() == "123"


# --------------------------------------------------------------------------- how tasks end

def test_exec_not_found(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "qcgflow-no-such-program-xyz"))],
                         timeout=20)
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    assert entry["runtime"]["exit_code"] == "-1"
    assert entry["messages"].startswith("[Errno 2] No such file or directory")
    assert "qcgflow-no-such-program-xyz" in entry["messages"]


def test_exec_not_found_in_a_job_wd(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "/no/such/dir/prog", wd="w"))], timeout=20)
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    assert entry["runtime"]["exit_code"] == "-1"
    assert entry["messages"].startswith("[Errno 2] No such file or directory")


def test_non_zero_exit(tmp_path):
    result = run_service(tmp_path, [submit(job("a", script="exit 3"))], timeout=20)
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    assert entry["runtime"]["exit_code"] == "3"


def test_killed_by_a_signal(tmp_path):
    result = run_service(tmp_path, [submit(job("a", script="kill -KILL $BASHPID"),
                                           job("b", script="kill -SEGV $BASHPID"))],
                         timeout=20)
    a, b = result.entry("a"), result.entry("b")
    assert a["state"] == "FAILED" and b["state"] == "FAILED", result.describe()
    assert "SIGKILL" in a["messages"]
    assert "SIGSEGV" in b["messages"]


def test_success_runtime_fields(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "echo", ["x"]))], timeout=20)
    runtime = result.entry("a")["runtime"]
    assert runtime["exit_code"] == "0"
    assert runtime["pname"] == "echo"
    assert int(runtime["pid"]) > 0
    assert runtime["allocation"] == "n0[0]"


def test_wall_time_is_enforced(tmp_path):
    started = time.monotonic()
    result = run_service(tmp_path, [submit(job("a", "sleep", ["30"], cores=1, wt="1s"))],
                         timeout=25)
    wall = time.monotonic() - started
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    assert "wall time" in entry["messages"]
    assert wall < 10, "the 1s wall time took %.1fs to enforce" % wall


@pytest.mark.parametrize("wt", ["2s", "10m", "1h30m", "1h", 90])
def test_wall_time_formats_are_accepted(tmp_path, wt):
    result = run_service(tmp_path, [submit(job("a", "true", cores=1, wt=wt))], timeout=20)
    assert result.reply(1)["code"] == 0, result.describe()
    assert result.state("a") == "SUCCEED"


@pytest.mark.parametrize("wt", ["soon", "-5s", "0s"])
def test_invalid_wall_time_is_rejected(tmp_path, wt):
    result = run_service(tmp_path, [submit(job("a", "true", cores=1, wt=wt))], timeout=20)
    assert result.reply(1)["code"] != 0
    assert "wt" in result.reply(1)["message"]


# --------------------------------------------------------------------------- environment

def test_qcg_pm_variables_in_the_task_environment(tmp_path):
    names = ["QCG_PM_NNODES", "QCG_PM_NODELIST", "QCG_PM_NPROCS", "QCG_PM_TASKS_PER_NODE",
             "QCG_PM_CPU_SET", "QCG_PM_STEP_ID"]
    script = "; ".join('echo "%s=${%s}"' % (n, n) for n in names)
    result = run_service(tmp_path, [submit(job("a", script=script, cores=3, stdout="a.env"),
                                           job("b", script=script, stdout="b.env"))],
                         nodes="2,2", timeout=20)
    assert result.states == {"a": "SUCCEED", "b": "SUCCEED"}, result.describe()
    env_a = dict(line.split("=", 1) for line in result.read("a.env").splitlines())
    env_b = dict(line.split("=", 1) for line in result.read("b.env").splitlines())
    assert env_a["QCG_PM_NNODES"] == "2"
    assert env_a["QCG_PM_NODELIST"] == "n0,n1"
    assert env_a["QCG_PM_NPROCS"] == "3"
    assert env_a["QCG_PM_TASKS_PER_NODE"] == "2,1"
    assert len(env_a["QCG_PM_CPU_SET"].split(",")) == 3
    assert env_a["QCG_PM_STEP_ID"]
    assert env_b["QCG_PM_NPROCS"] == "1"
    assert env_a["QCG_PM_STEP_ID"] != env_b["QCG_PM_STEP_ID"]


def test_venv_is_activated(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    result = run_service(tmp_path, [submit(job(
        "a", script='echo "$VIRTUAL_ENV"; which python', venv=str(venv), stdout="o.txt"))],
        timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    virtual_env, python = result.read("o.txt").split()
    assert virtual_env == str(venv)
    assert python == str(venv / "bin" / "python")


def test_venv_with_exec(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    result = run_service(tmp_path, [submit(job(
        "a", "python", ["-c", "import sys; print(sys.prefix)"], venv=str(venv),
        stdout="o.txt"))], timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("o.txt").strip() == str(venv)


def test_missing_venv_fails_with_a_clear_message(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", venv=str(tmp_path / "no-venv")))],
                         timeout=20)
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    assert "virtual environment" in entry["messages"]


def test_unknown_module_fails_with_a_clear_message(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", modules=["no-such-module"],
                                               stderr="e.txt"))], timeout=30)
    entry = result.entry("a")
    assert entry["state"] == "FAILED", result.describe()
    message = entry["messages"]
    if MODULES_INIT.exists():
        assert message.startswith("module load no-such-module failed: "), message
        assert message.endswith(" (the program was not run; exit code 211)"), message
        assert "no-such-module" in message[len("module load no-such-module failed: "):]
    else:
        assert "environment modules are not available" in message, message


@pytest.mark.skipif(not MODULES_INIT.exists(),
                    reason="environment modules are not installed "
                           "(apt-get install environment-modules)")
def test_a_failed_module_load_does_not_run_the_program(tmp_path):
    """A deliberate departure from upstream (which runs the program anyway): the job FAILS
    with exit code 211 and says so, even without a stderr file."""
    result = run_service(tmp_path, [submit(job("a", "touch", ["ran"],
                                               modules=["no-such-module"]))], timeout=30)
    entry = result.entry("a")
    assert (entry["state"], entry["runtime"]["exit_code"]) == ("FAILED", "211"), \
        result.describe()
    assert entry["messages"] == (
        "module load failed (modules: no-such-module) (the program was not run; exit code "
        "211; give the job a stderr file to see the module tool's error)")
    assert not (result.wd / "ran").exists()


@pytest.mark.modules
@pytest.mark.skipif(not MODULES_INIT.exists(),
                    reason="environment modules are not installed "
                           "(apt-get install environment-modules)")
def test_a_real_module_is_loaded(tmp_path):
    modulefiles = tmp_path / "modulefiles"
    (modulefiles / "qcgtest").mkdir(parents=True)
    (modulefiles / "qcgtest" / "1.0").write_text(
        "#%%Module1.0\nsetenv QCGFLOW_TEST_MODULE loaded-from-module\n"
        "prepend-path PATH %s\n" % (tmp_path / "modbin"))
    (tmp_path / "modbin").mkdir()
    tool = tmp_path / "modbin" / "qcg-module-tool"
    tool.write_text("#!/bin/sh\necho tool-ran\n")
    tool.chmod(0o755)
    result = run_service(tmp_path, [submit(job(
        "a", script='echo "$QCGFLOW_TEST_MODULE"; qcg-module-tool', modules=["qcgtest/1.0"],
        env={"MODULEPATH": str(modulefiles)}, stdout="o.txt", stderr="e.txt"))], timeout=30)
    assert result.state("a") == "SUCCEED", result.describe() + result.read("e.txt")
    assert result.read("o.txt").split() == ["loaded-from-module", "tool-ran"]
