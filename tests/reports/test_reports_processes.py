"""--enable-proc-stats and ``qcgflow processes``: the real process tree of a forking job;
--show-progress lines; --wrapper-rt-stats accepted."""

import json
import re

import pytest

from reports_harness import call, cli, job, run_service
from qcgflow.runtime.stats.cli import processes_main

CHILD_SLEEP = 3.0  # three 1 s sampling intervals: the children are seen even on a busy machine
FORKER = "sleep %s & sleep %s & wait" % (CHILD_SLEEP, CHILD_SLEEP)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("procs")
    result = run_service(tmp, [job("forker", script=FORKER)], "--enable-proc-stats",
                         "--enable-rt-stats", "--show-progress", "--wrapper-rt-stats",
                         "/opt/qcg_pj_launch_wrapper")
    assert result.returncode == 0, result.describe()
    return result


def processes(capsys, *argv):
    status, out, err = call(processes_main, argv, capsys)
    assert status == 0, err
    return out


def test_ptrace_file_in_the_aux_dir(run):
    assert len(list(run.aux_dir.glob("ptrace_*.log"))) == 1


def test_ptrace_records_the_fields(run):
    data = json.loads(next(run.aux_dir.glob("ptrace_*.log")).read_text())
    record = next(p for p in data["processes"] if p["name"] == "sleep")
    assert set(record) >= {"pid", "ppid", "name", "cmdline", "parent_name", "cpu_affinity",
                           "cpu_times", "memory_info", "created"}


def test_tree_root_is_the_jobs_process(run, capsys):
    pid = json.loads((run.aux_dir / "jobs.report").read_text().splitlines()[0])["runtime"]["pid"]
    tree = json.loads(processes(capsys, "tree", "--json", run.wd, "forker"))
    assert tree["tree"]["pid"] == int(pid)


def test_tree_root_is_the_shell(run, capsys):
    tree = json.loads(processes(capsys, "tree", "--json", run.wd, "forker"))
    assert tree["tree"]["name"] == "bash"


def test_tree_has_both_children(run, capsys):
    tree = json.loads(processes(capsys, "tree", "--json", run.wd, "forker"))
    assert [c["cmdline"] for c in tree["tree"]["children"]] == [["sleep", str(CHILD_SLEEP)]] * 2


def test_tree_text(run, capsys):
    lines = processes(capsys, "tree", run.wd, "forker").splitlines()
    assert lines[0].startswith("job forker, job process id ")
    assert re.match(r"  --\d+:bash \(", lines[1])
    assert [re.sub(r"\d+", "N", ln.split(" node(")[0]) for ln in lines[2:]] == [
        "        --N:sleep (sleep N.N)"] * 2


def test_apps_are_the_leaves(run, capsys):
    apps = json.loads(processes(capsys, "apps", "--json", run.wd, "forker"))["apps"]
    assert [a["name"] for a in apps] == ["sleep", "sleep"]


def test_apps_text_shows_the_statistics(run, capsys):
    text = processes(capsys, "apps", run.wd, "forker")
    assert text.startswith("found 2 target processes\n")
    for field in ("created", "cmdline", "parent", "cpu affinity", "cpu times",
                  "memory info", "memory percent"):
        assert text.count("\t%s: " % field) == 2, field


def test_children_created_after_the_shell(run, capsys):
    tree = json.loads(processes(capsys, "tree", "--json", run.wd, "forker"))["tree"]
    assert all(c["created"] >= tree["created"] for c in tree["children"])


def test_progress_lines_on_stderr(run):
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("qcgflow progress")]
    assert len(lines) >= 2  # at least one periodic line (the run lasts > 1 s) and the last


def test_last_progress_line_says_all_done(run):
    last = [ln for ln in run.stderr.splitlines() if ln.startswith("qcgflow progress")][-1]
    assert "tasks: 1/1 done (0 failed), 0 running, 0 queued" in last


def test_wrapper_option_is_explained_in_the_log(run):
    assert "--wrapper-rt-stats /opt/qcg_pj_launch_wrapper ignored" in run.service_log


def test_no_stats_files_without_the_options(tmp_path):
    result = run_service(tmp_path, [job("a", "true")])
    assert result.returncode == 0, result.describe()
    assert sorted(p.name for p in result.aux_dir.iterdir()) == [
        "final_status.json", "jobs.report", "journal.jsonl", "service.log", "track.reqs",
        "track.states"]


def test_no_progress_without_the_option(tmp_path):
    result = run_service(tmp_path, [job("a", "true")])
    assert "qcgflow progress" not in result.stderr


def test_processes_command_line(run):
    done = cli("processes", "tree", run.wd, "forker")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("job forker")
