"""``qcgflow run``, ``qcgflow compile`` and ``qcgflow status``.

::

    qcgflow run WORKFLOW
      ├─ .yaml/.yml/.json mapping: workflow_file.load_workflow ─ Workflow.write
      │     (<wd>/qcgflow-requests.json + the call files of Python tasks)
      ├─ .json list: a QCG-PilotJob requests file, run as it is
      ├─ `python -m qcgflow.runtime service --file-path REQUESTS --wd WD [--nodes N]
      │     --warm-modules qcgflow.runner` (a child, runtime/client/spawn.py); progress read
      │     from its jobs.report while it runs (runtime/client/workdir.py)
      ├─ .py: the script runs here (runpy); its qcgflow.run calls start their own services
      └─ summary: states, counts, failed tasks with the reason and their stderr;
            exit code 0 only when every job succeeded
    qcgflow status WD: the same summary from WD's newest .qcgpjm-service-*/jobs.report

The run directory also gets ``qcgflow-run.json`` (what ran) and ``qcgflow-service.out``
(the service's own output).
"""

import argparse
import json
import os
import runpy
import stat
import signal
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Optional

import qcgflow.cli.rerun as rerun
from qcgflow.session import cache as resume
from qcgflow.session.warm import with_warm_modules
from qcgflow.cli.progress_view import make_view
from qcgflow.cli.run_summary import STATES, iterations, summary  # noqa: F401 (STATES: a public name)
from qcgflow.runtime.inputfile import REQUESTS_LIMIT, read_text
from qcgflow.runtime.journal import journal_in_use
from qcgflow.runtime.resume import complete_report
from qcgflow.runtime.client.spawn import ServiceStartError, start_service
from qcgflow.runtime.client.workdir import (AUX_PREFIX, REPORT_FILE, latest_report,
                                            read_report, report_end, service_dirs)
from qcgflow.runtime.protocol import FINAL_STATE_NAMES, SUCCEED
from qcgflow.workflows.file import WorkflowFileError, load_workflow

RUN_INFO = "qcgflow-run.json"
REQUESTS = "qcgflow-requests.json"
SERVICE_OUT = "qcgflow-service.out"
EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING = 1, 2, 3
SERVICE_REFUSED = 4  # qcgflow service: it ran, but refused a request (runtime/service.py)
SERVICE_INTERRUPTED = (130, 143)  # SIGINT, SIGTERM or the Slurm allocation's end


def _resumable(path: str) -> bool:
    """A workflow file (``qcgflow run --resume`` runs what did not finish)."""
    try:
        return workflow_kind(path) == "workflow"
    except (ValueError, OSError):
        return False


def _how_it_ended(returncode: int) -> str:
    """``was killed by SIGKILL`` (a signal no one sent through qcgflow: the OOM killer, an
    administrator), or ``failed (exit code N)``."""
    if returncode < 0:
        try:
            return "was killed by %s" % signal.Signals(-returncode).name
        except ValueError:
            pass
    return "failed (exit code %s)" % returncode


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    print("qcgflow %s: %s" % (command, message), file=sys.stderr)
    return code


