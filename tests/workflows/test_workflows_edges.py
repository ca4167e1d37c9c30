"""The rough edges of the command line (issue 16, points 3-6), through the real CLI:
placeholders checked when a workflow file is read, programs beside the workflow file,
usage errors, refusals, status of interrupted runs, closed pipes, tracebacks."""

import json
import os
import signal
import subprocess
import sys

import pytest

from support.eventually import eventually
from support.processes import child_env, kill, tree
from support.services import cli
from workflows_harness import EXAMPLES, write


def run(tmp_path, workflow, *more):
    return cli("run", workflow, "--nodes", "2", "--wd", tmp_path / "run", "--quiet", *more,
               cwd=tmp_path)


# --------------------------------------------------------------------------- placeholders

MISSPELT = """
tasks:
  sim:
    foreach: [1, 2, 3]
    script: echo ${itval}
    stdout: out.${itvall}
"""


def test_a_misspelt_placeholder_is_one_line_with_the_line_and_a_suggestion(tmp_path):
    result = run(tmp_path, write(tmp_path, "wf.yaml", MISSPELT))
    lines = result.stderr.splitlines()
    assert (result.returncode, len(lines)) == (2, 1)
    assert lines[0].startswith("qcgflow run: %s:5: tasks.sim.stdout: unknown placeholder "
                               "${itvall}; did you mean ${itval}?" % (tmp_path / "wf.yaml"))
    assert not (tmp_path / "run").exists()  # nothing was run, nothing was made


def test_a_placeholder_inside_a_block_script_is_reported_on_its_own_line(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          sim:
            foreach: {seed: [1, 2]}
            script: |
              echo start
              echo ${seed}
              echo ${sede} > out.${it}
        """)
    result = cli("compile", path, cwd=tmp_path)
    assert result.returncode == 2
    assert ":7: tasks.sim.script: unknown placeholder ${sede}; did you mean ${seed}?" in \
        result.stderr


def test_it_outside_a_sweep_is_an_error(tmp_path):
    path = write(tmp_path, "wf.yaml", "tasks:\n  a:\n    exec: echo\n    args: ['${it}']\n")
    result = cli("compile", path, cwd=tmp_path)
    assert (result.returncode, "tasks.a.args[0]: ${it} is only set in a sweep" in
            result.stderr) == (2, True)


def test_a_sweep_parameter_in_wd_is_an_error(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          a:
            foreach: {seed: [1, 2]}
            exec: /bin/true
            wd: case_${seed}
        """)
    result = cli("compile", path, cwd=tmp_path)
    assert (result.returncode, "tasks.a.wd: ${seed} is a sweep parameter" in result.stderr) \
        == (2, True)


def test_a_misspelt_placeholder_in_the_json_form_is_reported_too(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"tasks": {"a": {"exec": "echo", "args": ["${ncore}"]}}},
                               indent=1))
    result = cli("compile", path, cwd=tmp_path)
    assert (result.returncode, "did you mean ${ncores}?" in result.stderr) == (2, True)


def test_an_escaped_placeholder_reaches_the_shell(tmp_path):
    path = write(tmp_path, "wf.yaml", r"""
        tasks:
          loop:
            foreach: [a, b]
            script: |
              for step in 1 2; do echo "${itval}-\${step}"; done > out.${it}.txt
              echo "\${HOME}" > home.${it}.txt
        """)
    result = run(tmp_path, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "out.1.txt").read_text() == "b-1\nb-2\n"
    assert (tmp_path / "run" / "home.0.txt").read_text().strip() == os.environ["HOME"]


def test_an_escaped_runtime_variable_is_refused(tmp_path):
    path = write(tmp_path, "wf.yaml", "tasks:\n  a:\n    foreach: [1]\n"
                                      "    script: echo \\${it}\n")
    result = cli("compile", path, cwd=tmp_path)
    assert (result.returncode, "\\${it} cannot go to the shell" in result.stderr) == (2, True)


