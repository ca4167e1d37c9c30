"""The composition root of a manager, and ``qcgflow service``: builds the service from its
configuration (``serving.Service`` with a manager's roles; ``--governor``: the governor's
composition root, governor/service.py) and runs it.

::

    ServiceConfig -> working dir + .qcgpjm-service-<id>/ (service.log, jobs.report, address)
                  -> ResourcePool (discovery) -> Manager + Executor + LocalLauncher
                     (behind WarmLauncher: `python -m` tasks forked from a warm Python
                     worker, zygote.log; --disable-warm-workers)
                  -> requests file -> RequestHandler -> replies in service.log
                  -> --net: ROUTER socket (NetworkInterface) + PUB socket (StatusPublisher),
                            ipc:// in an owner-only directory by default, CURVE + ZAP on
                            any TCP address (security, owneronly), --ready-fd line
                  -> EventLoop.run() until every job is done (file only) or until a
                     ``finish`` request (network) or a signal
                  -> final_status.json

Exit status of ``run_service``: 0 when the requests were processed and every accepted job
ended (whatever its state, as upstream), 2 for unusable input or options, 3 when the node
agents could not start or were all lost, 130/143 when interrupted by SIGINT/SIGTERM
(running tasks are killed first), 143 also when Slurm signalled every node agent (the
allocation is ending) before the manager itself.
"""

import logging
import os
import signal
import socket
import sys
import time
from datetime import datetime
from typing import NoReturn, Sequence

from .config import ServiceConfig, parse_service_args
from .discovery import allocation_shortfall, discover
from .errors import RuntimeLayerError
from .executor import Executor
from .handlers import RequestHandler
from .interfaces.file import read_requests
from .launch.local import LocalLauncher
from .launch.pyworker import WarmLauncher
from .manager import Manager
from .owner import watch_owner
from .protocol import MODELS
from .resources import ResourcePool
from .serving import Interrupted, Service
from .stats.hooks import ServiceStats

_log = logging.getLogger("qcgflow.runtime.service")

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_STARTED = 3  # the node agents did not start (Slurm mode)
EXIT_REFUSED = 4  # the service ran, but refused at least one request of its --file-path
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout's reader went away (as cli/main.py's)


def _version() -> str:
    """qcgflow's ``__version__``, read from the package's ``__init__.py`` text: the runtime
    does not import the graph side, and importlib.metadata costs ~0.2 s at every start."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "__init__.py")
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return "unknown"


def assemble_manager(service: Service) -> None:
    """Build a manager service (setup): its own resources, a Manager over them, an
    Executor with a local launcher (a warm worker in front unless
    --disable-warm-workers) or node agents (Slurm mode), --parent's link, statistics, and
    --resume's journal replayed."""
    config = service.config
    service.resources_info = info = discover(config)
    pool = ResourcePool(info.pool_nodes_with_gpus())
    pool.reserved_cores = 1 if info.reserved_core else 0
    service.open_workdir()
    _log_start(service, pool)
    options = {"models": MODELS} if service.in_slurm else {}
    if config.cancel_grace is not None:
        options["cancel_grace"] = config.cancel_grace
    manager = Manager(pool, service.clock, service.loop, **options)
    end = getattr(info, "end_time", None)
    if end is not None:  # walltime awareness: never start what cannot end in time
        manager.deadline = end.timestamp()
        _log.info("the allocation ends at %s: jobs whose wt outlasts it stay queued", end)
    service.attach_manager(manager)
    service.serve(RequestHandler(manager, service))
    if config.parent:  # governor mode: this manager registers with a governor
        from .governor.link import attach_parent  # noqa: PLC0415 - only with --parent
        service.parent_link = attach_parent(service)
    task_env = dict(os.environ)
    # a client's forked zygote (launch/template.py) is for this service's zygote only
    template = task_env.pop("QCGFLOW_ZYGOTE_TEMPLATE", None)
    service.open_journal(task_env)
    if service.address:
        task_env["QCG_PM_ZMQ_ADDRESS"] = service.address
    if service.keys_dir:  # a task's own client finds the CURVE keys (qcgflow.client)
        task_env["QCGFLOW_KEYS_DIR"] = service.keys_dir
    slurm = service.in_slurm
    if slurm:
        # Tasks run on other nodes: the warm Python worker (one per service, here) is
        # not used; every task starts through its node's agent (or srun).
        from .nodeagents import make_slurm_launcher  # noqa: PLC0415 - Slurm only (~15 ms)
        launcher, service.readiness = make_slurm_launcher(
            service.loop, manager, config, service.aux_dir, service.wd, task_env,
            service._fail_start, service._allocation_ending)
    else:
        launcher = LocalLauncher(service.loop)
        if not config.disable_warm_workers:
            launcher = WarmLauncher(service.loop, launcher, task_env, service.wd,
                                    os.path.join(service.aux_dir, "zygote.log"),
                                    template=template,
                                    reusable_modules=config.warm_modules)
    service.attach_execution(Executor(service.loop, launcher, service.wd, task_env,
                                      manager.task_executing, manager.task_done,
                                      slurm=slurm, aux_dir=service.aux_dir,
                                      gpus=manager.has_gpus),
                             launcher)
    service.stats = ServiceStats.attach(config, service.loop, manager, service.aux_dir)
    service.replay_journal()


