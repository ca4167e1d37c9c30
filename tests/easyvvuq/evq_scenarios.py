"""Scenarios of the EasyVVUQ tests, run by the side venv's python (it has easyvvuq):

    python evq_scenarios.py SCENARIO WORK_DIR      -> one JSON object on stdout

Several campaigns per process: importing easyvvuq costs ~3 s, paid once per scenario.
The campaigns are those of examples/workflows/easyvvuq_pce.py (imported from there).
"""

import argparse
import concurrent.futures as cf
import json
import math
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "examples", "workflows"))

import easyvvuq_pce as demo  # noqa: E402 - examples/workflows/easyvvuq_pce.py

from qcgflow.easyvvuq import Pool, RunFailed, RunsFailed, execute  # noqa: E402


def new_campaign(work_dir: str, name: str, **settings):
    args = argparse.Namespace(sampler="pce", order=3, delay=0.02, fail_above=10.0,
                              fail_once=0, cleanup=False)
    for key, value in settings.items():
        setattr(args, key, value)
    path = os.path.join(work_dir, name)
    os.makedirs(path)
    return demo.make_campaign(args, path)


def statuses(campaign):
    """run id -> (status, execution_info) from the campaign database."""
    from easyvvuq.db.sql import RunTable
    rows = campaign.campaign_db.session.query(RunTable).all()
    return {str(row.id): [int(row.status), json.loads(row.execution_info or "{}")]
            for row in rows}


def collated_column(campaign, column: str):
    table = campaign.get_collation_result()
    return {repr(float(a)): int(v) for a, v in
            zip(table["a"].values.ravel(), table[column].values.ravel())}


def thread_stats(work_dir, name, sampler="pce", order=3):
    campaign, chosen = new_campaign(work_dir, name, sampler=sampler, order=order)
    with cf.ThreadPoolExecutor(2) as threads:
        campaign.execute(pool=threads).collate()
    return demo.statistics(campaign, chosen, sampler)


def scenario_campaigns(work_dir):
    """One Pool for everything: PCE and SC through threads, the pool (two rounds each) and
    the native path (on the pool's service and on its own); then failed runs: native
    (reported, the others stored, retried by a later call or by ``retries``) and through
    the same pool (the future's error; the pool goes on); per-run resources and the MPI
    model through a variant of the pool (``Pool.options``) and natively."""
    out = {"stats": {}}
    with Pool(resources=2, wd=os.path.join(work_dir, "pool-svc")) as pool:
        for sampler, order in (("pce", 3), ("sc", 2)):
            result = {"thread": thread_stats(work_dir, sampler + "-thread", sampler, order)}
            campaign, chosen = new_campaign(work_dir, sampler + "-pool", sampler=sampler,
                                            order=order)
            batch = math.ceil(chosen.n_samples / 2)
            for _ in range(2):
                campaign.execute(nsamples=batch, pool=pool).collate()
            result["pool"] = demo.statistics(campaign, chosen, sampler)
            campaign, chosen = new_campaign(work_dir, sampler + "-native-pool",
                                            sampler=sampler, order=order)
            execute(campaign, pool=pool).collate()
            result["native_on_pool"] = demo.statistics(campaign, chosen, sampler)
            campaign, chosen = new_campaign(work_dir, sampler + "-native", sampler=sampler,
                                            order=order)
            execute(campaign, resources=2, wd=os.path.join(work_dir, sampler + "-svc")) \
                .collate()
            result["native"] = demo.statistics(campaign, chosen, sampler)
            out["stats"][sampler] = result
        campaign, chosen = new_campaign(work_dir, "fallback", cleanup=True)
        out["fallback_type"] = type(execute(campaign, pool=pool).collate()).__name__
        out["fallback"] = demo.statistics(campaign, chosen, "pce")
        out["failures"] = failures(work_dir, pool)
        out["resources"] = resources(work_dir, pool)
    return out


def failures(work_dir, pool):
    out = {}
    campaign, chosen = new_campaign(work_dir, "native", fail_above=0.9, fail_once=1)
    try:
        execute(campaign, pool=pool).collate()
        out["first"] = None
    except RunsFailed as exc:
        out["first"] = {str(k): {"exit_code": v.exit_code, "run_dir": v.run_dir,
                                 "text": str(v)} for k, v in exc.failures.items()}
        out["first_message"] = str(exc)
    out["stored_after_first"] = len(campaign.get_collation_result())
    out["statuses_after_first"] = statuses(campaign)
    again = execute(campaign, pool=pool)
    out["second_runs"] = sorted(str(p["run_id"]) for g in again.groups for p in g.runs)
    again.collate()
    out["after_second"] = demo.statistics(campaign, chosen, "pce")

    campaign, chosen = new_campaign(work_dir, "retries", fail_above=0.9, fail_once=1)
    execute(campaign, pool=pool, retries=1).collate()
    out["with_retries"] = demo.statistics(campaign, chosen, "pce")

    campaign, chosen = new_campaign(work_dir, "pool-failing", fail_above=0.9)
    try:
        campaign.execute(pool=pool).collate()
        out["pool_error"] = None
    except RunFailed as exc:
        out["pool_error"] = {"type": type(exc).__name__, "run_id": exc.run_id,
                             "run_dir": exc.run_dir, "exit_code": exc.exit_code,
                             "stderr_tail": exc.stderr_tail, "text": str(exc)}
    campaign, chosen = new_campaign(work_dir, "after-failure", order=1)
    campaign.execute(pool=pool).collate()
    out["after_failure_collated"] = len(campaign.get_collation_result())
    return out


def resources(work_dir, pool):
    """Per-run cores (resources_for) through the pool and natively; with mpirun there, the
    model runs under the openmpi model (the simulation is wrapped, not Python)."""
    model = "openmpi" if shutil.which("mpirun") else None
    out = {"model": model}
    with pool.options(model=model, resources_for=demo.per_run_cores) as variant:
        campaign, _ = new_campaign(work_dir, "cores-pool", order=1)
        campaign.execute(pool=variant).collate()
        out["pool_cores"] = collated_column(campaign, "cores")
        out["pool_ranks"] = collated_column(campaign, "ranks")
    campaign, _ = new_campaign(work_dir, "cores-native", order=1)
    execute(campaign, pool=pool, model=model, resources_for=demo.per_run_cores).collate()
    out["native_cores"] = collated_column(campaign, "cores")
    out["native_ranks"] = collated_column(campaign, "ranks")
    return out


def main() -> int:
    scenario, work_dir = sys.argv[1], os.path.abspath(sys.argv[2])
    result = globals()["scenario_" + scenario](work_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