def test_a_placeholder_with_spaces_is_refused_with_the_fix(tmp_path):
    """``${ it }`` is text for QCG-PilotJob (string.Template) and a bad substitution for
    bash: one line naming the place and the fix, nothing run."""
    path = write(tmp_path, "wf.yaml", "tasks:\n  a:\n    foreach: [1]\n"
                                      "    script: echo ${ it } > out.txt\n")
    result = run(tmp_path, path)
    lines = result.stderr.splitlines()
    assert (result.returncode, len(lines)) == (2, 1)
    assert lines[0].startswith("qcgflow run: %s:4: tasks.a.script: ${ it } is not a "
                               "placeholder" % (tmp_path / "wf.yaml"))
    assert lines[0].endswith("write ${it}")
    assert not (tmp_path / "run").exists()


def test_the_examples_use_only_known_placeholders(tmp_path):
    for example in sorted(EXAMPLES.glob("*.yaml")):
        result = cli("compile", example, "-o", tmp_path / example.stem / "r.json",
                     cwd=EXAMPLES)
        assert result.returncode == 0, (example, result.stderr)


# --------------------------------------------------------------------------- beside the file

def _helpers(folder):
    folder.mkdir()
    helper = folder / "helper.sh"
    helper.write_text("#!/bin/bash\necho \"helper $1\"\n")
    helper.chmod(0o755)
    (folder / "data.txt").write_text("beside\n")


def test_scripts_and_programs_beside_the_workflow_file_are_found_there(tmp_path):
    _helpers(tmp_path / "wf")
    path = write(tmp_path / "wf", "wf.yaml", """
        tasks:
          by_script:
            script: ./helper.sh one > a.txt
          by_exec:
            exec: ./helper.sh
            args: [two]
            stdout: b.txt
          swept:
            foreach: [x, y]
            script: |
              ./helper.sh ${itval} > c.${it}.txt
              cat ${workflow_dir}/data.txt >> c.${it}.txt
        """)
    result = run(tmp_path, path)  # the run directory is elsewhere: tmp_path/run
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "run"
    assert [(out / n).read_text() for n in ("a.txt", "b.txt", "c.1.txt")] == \
        ["helper one\n", "helper two\n", "helper y\nbeside\n"]


def test_a_program_missing_beside_the_file_is_still_looked_for_in_the_run_directory(
        tmp_path):
    (tmp_path / "wf").mkdir()
    path = write(tmp_path / "wf", "wf.yaml", """
        tasks:
          make:
            script: printf '#!/bin/sh\\necho made\\n' > made.sh; chmod +x made.sh
          use:
            script: ./made.sh > used.txt
            after: [make]
        """)
    assert run(tmp_path, path).returncode == 0
    assert (tmp_path / "run" / "used.txt").read_text() == "made\n"


# --------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize("option", [["--nodes", "abc"], ["--interval", "x"],
                                    ["--interval", "0"]])
