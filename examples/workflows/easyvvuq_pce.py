#!/usr/bin/env python3
"""An EasyVVUQ campaign (PCE or SC, two uniform parameters) run four ways.

    python easyvvuq_pce.py --mode native          # qcgflow.easyvvuq.execute(campaign)
    python easyvvuq_pce.py --mode pool            # campaign.execute(pool=Pool())
    python easyvvuq_pce.py --mode thread          # campaign.execute(pool=ThreadPoolExecutor)
    python easyvvuq_pce.py --mode qcgpj           # EasyVVUQ's own QCGPJPool (QCG-PilotJob)

The model is ``easyvvuq_model.py`` beside this file (an external program, 0.2 s per run).
Needs ``pip install easyvvuq==1.3 six`` (see docs/easyvvuq.md). Prints one JSON object:
the statistics (exact floats), the per-run results, failures and the wall time of the
campaign's execution (``start``: the pool's start, measured apart).
"""

import argparse
import concurrent.futures as cf
import json
import math
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "easyvvuq_model.py")
TEMPLATE = ('{"a": $a, "b": $b, "delay": $delay, "fail_above": $fail_above, '
            '"fail_once": $fail_once}\n')


def make_campaign(args, work_dir: str):
    import chaospy as cp
    import easyvvuq as uq
    from easyvvuq.actions import (Actions, CreateRunDirectory, Decode, Encode,
                                  ExecuteLocal)
    params = {"a": {"type": "float", "default": 0.5},
              "b": {"type": "float", "default": 0.5},
              "delay": {"type": "float", "default": args.delay},
              "fail_above": {"type": "float", "default": args.fail_above},
              "fail_once": {"type": "integer", "default": int(getattr(args, "fail_once", 0))}}
    template = os.path.join(work_dir, "input.template")
    with open(template, "w") as handle:
        handle.write(TEMPLATE)
    encoder = uq.encoders.GenericEncoder(template_fname=template, delimiter="$",
                                         target_filename="input.json")
    decoder = uq.decoders.SimpleCSV(target_filename="output.csv",
                                    output_columns=["f", "g", "cores", "ranks"])
    command = "%s %s input.json" % (sys.executable, MODEL)
    actions = Actions(CreateRunDirectory(work_dir, flatten=True), Encode(encoder),
                      ExecuteLocal(command), Decode(decoder))
    if getattr(args, "cleanup", False):  # not the standard chain any more: the pool runs it
        from easyvvuq.actions import CleanUp
        actions.actions.append(CleanUp())
    campaign = uq.Campaign(name="demo", params=params, actions=actions, work_dir=work_dir)
    vary = {"a": cp.Uniform(0.0, 1.0), "b": cp.Uniform(0.0, 1.0)}
    if args.sampler == "pce":
        sampler = uq.sampling.PCESampler(vary=vary, polynomial_order=args.order)
    else:
        sampler = uq.sampling.SCSampler(vary=vary, polynomial_order=args.order)
    campaign.set_sampler(sampler)
    return campaign, sampler


def statistics(campaign, sampler, kind: str):
    import easyvvuq as uq
    qois = ["f", "g"]
    if kind == "pce":
        analysis = uq.analysis.PCEAnalysis(sampler=sampler, qoi_cols=qois)
    else:
        analysis = uq.analysis.SCAnalysis(sampler=sampler, qoi_cols=qois)
    campaign.apply_analysis(analysis)
    results = campaign.get_last_analysis()
    stats = {}
    for qoi in qois:
        stats[qoi] = {"mean": [float(v) for v in results.describe(qoi, "mean")],
                      "std": [float(v) for v in results.describe(qoi, "std")],
                      "sobols_first": {p: [float(v) for v in
                                           _flat(results.sobols_first(qoi, p))]
                                       for p in ("a", "b")}}
    return stats


def _flat(value):
    try:
        return list(value)
    except TypeError:
        return [value]


def per_run_cores(previous):
    """Two cores for runs with a > 0.5, one otherwise (``--per-run-cores``)."""
    return {"cores": 2 if previous["run_info"]["params"]["a"] > 0.5 else 1}