def workflow_kind(path: str) -> str:
    """``workflow``, ``requests`` or ``python`` (ValueError when it is none of them)."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".py":
        return "python"
    if extension in (".yaml", ".yml"):
        return "workflow"
    if extension == ".json":
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return "workflow"  # read once, by load_workflow, which refuses or reports
            data = json.loads(read_text(path, REQUESTS_LIMIT))
        except (OSError, ValueError, RecursionError):
            return "workflow"  # load_workflow reports the file's problem with its line
        return "requests" if isinstance(data, list) else "workflow"
    raise ValueError("%s: expected a workflow file (.yaml, .yml, .json), a requests file "
                     "(.json) or a Python script (.py)" % path)


# --------------------------------------------------------------------------- reports



def submitted_jobs(requests: Any) -> List[Dict[str, Any]]:
    return [job for request in requests if isinstance(request, dict)
            and request.get("request") == "submit" for job in request.get("jobs") or []]


class Progress:
    """Counts of a run from its jobs.report: jobs and iterations finished, per state.

    Memory is O(jobs + iterations that did not succeed + 1 byte per iteration): a
    succeeded iteration is counted and marked seen, not kept (a 1,000,000-iteration sweep
    costs ~1 MB here). ``iterations`` holds the entries of the iterations that did NOT
    succeed (the summary's "not succeeded" lines)."""

    def __init__(self, jobs: List[Dict[str, Any]]):
        self.jobs = {job.get("name"): job for job in jobs}
        self.order = {name: index for index, name in enumerate(self.jobs)}
        self.ended = False  # the service has ended: what is missing now never ran
        self.units = sum(iterations(job) or 1 for job in jobs)
        self.states: Dict[str, str] = {}       # job -> final state
        self.iterations: Dict[str, Dict[str, Any]] = {}  # "job:it" -> entry, not SUCCEED
        self.iteration_counts: Dict[str, int] = {}       # state -> iterations
        self.iterations_done = 0
        self.seen: Dict[str, bytearray] = {}   # job -> 1 at each iteration with an entry
        self.entries: Dict[str, Dict[str, Any]] = {}
        self.offset = 0  # of the report, for follow()

    def follow(self, path: str) -> None:
        """Read what the report gained since the last call."""
        end = report_end(path, self.offset)
        if end > self.offset:
            self.update(read_report(path, self.offset))
            self.offset = end

    def _saw(self, name: str) -> None:
        job_name, _, it = name.partition(":")
        count = iterations(self.jobs.get(job_name, {}))
        if count and it.isdigit() and int(it) < count:
            seen = self.seen.get(job_name)
            if seen is None:
                seen = self.seen[job_name] = bytearray(count)
            seen[int(it)] = 1

    def update(self, entries) -> None:
        for entry in entries:
            if entry.get("state") not in FINAL_STATE_NAMES:
                continue  # a job the service stopped with (jobs.report names it): unfinished
            name = str(entry.get("name"))
            if ":" in name:
                state = entry.get("state", "?")
                previous = self.iterations.pop(name, None)
                if previous is not None:  # an entry again (a re-run): counted once
                    old = previous.get("state", "?")
                    self.iteration_counts[old] -= 1
                    self.iterations_done -= 1
                self.iteration_counts[state] = self.iteration_counts.get(state, 0) + 1
                self.iterations_done += 1
                if state != SUCCEED:
                    self.iterations[name] = entry
                self._saw(name)
            else:
                self.entries[name] = entry
                self.states[name] = entry.get("state", "?")
            if name not in self.jobs and ":" not in name:
                self.jobs[name] = {"name": name}

    def done_units(self) -> int:
        plain = sum(1 for name in self.states if iterations(self.jobs.get(name, {})) is None)
        return plain + self.iterations_done

    def unit_counts(self) -> Dict[str, int]:
        """Tasks (iterations, and jobs without iterations) per final state."""
        counts = {state: n for state, n in self.iteration_counts.items() if n}
        for name, state in self.states.items():
            if iterations(self.jobs.get(name, {})) is None:
                counts[state] = counts.get(state, 0) + 1
        return counts

    def counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        return counts

    def succeeded(self) -> bool:
        return bool(self.jobs) and all(self.states.get(n) == SUCCEED for n in self.jobs)


# --------------------------------------------------------------------------- run

def _run_service(requests_path: str, jobs: List[Dict[str, Any]], wd: str, args,
                 title: str, extra_path: List[str]) -> int:
    before = set(service_dirs(wd))
    service_args = ["--file-path", requests_path, "--wd", wd]
    if args.nodes:
        service_args += ["--nodes", args.nodes]
    if args.enable_rt_stats:
        service_args.append("--enable-rt-stats")
    progress = Progress(jobs)
    live = not args.quiet and sys.stderr.isatty()
    view = None if args.quiet else make_view(progress.units, live)
    start = time.monotonic()
    with open(os.path.join(wd, SERVICE_OUT), "wb") as out:
        # no ready line (file mode); --owner-fd: it stops if we die (even SIGKILL); our
        # process group: a Ctrl-C in the terminal reaches it too
        try:
            process = start_service(with_warm_modules(service_args), cwd=wd, output=out,
                                    import_paths=extra_path, ready=False, own_session=False)
        except ServiceStartError as exc:
            return _fail("run", str(exc), EXIT_FAILED)
        rerun.note_service(wd, process.pid)  # a --resume refuses while it is alive
        try:
            while not process.exited(0.2 if live else args.interval):
                if not args.quiet:
                    report = latest_report(wd, before)
                    if report:
                        progress.follow(report)
                    view.show(progress.done_units(), progress.unit_counts(),
                              time.monotonic() - start)
        except KeyboardInterrupt:
            # from now on a Ctrl-C is passed to the service (a second signal: it kills its
            # tasks at once) instead of raising out of the ending below (a traceback)
            signal.signal(signal.SIGINT, lambda *_: process.signal(signal.SIGINT))
            process.signal(signal.SIGTERM)
            process.exited(None)
            if view is not None:
                view.close()
            print("\nqcgflow run: interrupted", file=sys.stderr)
            report = latest_report(wd, before)
            if report is not None:  # what ran, what was canceled, what never started
                progress = Progress(jobs)
                progress.update(read_report(report))
                progress.ended = True
                print(summary(progress, wd, "%s: interrupted after %.1f s in %s" % (
                    title, time.monotonic() - start, wd)))
            return 130
        finally:
            process.close()
    returncode = process.returncode
    report = latest_report(wd, before)
    if report is not None:  # a SIGKILLed service's last batch: from its journal
        complete_report(os.path.dirname(report))
    progress = Progress(jobs)
    progress.update(read_report(report) if report else [])
    progress.ended = True
    elapsed = time.monotonic() - start
    if view is not None and live:  # the bar ends on the final figures
        view.show(progress.done_units(), progress.unit_counts(), elapsed)
    if view is not None:
        view.close()
    for line in _service_lines(os.path.join(wd, SERVICE_OUT), "warning: "):
        print("qcgflow run: %s" % line, file=sys.stderr)  # e.g. a partial Slurm allocation
    if report is not None:  # a service that never ran the jobs gets no table of nothing
        print(summary(progress, wd, "%s: %d jobs, %d tasks in %s (%.1f s)" % (
            title, len(progress.jobs), progress.units, wd, elapsed)))
    if returncode in SERVICE_INTERRUPTED and report is not None:
        # stopped by a signal, or by the allocation's end (Slurm signalled its node
        # agents): an interruption, not a failure; its own line says which
        said = [line for line in _service_lines(os.path.join(wd, SERVICE_OUT))
                if "allocation is ending" in line]
        print("qcgflow run: interrupted (the service's exit code %d)%s; the unfinished "
              "tasks run with: qcgflow service --resume %s" % (
                  returncode, (": " + said[-1].split(" (qcgflow service --resume")[0])
                  if said else "", wd), file=sys.stderr)
        return returncode
    if returncode not in (0, SERVICE_REFUSED) or report is None:
        with open(os.path.join(wd, SERVICE_OUT), encoding="utf-8", errors="replace") as handle:
            tail = handle.read()[-2000:].strip()
        print("qcgflow run: the service %s%s%s" % (
            _how_it_ended(returncode), ": " + tail if tail else "",
            "; what did not finish runs with: qcgflow run %s --wd %s --resume"
            % (args.workflow, wd) if _resumable(args.workflow) else ""),
            file=sys.stderr)
        return EXIT_FAILED
    if progress.succeeded():
        return 0
    for line in _refusals(os.path.join(wd, SERVICE_OUT)):  # why jobs never ran
        print("qcgflow run: the service refused %s" % line, file=sys.stderr)
    return EXIT_FAILED


def _service_lines(service_out: str, kind: str = "") -> List[str]:
    """The service's own one-line messages (``qcgflow service: <kind>...``), prefix removed."""
    prefix = "qcgflow service: "
    try:
        with open(service_out, encoding="utf-8", errors="replace") as handle:
            return [line[len(prefix):].rstrip() for line in handle
                    if line.startswith(prefix + kind)]
    except OSError:
        return []


def _refusals(service_out: str) -> List[str]:
    """The service's one-line errors about requests (``request N: message``)."""
    prefix = "qcgflow service: request "
    try:
        with open(service_out, encoding="utf-8", errors="replace") as handle:
            return [line[len("qcgflow service: "):].rstrip() for line in handle
                    if line.startswith(prefix)]
    except OSError:
        return []


def _nodes_problem(nodes: Optional[str]) -> Optional[str]:
    """What is wrong with a ``--nodes`` value (checked with the service's own parser, so
    that a usage error stops here, before a run directory or a service exists)."""
    if nodes is None:
        return None
    from qcgflow.runtime.protocol import nodes_spec_problem
    return nodes_spec_problem(nodes)


def _run_script(path: str, args) -> int:
    if args.nodes or args.wd:
        return _fail("run", "--nodes and --wd are for workflow and requests files; a Python "
                            "script chooses them in its qcgflow.run(..., nodes=, wd=) calls")
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # the user's script: report it as a failed run
        traceback.print_exc()
        return _fail("run", "%s failed: %s: %s" % (path, type(exc).__name__,
                                                   str(exc).splitlines()[0] if str(exc)
                                                   else ""), EXIT_FAILED)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``qcgflow run: --interval: ...``), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, "%s: %s (see %s --help)\n" % (self.prog, message, self.prog))


