"""Where MPI ranks really run, through the service, with the allocation's first node busy.

One batch job of three exclusive nodes runs a qcgflow service. A blocker holds every core
of the first node (the batch node, where the service and its first agent live), so every
later job is placed on the other nodes. Each MPI model (openmpi, intelmpi through MPICH's
hydra, srunmpi) then starts ``mpi_hello`` on 4 cores, and a single-core job reports its
own view. Every rank must run on the node and CPU its allocation names: checked by
``SLURMD_NODENAME`` (what Slurm says), ``hostname`` (what the MPI library maps hosts by:
the dev cluster gives each node its own UTS name) and ``Cpus_allowed_list`` (the binding).

Each rank first prints the allocation qcgflow gave its job (``QCG_PM_NODELIST``,
``QCG_PM_TASKS_PER_NODE``, ``QCG_PM_CPU_SET``), then execs ``mpi_hello``: the expected
places come from the service itself, not from a guess of what its scheduler does.
"""

import json
import re
import shlex
import sys

import pytest

from support.slurm import parse_mpi_hello, require_mpi_hello, sbatch_and_wait

pytestmark = pytest.mark.slurm

SHOW_ALLOC = ('echo "alloc nodes=$QCG_PM_NODELIST per_node=$QCG_PM_TASKS_PER_NODE '
              'cpus=$QCG_PM_CPU_SET"; exec "$0" "$@"')
ALLOC_LINE = re.compile(r"^alloc nodes=(\S+) per_node=(\S+) cpus=(\S+)$", re.M)


def expected_places(text):
    """[(node, cpu)] in rank order from the ``alloc`` line every rank printed (all equal)."""
    lines = set(ALLOC_LINE.findall(text))
    assert len(lines) == 1, text
    nodes, per_node, cpus = lines.pop()
    counts = [int(n) for n in per_node.split(",")]
    hosts = [node for node, count in zip(nodes.split(","), counts) for _ in range(count)]
    return list(zip(hosts, cpus.split(",")))


def cpu_list(text):
    """{cpu ids} of a Cpus_allowed_list value such as ``0-1,3``."""
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def mpi_job(name, hello, model, opts=None):
    execution = {"exec": "/bin/sh", "args": ["-c", SHOW_ALLOC, str(hello)], "model": model,
                 "stdout": name + ".out", "stderr": name + ".err"}
    if opts:
        execution["model_opts"] = opts
    # 4 cores = every free core: the MPI jobs run one after another without dependencies,
    # so one failing model does not hide the others' results.
    return {"name": name, "execution": execution, "resources": {"numCores": {"exact": 4}}}


@pytest.mark.timeout(300)
def test_every_model_puts_each_rank_on_its_allocated_node_and_cpu(tmp_path):
    hello = require_mpi_hello()
    hello_mpich = require_mpi_hello(mpich=True)
    # The blocker waits (bounded: 90 s) for the last job to release it.
    blocker = ("for i in $(seq 900); do [ -e %s ] && exit 0; sleep 0.1; done; exit 1"
               % shlex.quote(str(tmp_path / "release")))
    single = ('echo "single node=$SLURMD_NODENAME host=$(hostname) '
              'step=$SLURM_STEP_NODELIST alloc=$QCG_PM_NODELIST '
              'cpus=$(sed -n "s/^Cpus_allowed_list:\\s*//p" /proc/self/status) '
              'cpuset=$QCG_PM_CPU_SET"')
    jobs = [
        {"name": "blocker", "execution": {"script": blocker},
         "resources": {"numCores": {"exact": 2}, "numNodes": {"exact": 1}}},
        {"name": "single", "execution": {"script": single, "stdout": "single.out"},
         "resources": {"numCores": {"exact": 1}}},
        mpi_job("openmpi", hello, "openmpi"),
        mpi_job("intelmpi", hello_mpich, "intelmpi", {"mpirun": "mpiexec.hydra"}),
        mpi_job("srunmpi", hello, "srunmpi", {"mpirun_args": ["--mpi=pmix"]}),
        {"name": "release", "execution": {"exec": "touch", "args": [str(tmp_path / "release")]},
         "resources": {"numCores": {"exact": 1}},
         "dependencies": {"after": ["single", "openmpi", "intelmpi", "srunmpi"]}},
    ]
    (tmp_path / "req.json").write_text(json.dumps([
        {"request": "submit", "jobs": jobs},
        {"request": "control", "command": "finishAfterAllTasksDone"}]))
    service = [sys.executable, "-m", "qcgflow.cli", "service", "--file-path",
               str(tmp_path / "req.json"), "--wd", str(tmp_path), "--id", "t"]
    script = "#!/bin/bash\necho batch-node=$SLURMD_NODENAME\n%s\n" % shlex.join(service)
    result = sbatch_and_wait(script, ["-N3", "--exclusive"], timeout=240)
    errors = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.err")}
    assert result.state == "COMPLETED", (result.stdout, errors)
    batch_node = re.search(r"batch-node=(\S+)", result.stdout).group(1)

    fields = dict(kv.split("=", 1) for kv in
                  (tmp_path / "single.out").read_text().split()[1:])
    assert fields["alloc"] != batch_node, fields           # the busy node is not used
    assert fields["node"] == fields["host"] == fields["step"] == fields["alloc"], fields
    assert fields["cpus"] == fields["cpuset"], fields

    for model in ("openmpi", "intelmpi", "srunmpi"):
        text = (tmp_path / (model + ".out")).read_text()
        places = expected_places(text)
        assert batch_node not in {node for node, _ in places}, (model, places)
        ranks = parse_mpi_hello(text)
        assert [r["rank"] for r in ranks] == [0, 1, 2, 3], (model, text)
        assert all(r["allreduce"] == "ok" and r["size"] == 4 for r in ranks), (model, text)
        # host: the UTS name the rank runs under; node: SLURMD_NODENAME (mpi_hello falls
        # back to the host name for ranks without it: Open MPI's local ranks here).
        assert [r["node"] for r in ranks] == [r["host"] for r in ranks], (model, text)
        seen = [(r["host"], r["cpus"]) for r in ranks]
        if model == "intelmpi":
            # MPICH's hydra stands in for Intel MPI and ignores I_MPI_PIN_PROCESSOR_LIST:
            # nodes are checked exactly, CPUs only against the node's allocated ones.
            assert [h for h, _ in seen] == [n for n, _ in places], (model, seen, places)
            for host, cpus in seen:
                mine = {int(c) for n, c in places if n == host}
                assert cpu_list(cpus) <= mine, (model, host, cpus, mine)
            continue
        assert seen == places, "%s: ranks ran on %s, allocated %s" % (model, seen, places)
