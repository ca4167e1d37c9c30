"""Helpers for tests that run on the dev Slurm cluster (``ci/dev-cluster/dev-cluster.sh``).

The cluster is real: one slurmctld and one ``slurmd -N nX`` per virtual node, all on this
host, plus Open MPI, MPICH, environment modules and ssh to the node names. Tests call
:func:`require_slurm` first; it skips the test, with a reason that says how to start the
cluster, when no usable cluster answers.

Facts every test should know (details in ``ci/dev-cluster/README.md``):

* every node's slurmd runs in a UTS namespace of its own: a task on nX sees
  ``hostname`` = nX (as MPI libraries do); ``SLURMD_NODENAME`` tells the same;
* right after a job ends its nodes may still be completing, so tests that care which
  nodes they get pin them (``-w n1,n2``), as :func:`salloc_run` does;
* ``salloc`` runs its command in a process group of its own, so a plain timeout does not
  stop it; :func:`run_bounded` kills the whole process tree;
* there is no accounting (no ``sacct``): finished jobs are read with ``scontrol show job``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from .eventually import WaitTimeout, eventually
from .processes import REPO, stop_tree  # noqa: F401  (REPO: for the Slurm tests)
UP_COMMAND = "bash ci/dev-cluster/dev-cluster.sh up"
SKIP_REASON = "no dev Slurm cluster: run `%s`" % UP_COMMAND

NODES = tuple(os.environ.get("QCGFLOW_DEV_NODES", "n1 n2 n3 n4").split())
PARTITION = os.environ.get("QCGFLOW_DEV_PARTITION", "debug")
PREFIX = Path(os.environ.get("QCGFLOW_DEV_PREFIX", "/opt/qcgflow-dev"))
MPI_HELLO = Path(os.environ.get("QCGFLOW_DEV_MPI_HELLO") or PREFIX / "bin" / "mpi_hello")
MPI_HELLO_MPICH = Path(os.environ.get("QCGFLOW_DEV_MPI_HELLO_MPICH")
                       or PREFIX / "bin" / "mpi_hello.mpich")
MODULE = os.environ.get("QCGFLOW_DEV_MODULE", "qcgtest/1.0")
MODULE_NAME = MODULE.split("/")[0]
MODULEFILES = Path(os.environ.get("QCGFLOW_DEV_MODULEFILES") or PREFIX / "modulefiles")
MODULE_VAR = ("QCGTEST_VAR", "hello-from-module")
MODULE_COMMAND = "qcgtest-hello"

FINAL_JOB_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "OUT_OF_MEMORY"})
USABLE_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing", "planned"})

_HELLO_LINE = re.compile(
    r"^mpi_hello rank=(\d+) size=(\d+) node=(\S+) cpus=(\S+) allreduce=(\w+)"
    r"(?: host=(\S+))?$", re.M)


def cluster_env(extra: dict | None = None) -> dict:
    """Environment for Slurm and MPI commands run by tests.

    Returns a copy of ``os.environ`` plus ``SLURM_CONF`` (default ``/etc/slurm/slurm.conf``)
    and the two variables without which Open MPI refuses to run as root, then ``extra``.
    """
    env = dict(os.environ)
    env.setdefault("SLURM_CONF", "/etc/slurm/slurm.conf")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.update(extra or {})
    return env


_JOB_ID_IN_OUTPUT = re.compile(r"\b(?:job|allocation|jobid)[ =](\d+)", re.I)


def run_bounded(argv: list[str], timeout: float, env: dict | None = None,
                cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion within ``timeout`` seconds, capturing text output.

    On timeout the command and all its descendants (also those in other process groups,
    such as the command ``salloc`` starts) are stopped, any Slurm job id the command
    printed ("job 23 queued", "Granted job allocation 23") is cancelled, and
    ``pytest.fail`` reports the command and its output. The returned object's
    ``returncode`` is not checked: callers assert on it.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env if env is not None else cluster_env(), cwd=cwd,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_tree(proc.pid)  # SIGTERM first: srun and salloc give up their jobs themselves
        out, err = proc.communicate()
        job_ids = sorted(set(_JOB_ID_IN_OUTPUT.findall(err)))
        if job_ids:
            subprocess.run(["scancel", *job_ids], capture_output=True, timeout=20,
                           env=cluster_env())
        pytest.fail("%r did not finish within %ss (cancelled jobs: %s); stdout: %r stderr: %r"
                    % (argv, timeout, job_ids or "none", out[-2000:], err[-2000:]))
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@functools.lru_cache(maxsize=1)
def cluster_problem() -> str | None:
    """Why the dev cluster is unusable, or None when it is usable.

    Usable means: ``sinfo``/``scontrol`` exist, ``scontrol ping`` reports the controller
    UP, and every node of :data:`NODES` is in partition :data:`PARTITION` in a usable state
    (idle, or busy with jobs; not down, drained or unresponsive). The answer is computed
    once per test session.
    """
    for tool in ("sinfo", "scontrol", "srun", "salloc", "sbatch"):
        if shutil.which(tool) is None:
            return "%s not found on PATH" % tool
    conf = cluster_env()["SLURM_CONF"]
    if not os.path.isfile(conf):
        # scontrol would retry for a minute before giving up
        return "no Slurm configuration file %s" % conf
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                              timeout=20, env=cluster_env())
        if "is UP" not in ping.stdout:
            return "scontrol ping: %s" % (ping.stdout + ping.stderr).strip()
        info = subprocess.run(["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%N %T"],
                              capture_output=True, text=True, timeout=20, env=cluster_env())
    except subprocess.TimeoutExpired as exc:
        return "%s did not answer within %ss" % (exc.cmd[0], exc.timeout)
    states = dict(line.split(None, 1) for line in info.stdout.splitlines() if " " in line)
    bad = ["%s=%s" % (node, states.get(node, "absent")) for node in NODES
           if states.get(node) not in USABLE_NODE_STATES]
    if bad:
        return "nodes not usable in partition %s: %s" % (PARTITION, " ".join(bad))
    return None


def require_slurm() -> None:
    """Skip the calling test unless the dev cluster is usable (see :func:`cluster_problem`)."""
    problem = cluster_problem()
    if problem:
        pytest.skip("%s (%s)" % (SKIP_REASON, problem))


def require_mpi_hello(mpich: bool = False) -> Path:
    """Skip unless the cluster is usable and the MPI test program is built; return its path.

    Args:
        mpich: the MPICH build (``mpi_hello.mpich``) instead of the Open MPI one.
    """
    require_slurm()
    path = MPI_HELLO_MPICH if mpich else MPI_HELLO
    if not os.access(path, os.X_OK):
        pytest.skip("%s not built: run `%s` (it compiles ci/dev-cluster/mpi_hello.c)"
                    % (path, UP_COMMAND))
    return path


def parse_mpi_hello(text: str) -> list[dict]:
    """The lines ``mpi_hello`` printed, as dicts (rank, size, node, cpus, allreduce, host), by
    rank; host is the rank's own host name ("" from an mpi_hello built before it printed it)."""
    rows = [{"rank": int(m[0]), "size": int(m[1]), "node": m[2], "cpus": m[3],
             "allreduce": m[4], "host": m[5]} for m in _HELLO_LINE.findall(text)]
    return sorted(rows, key=lambda row: row["rank"])