def run_main(argv: List[str]) -> int:
    parser = _Parser(
        prog="qcgflow run", description="Run a workflow file (.yaml/.yml/.json), a "
        "QCG-PilotJob requests file (.json list) or a Python script using qcgflow, on a qcgflow "
        "service it starts: over the allocation's nodes inside a Slurm allocation, else on "
        "this host. Exit code 0 only when every task succeeded.")
    parser.add_argument("workflow", metavar="WORKFLOW")
    parser.add_argument("--nodes", help="resources, as 'qcgflow service --nodes' (4, n1:2, "
                                        "a:8,b:8); default: the Slurm allocation's nodes inside "
                                        "one, else this host's cores")
    parser.add_argument("--wd", help="the run directory (default: a new $TMPDIR/qcgflow-*)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between progress lines when stderr is not a terminal")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the results of tasks that completed in --wd before with "
                             "the same key (command or function source, options, arguments); "
                             "run the rest")
    parser.add_argument("--enable-rt-stats", action="store_true",
                        help="record the exact start and end of every task (the service's "
                             "--enable-rt-stats) for 'qcgflow report'; a Python script's "
                             "qcgflow.run/init calls get it by default")
    parser.add_argument("--cache", metavar="DIR",
                        help="a result cache shared by runs in any --wd (Python tasks' "
                             "results, by the same keys)")
    args = parser.parse_args(argv)
    path = args.workflow
    if not os.path.exists(path):
        return _fail("run", "%s: no such file" % path)
    try:
        kind = workflow_kind(path)
    except ValueError as exc:
        return _fail("run", str(exc))
    if kind == "python":
        with resume.script_env(args.resume, args.cache, args.enable_rt_stats):
            return _run_script(path, args)  # its qcgflow.run calls take these defaults
    if kind == "requests" and (args.resume or args.cache):
        return _fail("run", "--resume and --cache work with workflow files and Python "
                            "scripts; a requests file has no task keys")
    if args.resume and not args.wd:
        return _fail("run", "--resume needs --wd DIR: the directory of the run to resume")
    problem = _nodes_problem(args.nodes)
    if args.wd and os.path.exists(args.wd) and not os.path.isdir(args.wd):
        problem = "--wd %s: not a directory" % args.wd
    if problem:
        return _fail("run", problem)
    if args.interval <= 0:
        return _fail("run", "--interval %s: expected a number of seconds > 0" % args.interval)
    if args.wd:
        problem = rerun.check_wd(os.path.abspath(args.wd), args.resume, kind == "workflow",
                                 path)
        if problem:
            return _fail("run", problem)
    workflow = None
    if kind == "workflow":  # a bad file is refused before any directory is made
        try:
            workflow = load_workflow(path)
        except WorkflowFileError as exc:
            return _fail("run", str(exc))
    wd = os.path.abspath(args.wd) if args.wd else tempfile.mkdtemp(prefix="qcgflow-")
    extra = [os.path.dirname(os.path.abspath(path)), os.getcwd()]
    if workflow is not None:
        os.makedirs(wd, exist_ok=True)
        requests_path = os.path.join(wd, REQUESTS)
        workflow.write(requests_path)
        jobs, reused = resume.plan_workflow(workflow, wd, requests_path, args.resume,
                                            args.cache)
        title = "workflow %s" % workflow.name
        if reused:
            print("qcgflow run: %s" % reused, file=sys.stderr)
        if not jobs:
            print("%s: nothing to run, every task was reused" % title)
            return 0
    else:
        os.makedirs(wd, exist_ok=True)
        requests_path = os.path.abspath(path)
        jobs = submitted_jobs(json.loads(read_text(path, REQUESTS_LIMIT)))
        title = "requests file %s" % os.path.basename(path)
    with open(os.path.join(wd, RUN_INFO), "w", encoding="utf-8") as handle:
        json.dump({"workflow": os.path.abspath(path), "kind": kind, "title": title,
                   "requests": requests_path}, handle, indent=2)
    if not args.quiet:
        print("qcgflow run: %s in %s" % (title, wd), file=sys.stderr)
    code = _run_service(requests_path, jobs, wd, args, title, extra)
    if kind == "workflow":
        # records for a later --resume (_run_service filled the report in already)
        resume.finish_workflow(wd, args.cache, reports_complete=True)
    return code


