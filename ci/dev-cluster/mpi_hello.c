/* mpi_hello: the MPI program of qcgflow's Slurm/MPI tests.
 *
 * Prints one line per rank:
 *   mpi_hello rank=R size=S node=NODE cpus=LIST allreduce=ok|BAD host=HOST
 * HOST is gethostname(): on the dev cluster every slurmd (and so every task) runs in a UTS
 * namespace named after its node, so HOST is the node an MPI library itself believes the
 * rank runs on. NODE is argv[1] when given, else $SLURMD_NODENAME, else HOST (the ranks
 * Open MPI's mpirun starts on its own node, under a qcgflow agent, lack SLURMD_NODENAME).
 * LIST is the Cpus_allowed_list line of /proc/self/status, i.e. the binding the launcher
 * applied. One MPI_Allreduce checks the transport, not just the launcher; the exit
 * status is 1 when it returns a wrong sum. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void allowed_cpus(char *out, size_t len) {
    char line[512];
    FILE *f = fopen("/proc/self/status", "r");
    snprintf(out, len, "?");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
            char *v = line + 18;
            while (*v == ' ' || *v == '\t')
                v++;
            v[strcspn(v, "\n")] = '\0';
            snprintf(out, len, "%s", v);
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    int rank = 0, size = 0, total = 0;
    char cpus[256], host[256] = "-";
    const char *node = argc > 1 ? argv[1] : getenv("SLURMD_NODENAME");

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&rank, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    allowed_cpus(cpus, sizeof cpus);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "-");
    host[sizeof host - 1] = '\0';
    if (!node || !*node)
        node = host;
    int good = total == size * (size - 1) / 2;
    printf("mpi_hello rank=%d size=%d node=%s cpus=%s allreduce=%s host=%s\n", rank, size,
           node, cpus, good ? "ok" : "BAD", host);
    fflush(stdout);
    MPI_Finalize();
    return good ? 0 : 1;
}
