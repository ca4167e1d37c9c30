"""A real MPI application ensemble under the dev cluster's Slurm, through a workflow file.

``examples/workflows/md_ensemble.yaml`` (LAMMPS, Debian's ``lmp``: 4 temperatures, 2 Open
MPI ranks each, a fan-in table) runs with ``qcgflow run`` inside ``sbatch -N2 --exclusive``.
Checked: the table has every temperature's final energy, and every rank of every member
ran on the host and core its allocation in jobs.report names (Open MPI's
``--report-bindings`` lines carry the rank's host name, which the dev cluster sets per
node) -- each 2-rank member packed on one node.
"""

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from support.slurm import require_mpi_hello, sbatch_and_wait

pytestmark = pytest.mark.slurm

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "md_ensemble.yaml"
BINDING = re.compile(r"^\[([^:\]]+):\d+\] MCW rank (\d+) bound to socket \d+\[core (\d+)\[",
                     re.M)
ALLOCATION = re.compile(r"^([^\[,]+)\[([\d:]+)\]$")


@pytest.mark.timeout(300)
def test_lammps_ensemble_ranks_run_where_allocated(tmp_path):
    require_mpi_hello()  # the cluster is up and Open MPI works on it
    if shutil.which("lmp") is None:
        pytest.skip("LAMMPS is not installed: apt-get install lammps (Debian's lmp)")
    wd = tmp_path / "run"
    command = [sys.executable, "-m", "qcgflow.cli", "run", str(EXAMPLE), "--wd", str(wd),
               "--quiet"]
    result = sbatch_and_wait("#!/bin/bash\n%s\n" % shlex.join(command),
                             ["-N2", "--exclusive"], timeout=240)
    assert result.state == "COMPLETED", result.stdout

    table = (wd / "energies.txt").read_text().split("\n")[:-1]
    assert [line.split()[:2] for line in table] == [
        ["final_energy", t] for t in ("1.0", "1.2", "1.4", "1.6")], table
    assert all(float(line.split()[2]) < 0 for line in table), table  # bound LJ liquid

    report = {}
    for path in wd.glob(".qcgpjm-service-*/jobs.report"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            report[entry["name"]] = entry
    for it in range(4):
        allocation = report["md:%d" % it]["runtime"]["allocation"]
        match = ALLOCATION.match(allocation)
        assert match, "member %d spans nodes: %s" % (it, allocation)  # packed: one node
        node, cores = match.group(1), match.group(2).split(":")
        ranks = sorted((int(rank), host, core) for host, rank, core in
                       BINDING.findall((wd / ("md.%d.err" % it)).read_text()))
        assert ranks == [(0, node, cores[0]), (1, node, cores[1])], (it, allocation, ranks)
