"""The service's own CPU per iteration, launcher excluded (in one process, no IPC).

    python benchmarks/service_core_bench.py [--iterations 20000] [--cores 2] [--profile]

A Manager, an Executor and the service's listeners (jobs.report, journal, status
publisher on a real ZeroMQ XPUB socket with no subscriber) run one iterative job of
``python -m qcgflow.runner`` iterations, as the graph API compiles a map, over a launcher
that "runs" each process instantly (its start and exit are the next event-loop turns).
What is left is exactly what the service spends per iteration besides talking to its
workers: scheduling, the command and environment build, state transitions and their
listeners. ``--profile`` prints the top of a cProfile of the same run.
"""

import argparse
import cProfile
import os
import pstats
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import zmq  # noqa: E402

from qcgflow.runtime.clock import SystemClock  # noqa: E402
from qcgflow.runtime.eventloop import EventLoop  # noqa: E402
from qcgflow.runtime.executor import Executor  # noqa: E402
from qcgflow.runtime.journal import JournalWriter  # noqa: E402
from qcgflow.runtime.launch.local import ExitInfo  # noqa: E402
from qcgflow.runtime.manager import Manager  # noqa: E402
from qcgflow.runtime.publisher import StatusPublisher  # noqa: E402
from qcgflow.runtime.reports import JobsReport  # noqa: E402
from qcgflow.runtime.resources import ResourcePool  # noqa: E402


class InstantLauncher:
    """Every process starts at once and exits with status 0 on the next loop turn."""

    def __init__(self, loop):
        self._loop = loop
        self._pid = 1000

    def launch(self, spec, on_started, on_exit, on_error):
        self._pid += 1
        pid = self._pid

        def run():
            now = time.monotonic()
            on_started(pid)
            self._loop.call_soon(lambda: on_exit(ExitInfo(pid, 0, None, now, now)))
        self._loop.call_soon(run)

    def signal(self, pid, signum, node=None):
        return False

    def kill_all(self):
        pass

    def close(self):
        pass

    def __len__(self):
        return 0


def job(iterations: int):
    run = "${root_wd}/.qcgflow/noop-0/"
    return {"name": "noop-0",
            "execution": {"exec": sys.executable,
                          "args": ["-m", "qcgflow.runner", run + "call.pkl",
                                   run + "result.${it}.pkl", "${it}"],
                          "stdout": run + "stdout.${it}", "stderr": run + "stderr.${it}"},
            "iteration": {"start": 0, "stop": iterations}}


def run_once(iterations: int, cores: int, wd: str):
    loop = EventLoop()
    clock = SystemClock()
    manager = Manager(ResourcePool([("local", tuple(range(cores)))]), clock, loop)
    report = JobsReport(os.path.join(wd, "jobs.report"))
    manager.add_listener(report, finals_only=True)  # as the service registers them
    context = zmq.Context()
    pub = context.socket(zmq.XPUB)  # as the service's
    pub.bind("tcp://127.0.0.1:*")
    publisher = StatusPublisher(pub, "bench", loop)
    manager.add_listener(publisher)
    journal = JournalWriter(os.path.join(wd, "journal"), loop, resumed=False)
    journal.start()
    manager.add_listener(journal, finals_only=True)
    manager.executor = Executor(loop, InstantLauncher(loop), wd, dict(os.environ),
                                manager.task_executing, manager.task_done)
    manager.on_idle.append(loop.stop)
    manager.submit([job(iterations)])
    started = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    loop.run()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    report.close()
    journal.close()
    publisher.close()
    context.term()
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    best = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="qcgflow-core-") as wd:
            wall, cpu = run_once(args.iterations, args.cores, wd)
        best = cpu if best is None else min(best, cpu)
        print("%d iterations: wall %.3f s, CPU %.3f s = %.1f us per iteration"
              % (args.iterations, wall, cpu, cpu / args.iterations * 1e6))
    print("best: %.1f us of service CPU per iteration" % (best / args.iterations * 1e6))
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="qcgflow-core-") as wd:
            profile = cProfile.Profile()
            profile.runcall(run_once, args.iterations, args.cores, wd)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
