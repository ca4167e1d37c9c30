"""Execution models in local mode: a real service starting a real MPI hello (issue 4, item 3).

Local mode has virtual nodes (``--nodes 2,2``): all ranks start on this host, nothing is
bound, and srunmpi is refused at submit (it needs a Slurm allocation).
"""

from pathlib import Path

import pytest

from support.mpi import MPI_ENV, build_hello, parse_hello, require
from support.jobs import job, submit
from support.services import run_service

MODULES_INIT = Path("/usr/share/modules/init/bash")


@pytest.fixture(scope="session")
def hello(tmp_path_factory):
    """The hello program built with Open MPI's mpicc."""
    return build_hello(tmp_path_factory.mktemp("ompi"), "mpicc")


@pytest.fixture(scope="session")
def hello_mpich(tmp_path_factory):
    """The hello program built with MPICH's mpicc.mpich."""
    return build_hello(tmp_path_factory.mktemp("mpich"), "mpicc.mpich")


def ranks_of(result, name, path="out.txt"):
    assert result.state(name) == "SUCCEED", result.describe() + _maybe(result, "err.txt")
    return parse_hello(result.read(path))


def _maybe(result, path):
    try:
        return "\n--- %s\n%s" % (path, result.read(path))
    except OSError:
        return ""


def test_openmpi_starts_one_rank_per_allocated_core(tmp_path, hello):
    require("mpirun", "Open MPI (apt-get install openmpi-bin)")
    result = run_service(tmp_path, [submit(job("a", str(hello), cores=3, model="openmpi",
                                               stdout="out.txt", stderr="err.txt"))],
                         nodes="2,2", env=MPI_ENV, timeout=60)
    ranks = ranks_of(result, "a")
    assert [(r["rank"], r["size"], r["sum"]) for r in ranks] == [
        ("0", "3", "3"), ("1", "3", "3"), ("2", "3", "3")]


def test_openmpi_with_more_virtual_cores_than_the_host_has(tmp_path, hello):
    require("mpirun", "Open MPI (apt-get install openmpi-bin)")
    result = run_service(tmp_path, [submit(job("a", str(hello), cores=5, model="openmpi",
                                               stdout="out.txt", stderr="err.txt"))],
                         nodes="8", env=MPI_ENV, timeout=60)
    assert len(ranks_of(result, "a")) == 5


def test_openmpi_model_opts_mpirun_and_args(tmp_path, hello):
    mpirun = require("mpirun", "Open MPI (apt-get install openmpi-bin)")
    result = run_service(tmp_path, [submit(job(
        "a", str(hello), cores=2, model="openmpi", stdout="out.txt", stderr="err.txt",
        model_opts={"mpirun": mpirun, "mpirun_args": ["--tag-output"]}))],
        env=MPI_ENV, timeout=60)
    assert result.state("a") == "SUCCEED", result.describe() + _maybe(result, "err.txt")
    # --tag-output prefixes every line with [job,rank]: the extra argument reached mpirun
    tags = sorted(line.split("<")[0].split(",")[-1] for line in
                  result.read("out.txt").splitlines())
    assert tags == ["0]", "1]"]


def test_intelmpi_model_through_mpich_hydra(tmp_path, hello_mpich):
    """Intel MPI is absent: its launcher is hydra, so MPICH's mpiexec.hydra stands in."""
    hydra = require("mpiexec.hydra", "MPICH (apt-get install mpich)")
    result = run_service(tmp_path, [submit(job(
        "a", str(hello_mpich), cores=3, model="intelmpi", model_opts={"mpirun": hydra},
        stdout="out.txt", stderr="err.txt"))], nodes="2,2", timeout=60)
    ranks = ranks_of(result, "a")
    assert [(r["rank"], r["size"], r["sum"]) for r in ranks] == [
        ("0", "3", "3"), ("1", "3", "3"), ("2", "3", "3")]


@pytest.mark.modules
@pytest.mark.skipif(not MODULES_INIT.exists(),
                    reason="environment modules are not installed "
                           "(apt-get install environment-modules)")
def test_module_load_wraps_mpirun(tmp_path, hello):
    """The module puts the program on PATH: mpirun only finds it inside the module's env."""
    require("mpirun", "Open MPI (apt-get install openmpi-bin)")
    bindir = tmp_path / "qcgtest-bin"
    bindir.mkdir()
    wrapper = bindir / "qcgtest-mpi-hello"
    wrapper.write_text('#!/bin/sh\necho "var=$QCGTEST_VAR"\nexec %s\n' % hello)
    wrapper.chmod(0o755)
    modulefiles = tmp_path / "modulefiles"
    (modulefiles / "qcgtest").mkdir(parents=True)
    (modulefiles / "qcgtest" / "1.0").write_text(
        "#%%Module1.0\nsetenv QCGTEST_VAR hello-from-module\nprepend-path PATH %s\n" % bindir)
    result = run_service(tmp_path, [submit(job(
        "a", "qcgtest-mpi-hello", cores=2, model="openmpi", modules=["qcgtest"],
        env={"MODULEPATH": str(modulefiles)}, stdout="out.txt", stderr="err.txt"))],
        env=MPI_ENV, timeout=60)
    ranks = ranks_of(result, "a")
    assert (len(ranks), result.read("out.txt").count("var=hello-from-module")) == (2, 2)


def test_srunmpi_is_refused_in_local_mode(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", model="srunmpi"))], timeout=30)
    assert result.error_messages() == [
        "Job 'a': execution model 'srunmpi' is not available in this mode (available: "
        "default, threads, openmpi, intelmpi)"]


def test_local_mode_does_not_bind_the_default_model(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "a", script="grep Cpus_allowed_list /proc/self/status", stdout="out.txt"))],
        nodes="1", timeout=30)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("out.txt").split()[-1] == _own_cpus()


def _own_cpus():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split()[-1]
    return ""