def job_state(job_id: str) -> str:
    """The current ``JobState`` of a job per ``scontrol show job -o`` ('' if unknown)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, timeout=20, env=cluster_env()).stdout
    match = re.search(r"\bJobState=(\S+)", out)
    return match.group(1) if match else ""


@dataclass
class BatchResult:
    """Outcome of :func:`sbatch_and_wait`: job id, final ``JobState``, the job's stdout."""

    job_id: str
    state: str
    stdout: str


def sbatch_and_wait(script_text: str, args: list[str] | tuple = (), timeout: float = 60,
                    env: dict | None = None) -> BatchResult:
    """Submit a batch script and wait for the job to reach a final state.

    Submits with ``sbatch --parsable`` and polls ``scontrol show job -o`` (``sbatch
    --wait`` polls every 2-10 s, far too slowly). The job's stdout and stderr go to one
    temporary file that is read and removed at the end.

    Args:
        script_text: the whole script, starting with its ``#!`` line.
        args: extra sbatch options, e.g. ``["-N2", "-w", "n1,n2"]``.
        timeout: seconds until the job is cancelled and the test fails.
        env: environment for sbatch (the job inherits it); default :func:`cluster_env`.

    Returns:
        The job id, its final state (e.g. ``COMPLETED``, ``FAILED``) and its output.
    """
    workdir = Path(tempfile.mkdtemp(prefix="qcgflow-sbatch-"))
    try:
        script = workdir / "job.sh"
        script.write_text(script_text)
        output = workdir / "job.out"
        submit = run_bounded(["sbatch", "--parsable", "-o", str(output), "-D", str(workdir),
                              *args, str(script)], timeout=30, env=env)
        assert submit.returncode == 0, "sbatch failed: %s" % submit.stderr.strip()
        job_id = submit.stdout.strip().split(";")[0]
        try:
            state = eventually(lambda: (lambda s: s if s in FINAL_JOB_STATES else None)(
                job_state(job_id)), timeout, 0.05,
                lambda: "batch job %s to end (it is %s)" % (job_id, job_state(job_id) or "?"))
        except WaitTimeout:
            subprocess.run(["scancel", job_id], capture_output=True, timeout=20,
                           env=cluster_env())
            raise
        text = output.read_text(errors="replace") if output.exists() else ""
        return BatchResult(job_id, state, text)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def salloc_run(argv: list[str], nodes: list[str] | tuple = ("n1", "n2"), timeout: float = 60,
               args: list[str] | tuple = (), env: dict | None = None,
               cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` inside a fresh allocation of exactly ``nodes`` (``salloc -w``).

    The allocation is pinned because nodes of a just-finished job may still be
    completing and the scheduler would otherwise hand out other ones. On timeout the
    process tree is killed and the job, found by its unique name, is cancelled.

    Args:
        argv: the command salloc runs (on this host, with ``SLURM_JOB_*`` set).
        nodes: node names to allocate.
        timeout: seconds for the whole run, including waiting for the allocation.
        args: extra salloc options, e.g. ``["-n4"]`` or ``["--exclusive"]``.
        env: environment (default :func:`cluster_env`).
        cwd: working directory for salloc and the command.
    """
    name = "qcgflow-test-%s" % uuid.uuid4().hex[:12]
    cmd = ["salloc", "-J", name, "-N", str(len(nodes)), "-w", ",".join(nodes), *args, *argv]
    try:
        return run_bounded(cmd, timeout=timeout, env=env, cwd=cwd)
    finally:
        subprocess.run(["scancel", "-n", name], capture_output=True, timeout=20,
                       env=cluster_env())