# --------------------------------------------------------------------------- compile, status

def compile_main(argv: List[str]) -> int:
    parser = _Parser(
        prog="qcgflow compile", description="Compile a workflow file to a QCG-PilotJob "
        "requests file (run it with 'qcgflow service --file-path FILE --wd <its directory>' "
        "or upstream qcg-pm-service).")
    parser.add_argument("workflow", metavar="WORKFLOW", help="a .yaml, .yml or .json "
                                                             "workflow file")
    parser.add_argument("-o", "--output", help="the requests file to write (Python tasks' "
                                               "call files go to .qcgflow/ beside it); "
                                               "default: print the jobs")
    args = parser.parse_args(argv)
    try:
        kind = workflow_kind(args.workflow)
    except ValueError as exc:
        return _fail("compile", str(exc))
    if kind != "workflow":
        return _fail("compile", "%s is a %s, not a workflow file" % (
            args.workflow, "requests file already" if kind == "requests" else "Python script"))
    try:
        workflow = load_workflow(args.workflow)
    except WorkflowFileError as exc:
        return _fail("compile", str(exc))
    extension = sorted(job["name"] for job in workflow.jobs
                       if "afterAny" in (job.get("dependencies") or {}))
    if extension:
        # upstream's JobDependencies takes only 'after': it refuses the whole request
        print("qcgflow compile: warning: %s use%s after_any (dependencies.afterAny, a qcgflow "
              "extension): the requests file runs on 'qcgflow service', not on upstream "
              "QCG-PilotJob" % (", ".join(extension), "s" if len(extension) == 1 else ""),
              file=sys.stderr)
    if args.output is None:
        if any(job["execution"].get("args", [None])[:2] == ["-m", "qcgflow.runner"]
               for job in workflow.jobs):
            return _fail("compile", "the workflow has Python tasks: give -o FILE so that "
                                    "their call files are written beside it")
        json.dump(workflow.requests(), sys.stdout, indent=2)
        print()
        return 0
    workflow.write(args.output)
    print("qcgflow compile: wrote %s (%d jobs); run it with: qcgflow service --file-path %s "
          "--wd %s" % (args.output, len(workflow.jobs), args.output,
                       os.path.dirname(os.path.abspath(args.output))), file=sys.stderr)
    return 0



