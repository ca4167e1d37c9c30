"""``qcgflow report ...`` and ``qcgflow processes ...`` (upstream: qcg-pm-report,
qcg-pm-processes).

Exit status: 0 on success, 2 for unusable input (a directory that is not a service working
directory, a job that is not in it, missing statistics, an unknown plot format); the error
is one line on stderr.
"""

import argparse
import json
import sys
import time
from typing import Optional, Sequence

from ..errors import RuntimeLayerError
from . import metrics
from .load import load_run
from .workdir import WorkdirError

EXIT_OK = 0
EXIT_BAD_INPUT = 2

_WD_HELP = "the service's working directory (--wd) or its .qcgpjm-service-* directory"


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcgflow report", description="Figures and charts of a finished service run.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (("stats", "jobs, cores, service runtime and its overheads"),
                       ("launch-stats", "start and finish overheads of the jobs (needs "
                                        "--enable-rt-stats)"),
                       ("rusage", "core utilisation over the service runtime"),
                       ("efficiency", "core utilisation between each core's first and last "
                                      "task")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--json", action="store_true", help="print JSON")
        if name in ("rusage", "efficiency"):
            command.add_argument("--details", action="store_true", help="figures per core")
        command.add_argument("wd", metavar="WD", help=_WD_HELP)
    for name, text in (("gantt", "one row per core, a bar per task, coloured by job"),
                       ("gantt-gaps", "the idle time of every core")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("wd", metavar="WD", help=_WD_HELP)
        command.add_argument("out", metavar="OUT", help="output file: .png, .pdf, .svg, .jpg")
    return parser


def build_processes_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcgflow processes",
        description="Processes of a job, from a run made with --enable-proc-stats.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (("tree", "the process tree of the job"),
                       ("apps", "the job's application processes (the leaves of its tree) "
                                "with their statistics")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--json", action="store_true", help="print JSON")
        command.add_argument("wd", metavar="WD", help=_WD_HELP)
        command.add_argument("job", metavar="JOB", help="job name, name:iteration for one "
                                                        "iteration")
    return parser


def report_main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_report_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _report(args)
    except (RuntimeLayerError, OSError) as exc:
        print("qcgflow report: %s" % _one_line(exc), file=sys.stderr)
        return EXIT_BAD_INPUT


def processes_main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_processes_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _processes(args)
    except (RuntimeLayerError, OSError) as exc:
        print("qcgflow processes: %s" % _one_line(exc), file=sys.stderr)
        return EXIT_BAD_INPUT


def _report(args) -> int:
    if args.command in ("gantt", "gantt-gaps"):
        from . import gantt
        gantt.plot_format(args.out)  # an unknown format fails before any reading
        run = load_run(args.wd, every_service=True)  # every allocation of a resumed run
        began = time.monotonic()
        bars = gantt.plot(run, args.out, gaps=args.command == "gantt-gaps")
        print("%s: %d bars written to %s in %.2f s" % (args.command, bars, args.out,
                                                       time.monotonic() - began))
        return EXIT_OK
    run = load_run(args.wd)
    details = None
    if args.command == "stats":
        figures = metrics.stats(run)
    elif args.command == "launch-stats":
        if not run.has_rtstats:
            raise WorkdirError("%s: no exact start/finish times (rtstats.jsonl): run the "
                               "service with --enable-rt-stats" % run.aux_dir)
        figures = metrics.launch_stats(run)
    else:
        compute = metrics.rusage if args.command == "rusage" else metrics.efficiency
        figures, per_core = compute(run)
        details = per_core if args.details else None
    if args.json:
        print(json.dumps(metrics.to_json(figures, details), indent=2))
    else:
        sys.stdout.write(metrics.to_text(figures, details))
    return EXIT_OK


def _processes(args) -> int:
    from . import processes as p
    run = load_run(args.wd)
    tasks = p.select_tasks(run, args.job)
    procs = p.load_processes(run.aux_dir)
    out, missing = [], []
    for task in tasks:
        root = p.job_tree(task, procs)
        if root is None:
            missing.append(task)
            continue
        if args.json:
            out.append(p.tree_json(task, root) if args.command == "tree"
                       else p.apps_json(task, root))
        elif args.command == "tree":
            out.append(p.tree_text(task, root))
        else:
            out.append(p.apps_text(root, p.all_by_pid(root)))
    if not out:
        task = missing[0]
        raise WorkdirError("job %s (pid %s) was not seen by the process sampler (it ended "
                           "within one sampling interval, or did not start)"
                           % (task.name, task.pid if task.pid is not None else "unknown"))
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
    else:
        sys.stdout.write("".join(out))
    for task in missing:
        print("qcgflow processes: job %s was not seen by the process sampler" % task.name,
              file=sys.stderr)
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return "%s: %s" % (exc.filename, exc.strerror or exc)
    return " ".join(str(exc).split())