def _log_start(service: Service, pool: ResourcePool) -> None:
    # upstream's first line (its tests and log readers look for it), then our detail
    _log.info("service %s version %s started %s @ %s (with tags %s) in %s, pid %d",
              service.service_id, _version(), datetime.now(), socket.gethostname(),
              ",".join((service.service_id,) + tuple(service.tags)), service.wd, os.getpid())
    _log.info("resources: %d nodes, %d cores (%s)", pool.total_nodes, pool.total_cores,
              ", ".join("%s:%d" % (name, len(cores)) for name, cores in pool.nodes))
    if pool.total_gpus:
        _log.info("resources: %d GPUs (%s)", pool.total_gpus, ", ".join(
            "%s:%s" % (name, ",".join(map(str, ids))) for name, ids in pool.gpus.items()))
    for warning in service.resources_info.warnings:
        _log.warning("resources: %s", warning)
    shortfall = allocation_shortfall(service.resources_info)
    if shortfall:
        # On the terminal too: a partial allocation only shows as slowness otherwise.
        _log.warning("resources: %s", shortfall)
        print("qcgflow service: warning: %s" % shortfall, file=sys.stderr)


# a signal the event loop has not taken for this long (the main thread is busy outside
# it) is raised by the next signal where the thread is
SIGNAL_GRACE = 5.0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _owner_gone() -> None:
    raise Interrupted(signal.SIGTERM)  # out of the event loop, as the signal handler does


def make_service(config: ServiceConfig) -> Service:
    """The service ``config`` asks for, not set up yet (``setup()`` creates its files)."""
    if config.governor:  # governor mode: a composition root of its own
        from .governor.service import assemble_governor  # noqa: PLC0415 - start time
        return Service(config, assemble_governor)
    return Service(config, assemble_manager)


def exit_process(status: int) -> NoReturn:
    """End the process of a ``qcgflow service`` run with ``status``, skipping the
    interpreter's teardown: freeing every module and every job's objects took ~20 ms of
    an empty run and grows with the jobs. ``Service.close`` has written and closed the
    working files; logging and stdio are flushed here. For programs whose whole job was
    the service (``python -m qcgflow.runtime service``, ``qcgflow service``) only."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # its reader went away: 141 (128 + SIGPIPE), as the CLI
            if stream is sys.stdout:  # ends on a closed stdout (cli/main.py)
                status = EXIT_BROKEN_PIPE
        except (OSError, ValueError):  # a closed stream
            pass
    os._exit(status)


def run_service(argv: Sequence[str]) -> int:
    """``qcgflow service``: parse options, run, return the exit status."""
    try:
        config = parse_service_args(argv)
        requests = read_requests(config.file_path) if config.file_path else []
        service = make_service(config)
        if config.owner_fd is not None:  # before setup: a bad descriptor creates no files
            watch_owner(service.loop, config.owner_fd, _owner_gone)
        service.setup()
    except RuntimeLayerError as exc:
        print("qcgflow service: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - OSError, or ZeroMQ's (a taken port)
        zmq = sys.modules.get("zmq")  # not imported: none of its errors can be raised
        if not isinstance(exc, OSError) and (zmq is None or not isinstance(exc, zmq.ZMQError)):
            raise
        print("qcgflow service: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT

    # A signal is only noted by its handler; the loop takes it between two callbacks
    # (``take_signal``, the reader of the wake-up pipe) and it leaves the loop there as
    # Interrupted. Raised from the handler itself, it landed wherever the main thread was:
    # between an epoll registration and its callback, or just after a process was created
    # and before it was recorded, and the interrupted service then waited forever for a
    # task it had lost (or spun on a descriptor it no longer knew).
    pending = []  # (signum, monotonic time) of signals the loop has not taken yet

    def on_signal(signum, _frame):
        if pending and time.monotonic() - pending[0][1] > SIGNAL_GRACE:
            raise Interrupted(signum)  # the loop has not run for that long: not in it
        pending.append((signum, time.monotonic()))
        try:
            os.write(wake_write, b"\0")  # a wake-up even if the loop drained the pipe
        except OSError:  # full: a wake-up is pending anyway
            pass

    def take_signal():
        _drain(wake_read)
        if pending:
            signum = pending[0][0]
            pending.clear()
            raise Interrupted(signum)

    # The wake-up pipe: the C-level handler writes to it, so a signal wakes the loop's
    # poll at once even while it waits in a C call.
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    service.loop.add_reader(wake_read, take_signal)
    status = EXIT_OK
    try:
        service.run_file(requests)
    except Interrupted as exc:
        service.interrupt(exc.signum)
        status = 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_wakeup)
        service.loop.remove_reader(wake_read)
        os.close(wake_read)
        os.close(wake_write)
        service.close()
    if service.failure is not None:
        print("qcgflow service: %s" % service.failure, file=sys.stderr)
        return EXIT_NOT_STARTED
    readiness = getattr(service, "readiness", None)  # a governor has none
    ending = getattr(service, "allocation_end", None)
    if ending is None and readiness is not None and readiness.terminated:
        # the tasks ended (interrupted) while the signalled agents still ran: the workflow
        # "finished", but only because the allocation is ending
        ending = (readiness.ending_message(), readiness.signum or signal.SIGTERM)
    if ending is not None:
        message, signum = ending  # interrupted, as by the signal itself
        print("qcgflow service: %s (qcgflow service --resume %s)" % (message, service.aux_dir),
              file=sys.stderr)
        return status if status != EXIT_OK else 128 + int(signum)
    line = service.summary()
    if line:
        print("qcgflow service: %s" % line, file=sys.stderr)
    if status == EXIT_OK and service.refused:
        print("qcgflow service: %d request(s) of %s refused (see the lines above)"
              % (service.refused, config.file_path), file=sys.stderr)
        return EXIT_REFUSED
    return status
