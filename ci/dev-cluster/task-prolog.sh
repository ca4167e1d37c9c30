#!/bin/sh
# TaskProlog of the qcgflow dev cluster: Slurm runs it before every task and adds each
# "export NAME=VALUE" line it prints to the task's environment.
#
# All virtual nodes are one host. Open MPI's shared-memory transport (the vader BTL)
# derives its segment file names from the host name, job and local rank, so local rank 0
# on n1 and local rank 0 on n2 would open the same file and crash. A backing directory
# per virtual node keeps them apart; orted daemons started by srun inherit it, so this
# covers both `srun --mpi=pmix` and `mpirun` inside an allocation. The node's own
# directory always wins: a value in the environment was inherited from the step that
# started this one (a batch script on n1 running srun on n2) and names another node.
node="${SLURMD_NODENAME:-}"
[ -n "$node" ] || exit 0
dir="/dev/shm/qcgflow-dev-$node"
mkdir -p "$dir" 2>/dev/null && chmod 1777 "$dir" 2>/dev/null
[ -d "$dir" ] && echo "export OMPI_MCA_btl_vader_backing_directory=$dir"
# The same for Open MPI's session directories (<base>/ompi.<host>.<uid>/jf.<job>/...):
# ranks of one srun step on n1 and n2 would share one job directory, and the first node
# to finalize removes it under the other's feet (seen once: a rank on n2 crashed in
# MPI_Init with a shared-memory segment missing).
[ -d "$dir" ] && echo "export OMPI_MCA_orte_tmpdir_base=$dir"
# PMIx clients keep the job's data in a shared-memory store (gds ds12/ds21) that each
# node's slurmstepd publishes under a name made from the namespace: the virtual nodes of
# one step publish under the same name on this one host. The hash store keeps it in each
# process (an MPI_Init crash or hang in srun --mpi=pmix steps over n1 and n2, about one
# run of tests/slurm in four).
echo "export PMIX_MCA_gds=hash"
exit 0