def status_main(argv: List[str]) -> int:
    parser = _Parser(
        prog="qcgflow status", description="The states of a running or finished run, from "
        "the jobs.report of its directory. Exit code: 0 all succeeded, 1 some did not, "
        "2 no run there, 3 still running, interrupted or killed.")
    parser.add_argument("wd", metavar="WD", help="the run directory (qcgflow run --wd, "
                                                 "qcgflow service --wd)")
    args = parser.parse_args(argv)
    report = latest_report(args.wd)
    if report is None:
        return _fail("status", "%s: no run there (no %s*/%s)" % (args.wd, AUX_PREFIX,
                                                                REPORT_FILE))
    service_dir = os.path.dirname(report)
    jobs: List[Dict[str, Any]] = []
    title = "run in %s" % os.path.abspath(args.wd)
    try:
        with open(os.path.join(args.wd, RUN_INFO), encoding="utf-8") as handle:
            info = json.load(handle)
        with open(info["requests"], encoding="utf-8") as handle:
            jobs = submitted_jobs(json.load(handle))
        title = "%s in %s" % (info.get("title", "run"), os.path.abspath(args.wd))
    except (OSError, ValueError, KeyError):
        pass
    progress = Progress(jobs)
    progress.update(read_report(report))
    # final_status.json is written when the service ends, however it ends: with jobs that
    # never reached a final state, the run was interrupted (Ctrl-C, a signal, finish)
    progress.ended = os.path.exists(os.path.join(service_dir, "final_status.json"))
    unfinished = [name for name in progress.jobs if name not in progress.states]
    if not progress.ended:
        state = "running" if journal_in_use(service_dir) is not False else \
            "killed (its service ended without writing its final status)"
    elif unfinished:
        state = "interrupted (%d of %d jobs did not finish)" % (len(unfinished),
                                                               len(progress.jobs))
    else:
        state = "finished"
    print(summary(progress, os.path.abspath(args.wd), "%s: %s" % (title, state)))
    if not progress.ended or unfinished:
        return EXIT_RUNNING
    return 0 if progress.succeeded() else EXIT_FAILED