def run(args) -> dict:
    work_dir = os.path.abspath(args.wd or tempfile.mkdtemp(prefix="easyvvuq-demo-"))
    os.makedirs(work_dir, exist_ok=True)
    campaign, sampler = make_campaign(args, work_dir)
    total = sampler.n_samples
    batch = math.ceil(total / args.rounds)
    report = {"mode": args.mode, "sampler": args.sampler, "runs": total, "start": 0.0}
    started = time.monotonic()
    pool = None
    if args.mode == "thread":
        pool = cf.ThreadPoolExecutor(max_workers=args.cores)
    elif args.mode == "pool":
        from qcgflow.easyvvuq import Pool
        pool = Pool(resources=args.cores, model=args.model, cores=args.model_cores,
                    resources_for=per_run_cores
                    if args.per_run_cores else None, wd=os.path.join(work_dir, "qcgflow"))
        pool.warm_up()
    elif args.mode == "qcgpj":
        from easyvvuq.actions import QCGPJPool
        from qcg.pilotjob.executor_api.qcgpj_executor import QCGPJExecutor
        # its tasks run `python3 -m easyvvuq...` in a login shell: activate this venv there
        pool = QCGPJPool(qcgpj_executor=QCGPJExecutor(resources=str(args.cores)),
                         template_params={"venv": sys.prefix})
    report["start"] = time.monotonic() - started
    failed = {}
    started = time.monotonic()
    try:
        for _ in range(args.rounds):
            if args.mode == "native":
                from qcgflow.easyvvuq import RunsFailed, execute
                try:
                    execute(campaign, batch, resources=args.cores, retries=args.retries,
                            model=args.model, cores=args.model_cores,
                            resources_for=per_run_cores if args.per_run_cores else None,
                            wd=os.path.join(work_dir, "qcgflow")).collate()
                except RunsFailed as exc:
                    failed.update({str(k): {"exit_code": v.exit_code, "text": str(v)}
                                   for k, v in exc.failures.items()})
            else:
                try:
                    campaign.execute(nsamples=batch, pool=pool).collate()
                except Exception as exc:  # noqa: BLE001 - reported, the example goes on
                    failed["?"] = {"exit_code": getattr(exc, "exit_code", None),
                                   "text": str(exc)}
                    break
    finally:
        report["wall"] = time.monotonic() - started
        if pool is not None:
            pool.shutdown()
    collation = campaign.get_collation_result()
    report["collated"] = len(collation)
    if len(collation):
        report["cores"] = {repr(float(a)): int(c) for a, c in zip(
            collation["a"].values.ravel(), collation["cores"].values.ravel())}
        report["ranks"] = sorted(set(int(r) for r in collation["ranks"].values.ravel()))
    report["failed"] = failed
    if not failed and len(collation) == total:
        report["stats"] = statistics(campaign, sampler, args.sampler)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("native", "pool", "thread", "qcgpj"),
                        default="native")
    parser.add_argument("--sampler", choices=("pce", "sc"), default="pce")
    parser.add_argument("--order", type=int, default=3, help="polynomial order (3: 16 runs)")
    parser.add_argument("--delay", type=float, default=0.2, help="model seconds per run")
    parser.add_argument("--cores", type=int, default=2, help="cores of the pool / service")
    parser.add_argument("--rounds", type=int, default=1, help="draw the samples in rounds")
    parser.add_argument("--retries", type=int, default=0, help="native: retries per run")
    parser.add_argument("--fail-above", type=float, default=10.0,
                        help="runs with a above this fail (exit code 3)")
    parser.add_argument("--fail-once", action="store_true",
                        help="those runs fail on their first try only (see --retries)")
    parser.add_argument("--per-run-cores", action="store_true",
                        help="2 cores for runs with a > 0.5 (resources_for)")
    parser.add_argument("--model", help="pool / native: how the model starts (openmpi ...)")
    parser.add_argument("--model-cores", type=int, default=1, help="cores per run")
    parser.add_argument("--wd", help="campaign directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    try:
        import easyvvuq  # noqa: F401 - checked here, used in make_campaign
    except ImportError as exc:
        sys.exit("easyvvuq_pce.py needs easyvvuq: pip install easyvvuq==1.3 six (%s)" % exc)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
