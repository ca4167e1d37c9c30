"""Ray's nested-task pattern in Slurm mode: the driver runs inside salloc, its tasks are
started by the node agents, a task blocked in ``qcgflow.get`` lends its core there too."""

import sys
import textwrap
from pathlib import Path

from support.slurm import REPO, require_slurm, salloc_run

SCRIPT = textwrap.dedent("""
    import sys
    import qcgflow

    @qcgflow.task
    def leaf(x):
        return x * 10

    @qcgflow.task
    def parent(x):
        return sum(qcgflow.get([leaf.remote(x), leaf.remote(x + 1)], timeout=60))

    with qcgflow.init(wd=sys.argv[1]) as context:
        cores = context.session.client.request({"request": "resourcesInfo"})["total_cores"]
        # one parent per core: each waits for two children that need a core
        print(cores, qcgflow.get([parent.remote(i) for i in range(cores)], timeout=90))
""")


def test_nested_parents_on_every_core_complete_on_two_nodes(tmp_path):
    require_slurm()
    script = tmp_path / "nested.py"
    script.write_text(SCRIPT)
    done = salloc_run([sys.executable, str(script), str(tmp_path / "run")],
                      nodes=("n3", "n4"), timeout=150, cwd=str(tmp_path),
                      env=_env())
    assert done.returncode == 0, done.stderr
    cores, results = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(cores) >= 2
    assert results == str([20 * i + 10 for i in range(int(cores))])


def _env():
    from support.slurm import cluster_env
    env = cluster_env()
    env["PYTHONPATH"] = str(Path(REPO))
    return env
