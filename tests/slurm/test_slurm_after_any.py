"""``after_any`` on the dev Slurm cluster (issue 21, item 4): an ensemble with one failing
member, run by ``qcgflow run`` inside a 2-node allocation, keeps the good members' results
in its fan-in and names the failed member by its parameter."""

import sys

from support.slurm import require_slurm, salloc_run

ENSEMBLE = """
tasks:
  md:
    foreach: {T: [1.0, 1.3, 1.6, 1.9]}
    script: |
      test "${T}" != 1.3 || { echo "typo in in.md" >&2; exit 3; }
      echo "${T} $SLURMD_NODENAME" > energy.${it}.txt
  table:
    after_any: [md]
    script: cat energy.*.txt > table.txt
"""


def test_after_any_fan_in_keeps_the_good_members_under_slurm(tmp_path):
    require_slurm()
    (tmp_path / "wf.yaml").write_text(ENSEMBLE)
    wd = tmp_path / "run"
    done = salloc_run([sys.executable, "-m", "qcgflow.cli", "run", str(tmp_path / "wf.yaml"),
                       "--wd", str(wd), "--quiet"], args=["--exclusive"], timeout=150,
                      cwd=tmp_path)
    rows = [line.split() for line in (wd / "table.txt").read_text().splitlines()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert [row[0] for row in rows] == ["1.0", "1.6", "1.9"]
    assert {row[1] for row in rows} <= {"n1", "n2"}
    assert "  md[T=1.3]        FAILED   exit code 3\n" in done.stdout
