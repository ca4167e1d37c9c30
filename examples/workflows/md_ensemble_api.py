"""The LAMMPS ensemble of md_ensemble.yaml written with the graph API.

    python examples/workflows/md_ensemble_api.py [WD]      (default WD: ./md-api-run)

Inside a Slurm allocation (e.g. ``sbatch -N2 --exclusive --wrap "python
examples/workflows/md_ensemble_api.py"``) ``qcgflow.run`` uses every node of it; elsewhere
it runs on this host's cores. Needs Debian's ``lammps`` (``lmp``) and Open MPI.

Each member is ``qcgflow.mpi("lmp", ...)`` mapped over the temperatures: 2 Open MPI ranks,
packed on one node when one has room. ``--report-bindings`` makes Open MPI print each rank's
host and core to the member's stderr file (``CommandResult.stderr``), to check against the
member's allocation in ``WD/.qcgpjm-service-*/jobs.report``. The fan-in is a Python task: it
reads the ``final_energy T E`` line of every member's stdout and writes ``WD/energies.txt``
sorted by temperature -- the same table as md_ensemble.yaml's.
"""

import os
import sys

import qcgflow

TEMPERATURES = ["1.0", "1.2", "1.4", "1.6"]

# the LJ melt of md_ensemble.yaml; T comes from -var T
LJ_MELT = """units lj
atom_style atomic
lattice fcc 0.8442
region box block 0 5 0 5 0 5
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create ${T} 87287 loop geom
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0 2.5
neighbor 0.3 bin
neigh_modify every 20 delay 0 check no
fix 1 all nve
thermo 100
run 200
print "final_energy ${T} $(etotal)"
"""


@qcgflow.task
def table(members, path):
    """Fan-in: the ``final_energy T E`` lines of every member, sorted by T, written to
    ``path`` (one line each, as md_ensemble.yaml's table task writes) and returned."""
    lines = []
    for member in members:
        with open(member.stdout) as out:
            lines += [line.rstrip("\n") for line in out if line.startswith("final_energy")]
    lines.sort(key=lambda line: float(line.split()[1]))
    with open(path, "w") as out:
        out.write("".join(line + "\n" for line in lines))
    return lines


def main(wd: str) -> None:
    wd = os.path.abspath(wd)
    os.makedirs(wd, exist_ok=True)
    with open(os.path.join(wd, "lj_melt.in"), "w") as out:
        out.write(LJ_MELT)
    # ${T} inside the input is LAMMPS's variable, not a placeholder: the input is a file
    md = qcgflow.mpi("lmp", args=["-in", "lj_melt.in", "-var", "T", "${itval}",
                                  "-log", "none"],
                     cores=2, model="openmpi", model_opts={"mpirun_args": ["--report-bindings"]},
                     name="md", env={"OMPI_ALLOW_RUN_AS_ROOT": "1",  # containers run as root
                                     "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    members = md.map(TEMPERATURES)
    for line in qcgflow.run(table.bind(members, os.path.join(wd, "energies.txt")), wd=wd):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "md-api-run")
