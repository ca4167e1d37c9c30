"""A tiny MPI hello program for tests of the execution models (Open MPI and MPICH builds).

Each rank prints one line: ``rank=R size=S sum=S node=<SLURMD_NODENAME or -> cpus=<list>``
(``sum`` is an Allreduce of ones: all ranks really talked to each other; ``cpus`` is the
rank's ``Cpus_allowed_list`` from /proc/self/status).

* ``build_hello(directory, compiler)`` compiles it (``mpicc`` for Open MPI, ``mpicc.mpich``
  for MPICH) or skips the test with a reason saying what to install.
* ``parse_hello(text)`` -> list of dicts, sorted by rank.
* ``MPI_ENV``: what Open MPI needs to run as root (CI runs as root).
"""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

HELLO_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void allowed_cpus(char *out, size_t size) {
    char line[512];
    FILE *status = fopen("/proc/self/status", "r");
    out[0] = 0;
    if (!status) return;
    while (fgets(line, sizeof line, status)) {
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
            char *value = line + 18;
            while (*value == ' ' || *value == '\t') value++;
            value[strcspn(value, "\n")] = 0;
            snprintf(out, size, "%s", value);
            break;
        }
    }
    fclose(status);
}

int main(int argc, char **argv) {
    int rank, size, one = 1, sum = 0;
    char cpus[256];
    const char *node = getenv("SLURMD_NODENAME");
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    allowed_cpus(cpus, sizeof cpus);
    printf("rank=%d size=%d sum=%d node=%s cpus=%s\n", rank, size, sum, node ? node : "-", cpus);
    MPI_Finalize();
    return 0;
}
"""

COMPILERS = {
    "mpicc": "Open MPI (apt-get install openmpi-bin libopenmpi-dev)",
    "mpicc.mpich": "MPICH (apt-get install mpich libmpich-dev)",
}

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}

_LINE = re.compile(r"^rank=(\d+) size=(\d+) sum=(\d+) node=(\S+) cpus=(\S*)$")


def require(program: str, what: str) -> str:
    """The path of ``program``, or skip the test naming what to install."""
    path = shutil.which(program)
    if path is None:
        pytest.skip("%s not found: install %s" % (program, what))
    return path


def build_hello(directory: Path, compiler: str = "mpicc") -> Path:
    """Compile the hello program with ``compiler`` into ``directory``; skip if impossible."""
    require(compiler, COMPILERS.get(compiler, compiler))
    source = directory / "mpi_hello.c"
    source.write_text(HELLO_C)
    binary = directory / ("hello-" + compiler.replace(".", "-"))
    done = subprocess.run([compiler, "-o", str(binary), str(source)], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip("%s cannot compile an MPI program: %s" % (compiler, done.stderr[-300:]))
    return binary


def parse_hello(text: str) -> List[Dict[str, str]]:
    """The hello lines of ``text`` as dicts (rank, size, sum, node, cpus), sorted by rank."""
    ranks = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            ranks.append(dict(zip(("rank", "size", "sum", "node", "cpus"), match.groups())))
    return sorted(ranks, key=lambda r: int(r["rank"]))