def test_a_usage_error_is_one_line_exit_2_and_makes_nothing(tmp_path, option):
    env = {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    result = cli("run", EXAMPLES / "hello.yaml", *option, cwd=tmp_path, env=env)
    assert (result.returncode, len(result.stderr.splitlines()), result.stdout) == (2, 1, "")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_wd_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "taken").write_text("")
    result = cli("run", EXAMPLES / "hello.yaml", "--wd", tmp_path / "taken", cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (
        2, "qcgflow run: --wd %s: not a directory" % (tmp_path / "taken"))


def test_a_bad_workflow_file_makes_no_run_directory(tmp_path):
    (tmp_path / "tmp").mkdir()
    path = write(tmp_path, "wf.yaml", "tasks:\n  a:\n    exec: /bin/true\n    core: 2\n")
    result = cli("run", path, cwd=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")})
    assert (result.returncode, list((tmp_path / "tmp").iterdir())) == (2, [])


def test_the_service_exits_non_zero_when_it_refused_a_request(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          big:
            exec: /bin/true
            cores: 64
          fine:
            exec: /bin/true
        """)
    assert cli("compile", path, "-o", tmp_path / "r" / "r.json").returncode == 0
    result = cli("service", "--file-path", tmp_path / "r" / "r.json", "--wd", tmp_path / "r",
                 "--nodes", "2")
    assert result.returncode == 4
    assert "request 1: Not enough resources for job big" in result.stderr


# --------------------------------------------------------------------------- pipes

@pytest.mark.parametrize("command", ["status", "compile"])
def test_a_closed_pipe_ends_quietly(tmp_path, command):
    if command == "status":
        assert run(tmp_path, EXAMPLES / "sweep.yaml").returncode == 0
        target = tmp_path / "run"
    else:
        target = EXAMPLES / "sweep.yaml"
    env = child_env()
    # `true` leaves at once, long before the interpreter has started and written: the
    # output meets a closed pipe (`| head -1` does the same to a longer output)
    shell = "%s -m qcgflow.cli %s %s | true; echo ${PIPESTATUS[0]}" % (sys.executable,
                                                                       command, target)
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env,
                            timeout=60)
    assert (result.stderr, result.stdout) == ("", "141\n")

# --------------------------------------------------------------------------- tracebacks

def test_a_remote_traceback_names_the_script_file(tmp_path):
    script = write(tmp_path, "job.py", """
        import qcgflow

        @qcgflow.task
        def boom(x):
            raise ValueError("bad %s" % x)

        qcgflow.run(boom.bind(3), wd="run")
        """)
    result = cli("run", script, cwd=tmp_path)
    assert result.returncode == 1
    assert 'File "%s", line 5, in boom' % script in result.stderr
    assert "<dynamic-code>" not in result.stderr


# --------------------------------------------------------------------------- status

INTERRUPTED = """
tasks:
  sim:
    foreach: {x: [a, b, c, d, e, f]}
    script: |
      if [ ${x} = b ]; then echo "b is bad" >&2; exit 5; fi
      sleep 60
    stdout: sim.${it}.out
  post:
    script: cat sim.*.out
    after: [sim]
"""


def _report_has(wd, name):
    for path in wd.glob(".qcgpjm-service-*/jobs.report"):
        if ('"name":"%s"' % name) in path.read_text().replace(" ", ""):
            return True
    return False


def test_status_of_an_interrupted_run_says_so_and_lists_what_never_ran(tmp_path):
    path = write(tmp_path, "wf.yaml", INTERRUPTED)
    env = child_env()
    wd = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "qcgflow.cli", "run", str(path), "--nodes",
                             "2", "--wd", str(wd), "--quiet"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # b fails at once; a and c then hold both cores for a minute; d, e, f wait
        eventually(lambda: _report_has(wd, "sim:1"), 30, message="sim:1 in jobs.report")
        eventually(lambda: (wd / "sim.2.out").exists(), 30, message="sim.2.out")
        proc.send_signal(signal.SIGINT)
        ran = proc.communicate(timeout=30)[0]
        assert proc.returncode == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the run's own table, then the status's
    assert "workflow wf: interrupted after" in ran.splitlines()[0]
    assert "  post             -        never started" in ran
    result = cli("status", wd)
    out = result.stdout
    assert result.returncode == 3, out
    assert "interrupted (2 of 2 jobs did not finish)" in out.splitlines()[0]
    assert "  sim[x=b]         FAILED   exit code 5\n" in out
    assert "| b is bad" in out
    assert "  sim              -        3 of 6 iterations without a result: 3-5" in out
    assert "  post             -        never started" in out


def test_failures_are_listed_in_iteration_order_with_their_values_and_stderr(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          sim:
            foreach: {v: [a, b, c, d, e, f]}
            script: |
              # the later the iteration, the sooner it ends: the report is in reverse order
              sleep 0.$(( 6 - ${it} ))
              if [ $(( ${it} % 2 )) = 1 ]; then
                echo "first of ${v}" >&2; echo "bad ${v}" >&2; exit 3
              fi
        """)
    out = run(tmp_path, path, "--nodes", "6").stdout  # all at once: 5 fails first, 1 last
    failures = [line.split()[0] for line in out.splitlines() if " FAILED " in line
                and line.startswith("  sim[")]
    assert failures == ["sim[v=b]", "sim[v=d]", "sim[v=f]"]
    block = out[out.index("sim[v=d]"):out.index("sim[v=f]")]
    assert block.splitlines()[2:4] == ["                   | first of d",
                                      "                   | bad d"]


# --------------------------------------------------------------------------- gantt

def test_gantt_charts_mark_the_tasks_that_failed(tmp_path):
    pytest.importorskip("matplotlib", reason="pip install 'qcgflow[reports]'")
    (tmp_path / "matplotlibrc").write_text("svg.fonttype: none\n")  # text stays text
    env = {"MATPLOTLIBRC": str(tmp_path / "matplotlibrc")}
    failing = write(tmp_path, "wf.yaml", """
        tasks:
          sim:
            foreach: [0, 1, 2]
            script: sleep 0.2; exit ${itval}
        """)
    assert run(tmp_path, failing).returncode == 1
    assert cli("report", "gantt", tmp_path / "run", tmp_path / "bad.svg", env=env).returncode \
        == 0
    svg = (tmp_path / "bad.svg").read_text()
    assert "<pattern" in svg and "not succeeded" in svg
    assert "2 not succeeded (hatched)" in svg
    assert cli("run", EXAMPLES / "hello.yaml", "--wd", tmp_path / "good", "--quiet",
               cwd=tmp_path).returncode == 0
    assert cli("report", "gantt", tmp_path / "good", tmp_path / "good.svg", env=env) \
        .returncode == 0
    good = (tmp_path / "good.svg").read_text()
    assert "<pattern" not in good and "not succeeded" not in good


# --------------------------------------------------------------------------- retries

COUNT = 'n=$(cat count.${it} 2>/dev/null || echo 0); echo $((n + 1)) > count.${it}\n'


def test_retries_run_only_the_failed_iterations_again_until_they_succeed(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          flaky:
            foreach: [a, b, c]
            retries: 2
            script: |
              %s
              if [ ${itval} = b ] && [ $n -lt 2 ]; then echo "b fails $n" >&2; exit 4; fi
              echo ${itval}
            stdout: flaky.${it}.out
          fan_in:
            script: cat flaky.*.out > all.txt
            after: [flaky]
        """ % COUNT.strip())
    result = run(tmp_path, path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "run"
    assert [(out / ("count.%d" % i)).read_text() for i in range(3)] == ["1\n", "3\n", "1\n"]
    assert (out / "all.txt").read_text() == "a\nb\nc\n"
    assert "qcgflow: attempt 2 of 3 failed (exit code 4); trying again" in \
        (out / "flaky.1.err").read_text()


def test_the_last_attempts_failure_is_reported_and_the_dependants_are_omitted(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        defaults:
          retries: 1
        tasks:
          broken:
            exec: sh
            args:
              - -c
              - n=$(cat count 2>/dev/null || echo 0); echo $((n + 1)) > count; exit $((n + 7))
          never:
            exec: /bin/true
            after: [broken]
        """)
    result = run(tmp_path, path)
    assert result.returncode == 1
    assert "  broken           FAILED   exit code 8" in result.stdout  # the second attempt's
    assert "  never            OMITTED  dependency 'broken' FAILED" in result.stdout
    assert (tmp_path / "run" / "count").read_text() == "2\n"  # 1 + 1 retry, no more


def test_each_attempt_has_the_tasks_wall_time(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          slow_once:
            script: |
              %s
              if [ $n = 0 ]; then sleep 30; fi
              echo finally
            stdout: slow.out
            wt: 1s
            retries: 1
        """ % COUNT.strip().replace("${it}", "x"))
    result = run(tmp_path, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "slow.out").read_text() == "finally\n"
    assert "attempt 1 of 2 exceeded its wall time (1s); trying again" in \
        (tmp_path / "run" / "slow_once.err").read_text()


def test_python_tasks_retry_in_new_processes(tmp_path):
    (tmp_path / "wf_flaky.py").write_text(
        "import os\n"
        "def flaky(k):\n"
        "    n = int(open('count').read()) if os.path.exists('count') else 0\n"
        "    open('count', 'w').write(str(n + 1))\n"
        "    if n < k:\n"
        "        raise RuntimeError('attempt %d of pid %d' % (n + 1, os.getpid()))\n"
        "    return os.getpid()\n")
    path = write(tmp_path, "wf.yaml", """
        tasks:
          flaky:
            python: wf_flaky:flaky
            args: [2]
            retries: 2
        """)
    result = run(tmp_path, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "count").read_text() == "3"
    stderr = (tmp_path / "run" / ".qcgflow" / "flaky" / "stderr").read_text()
    pids = [line.split()[-1] for line in stderr.splitlines()
            if line.startswith("RuntimeError: attempt")]
    assert len(pids) == 2 and len(set(pids)) == 2, stderr


def test_retries_with_an_mpi_model_are_refused_when_the_file_is_read(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          mpi:
            exec: ./solver
            model: openmpi
            cores: 2
            retries: 1
        """)
    result = cli("compile", path, cwd=tmp_path)
    assert (result.returncode, "tasks.mpi.retries: retries work with the default and "
            "threads models only" in result.stderr) == (2, True)


def test_retries_are_not_part_of_the_resume_key(tmp_path):
    text = "tasks:\n  a:\n    script: echo run >> a.txt\n"
    assert run(tmp_path, write(tmp_path, "wf.yaml", text)).returncode == 0
    again = run(tmp_path, write(tmp_path, "wf.yaml", text + "    retries: 3\n"), "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "run" / "a.txt").read_text() == "run\n"  # reused, not run again


def test_a_compiled_workflow_retries_on_the_upstream_service(tmp_path):
    upstream = pytest.importorskip("upstream_venv", reason="tests/upstream_venv.py")
    try:
        python = upstream.upstream_python()
    except RuntimeError as exc:
        pytest.skip("upstream QCG-PilotJob 0.14.2 cannot be installed: %s" % exc)
    path = write(tmp_path, "wf.yaml", """
        tasks:
          flaky:
            foreach: [a, b]
            retries: 2
            wt: 20s
            script: |
              %s
              if [ ${itval} = b ] && [ $n -lt 2 ]; then exit 4; fi
              echo ${itval}
            stdout: flaky.${it}.out
        """ % COUNT.strip())
    run_dir = tmp_path / "up"
    assert cli("compile", path, "-o", run_dir / "req.json").returncode == 0
    done = subprocess.run([str(python.parent / "qcg-pm-service"), "--file-path", "req.json",
                           "--wd", ".", "--nodes", "2"], cwd=run_dir, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [(run_dir / ("count.%d" % i)).read_text() for i in range(2)] == ["1\n", "3\n"]
    assert (run_dir / "flaky.1.out").read_text() == "b\n"


def test_the_placeholder_check_knows_every_runtime_variable():
    from qcgflow.workflows import placeholders as workflow_placeholders
    from qcgflow.runtime.variables import EXECUTION_VARIABLES, SUBMIT_VARIABLES
    known = set(workflow_placeholders.known_names([], True))
    assert EXECUTION_VARIABLES | SUBMIT_VARIABLES <= known
    assert known - EXECUTION_VARIABLES - SUBMIT_VARIABLES == {"workflow_dir"}


def test_status_of_a_killed_run_says_killed(tmp_path):
    path = write(tmp_path, "wf.yaml", "tasks:\n  a:\n    foreach: [1, 2]\n"
                                      "    script: sleep 3\n")
    env = child_env()
    wd = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "qcgflow.cli", "run", str(path), "--nodes",
                             "2", "--wd", str(wd), "--quiet"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        eventually(lambda: list(wd.glob(".qcgpjm-service-*/journal.jsonl")), 30,
                   message="the service's journal")
        running = cli("status", wd)
        assert (running.returncode, running.stdout.splitlines()[0].endswith(": running")) \
            == (3, True), running.stdout
        # the run, its service and what that started, wherever their group
        kill(tree(proc.pid))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = cli("status", wd)
    assert killed.returncode == 3
    assert "killed (its service ended without writing its final status)" in \
        killed.stdout.splitlines()[0]
