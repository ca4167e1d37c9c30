"""Big sweeps from workflow files stay small: a range sweep from 0 compiles to a range
iteration (O(1) in the requests file), and the run's progress keeps no entry per
succeeded iteration. benchmarks/sweep_memory_bench.py measures the memory itself."""

from qcgflow.cli.run_summary import summary
from qcgflow.cli.workflow import Progress
from qcgflow.workflows.file import load_workflow

from support.services import cli
from workflows_harness import write


def _iteration(tmp_path, foreach: str):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          t:
            exec: /bin/echo
            args: ["${itval}"]
            foreach: %s
        """ % foreach)
    return load_workflow(str(path)).jobs[0]["iteration"]


def test_a_range_from_zero_compiles_to_a_range_iteration_others_keep_their_values(tmp_path):
    assert _iteration(tmp_path, "{range: [0, 100000]}") == {"start": 0, "stop": 100000}
    assert _iteration(tmp_path, "{range: [1, 4]}") == {"values": ["1", "2", "3"]}
    assert _iteration(tmp_path, "{range: [0, 6, 2]}") == {"values": ["0", "2", "4"]}
    assert _iteration(tmp_path, "[b, a]") == {"values": ["b", "a"]}


def test_itval_of_a_range_sweep_is_still_its_value_when_run(tmp_path):
    write(tmp_path, "wf.yaml", """
        tasks:
          t:
            script: echo v${itval} > out.${itval}
            foreach: {range: [0, 4]}
          u:
            script: echo v${itval} > out.${itval}
            foreach: {range: [5, 7]}
        """)
    run = cli("run", tmp_path / "wf.yaml", "--wd", tmp_path / "run", "--nodes", "2",
              "--quiet")
    assert run.returncode == 0, run.stderr
    for value in (0, 1, 2, 3, 5, 6):
        assert (tmp_path / "run" / ("out.%d" % value)).read_text() == "v%d\n" % value


def test_progress_keeps_no_entry_per_succeeded_iteration_and_still_lists_missing_ones():
    progress = Progress([{"name": "t", "iteration": {"start": 0, "stop": 1000}}])
    progress.update({"name": "t:%d" % i, "state": "SUCCEED"} for i in range(990))
    progress.update([{"name": "t:995", "state": "FAILED", "messages": "exit 3"},
                     {"name": "t", "state": "FAILED"}])
    assert list(progress.iterations) == ["t:995"]  # only what did not succeed is kept
    assert progress.done_units() == 991
    assert progress.unit_counts() == {"SUCCEED": 990, "FAILED": 1}
    text = summary(progress, "/nonexistent", "title")
    assert "t:995" in text and "1 of 1000 iterations did not succeed" in text
    progress.ended = True
    progress.states.pop("t")
    text = summary(progress, "/nonexistent", "title")
    assert "9 of 1000 iterations without a result: 990-994, 996-999" in text
