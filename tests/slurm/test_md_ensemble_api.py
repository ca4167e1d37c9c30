"""A real MPI application ensemble under the dev cluster's Slurm, through the graph API.

``examples/workflows/md_ensemble_api.py`` (LAMMPS, Debian's ``lmp``: ``qcgflow.mpi(...)``
mapped over 4 temperatures, 2 Open MPI ranks each, a Python fan-in writing the table) and
``examples/workflows/md_ensemble.yaml`` (the same ensemble as a workflow file) run one after
the other inside one ``sbatch -N2 --exclusive`` job. Checked: the graph API's table is the
workflow file's, line for line (same program, seed and rank count: the same energies); and
every rank of every graph-API member ran on the host and core its allocation in jobs.report
names (Open MPI's ``--report-bindings`` lines carry the host name, which the dev cluster
sets per node) -- each 2-rank member packed on one node.
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

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
TEMPERATURES = ("1.0", "1.2", "1.4", "1.6")
BINDING = re.compile(r"^\[([^:\]]+):\d+\] MCW rank (\d+) bound to socket \d+\[core (\d+)\[",
                     re.M)
ALLOCATION = re.compile(r"^([^\[,]+)\[([\d:]+)\]$")


def _report(wd: Path) -> dict:
    """The jobs.report entries of the run in ``wd``, by job name."""
    entries = {}
    for path in wd.glob(".qcgpjm-service-*/jobs.report"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            entries[entry["name"]] = entry
    return entries


@pytest.mark.timeout(300)
def test_lammps_ensemble_graph_api_matches_workflow_file(tmp_path):
    require_mpi_hello()  # the cluster is up and Open MPI works on it
    if shutil.which("lmp") is None:
        pytest.skip("LAMMPS is not installed: apt-get install lammps (Debian's lmp)")
    api_wd, file_wd = tmp_path / "api", tmp_path / "file"
    api = [sys.executable, str(EXAMPLES / "md_ensemble_api.py"), str(api_wd)]
    workflow = [sys.executable, "-m", "qcgflow.cli", "run", str(EXAMPLES / "md_ensemble.yaml"),
                "--wd", str(file_wd), "--quiet"]
    result = sbatch_and_wait("#!/bin/bash\nset -e\n%s\n%s\n"
                             % (shlex.join(api), shlex.join(workflow)),
                             ["-N2", "--exclusive"], timeout=240)
    assert result.state == "COMPLETED", result.stdout

    table = (api_wd / "energies.txt").read_text().split("\n")[:-1]
    assert [line.split()[:2] for line in table] == [
        ["final_energy", t] for t in TEMPERATURES], table
    assert all(float(line.split()[2]) < 0 for line in table), table  # bound LJ liquid
    assert table == (file_wd / "energies.txt").read_text().split("\n")[:-1]
    assert "\n".join(table) in result.stdout  # the script prints the table it returns

    report = _report(api_wd)
    for it in range(len(TEMPERATURES)):
        allocation = report["md:%d" % it]["runtime"]["allocation"]
        match = ALLOCATION.match(allocation)
        assert match, "member %d spans nodes: %s" % (it, allocation)  # packed: one node
        node, cores = match.group(1), match.group(2).split(":")
        ranks = sorted((int(rank), host, core) for host, rank, core in
                       BINDING.findall((api_wd / ("md.%d.err" % it)).read_text()))
        assert ranks == [(0, node, cores[0]), (1, node, cores[1])], (it, allocation, ranks)
    # the allocation's two nodes both ran members: 4 two-rank members, 2 CPUs per node
    assert len({report["md:%d" % it]["runtime"]["allocation"].split("[")[0]
                for it in range(len(TEMPERATURES))}) == 2, report
