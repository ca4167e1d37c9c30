"""The ``qcgflow`` command line.

Subcommands:
    run       run a workflow file, a requests file or a Python script (qcgflow.cli.workflow)
    compile   a workflow file -> a requests file
    status    the states of a running or finished run directory
    service   run the pilot-job manager (QCG-PilotJob ``qcg-pm-service`` options)
    report    figures and Gantt charts of a run (``qcg-pm-report``)
    processes process trees of a run's jobs (``qcg-pm-processes``)
"""

import os
import sys
from typing import Optional, Sequence

USAGE = """usage: qcgflow [--version] COMMAND [ARGS]

commands:
  run       run a workflow file (.yaml/.json), a requests file or a Python script on a
            service (this host, or a Slurm allocation's nodes), with progress and a
            summary; 'qcgflow run --help'
  compile   compile a workflow file to a QCG-PilotJob requests file (-o FILE)
  status    the states of the tasks of a running or finished run directory
  service   run the pilot-job manager on a requests file (qcg-pm-service options);
            'qcgflow service --help' lists them
  report    stats|launch-stats|rusage|efficiency|gantt|gantt-gaps of a run's working
            directory (qcg-pm-report)
  processes tree|apps: the processes of a job of a run made with --enable-proc-stats
"""


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell shows for a reader that went away


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a subcommand; a closed output pipe (``qcgflow status DIR | head -1``) ends it
    quietly with 141, not with a BrokenPipeError traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:
        # stdout is gone: point it at /dev/null so that the interpreter's final flush
        # does not raise (and print) the same error again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        from qcgflow import __version__
        print("qcgflow %s" % __version__)
        return 0
    command, rest = args[0], args[1:]
    if command in ("run", "compile", "status"):
        # not ``from qcgflow.cli import``: the package's __init__ imports this module
        import qcgflow.cli.workflow as workflow_cli
        return getattr(workflow_cli, "%s_main" % command)(rest)
    if command == "service":
        # the runtime names no graph-side module: Python tasks' warm workers are our choice
        from qcgflow.session.warm import with_warm_modules
        from qcgflow.runtime.service import exit_process, run_service
        status = run_service(with_warm_modules(rest))
        if argv is None:  # this process is the service: no teardown (exit_process)
            exit_process(status)
        return status
    if command == "report":
        from qcgflow.runtime.stats.cli import report_main
        return report_main(rest)
    if command == "processes":
        from qcgflow.runtime.stats.cli import processes_main
        return processes_main(rest)
    print("qcgflow: unknown command '%s'\n%s" % (command, USAGE), file=sys.stderr, end="")
    return 2

