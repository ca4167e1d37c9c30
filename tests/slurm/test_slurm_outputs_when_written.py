"""Default output files created only when written, on the dev Slurm cluster: the node
agents (launch/agent.py) hold the unnamed files and name them before reporting the end."""

import sys

from support.slurm import require_slurm, salloc_run

SWEEP = """
tasks:
  t:
    script: |
      if [ $((${it} % 3)) = 0 ]; then echo "on $(hostname)"; fi
      if [ ${it} = 4 ]; then echo "boom on $(hostname)" >&2; exit 3; fi
    foreach:
      i: {range: [0, 8]}
"""


def test_a_sweep_on_two_nodes_leaves_only_what_was_written(tmp_path):
    require_slurm()
    (tmp_path / "wf.yaml").write_text(SWEEP)
    done = salloc_run([sys.executable, "-m", "qcgflow.cli", "run", str(tmp_path / "wf.yaml"),
                       "--wd", str(tmp_path / "run"), "--quiet"], args=["--exclusive"],
                      timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    run = tmp_path / "run"
    left = sorted(p.name for p in run.iterdir() if p.name.startswith("t."))
    assert left == ["t.0.out", "t.3.out", "t.4.err", "t.6.out"]
    nodes = {(run / name).read_text().split()[-1] for name in ("t.0.out", "t.3.out", "t.6.out")}
    assert nodes <= {"n1", "n2"} and len(nodes) >= 1
    assert "| boom on n" in done.stdout
    logs = "".join(p.read_text() for p in run.glob(".qcgpjm-service-*/service.log"))
    assert ("node n1 ready" in logs, "node n2 ready" in logs) == (True, True)  # agents ran them
