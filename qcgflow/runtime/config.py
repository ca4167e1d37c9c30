"""The service's command line (the option names of QCG-PilotJob's qcg-pm-service).

``parse_service_args`` returns a frozen ``ServiceConfig``. Options that this version
cannot honour yet are refused with a message that says so (``UnsupportedOption``),
never silently ignored.
"""

import argparse
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .errors import UnsupportedOption

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "notset")

# option -> why it is refused in this version (the issue that brings it)
_NOT_YET: dict = {}

NL_START_METHODS = ("slurm", "ssh")
NL_INIT_TIMEOUT_DEFAULT = 600.0


@dataclass(frozen=True)
class ServiceConfig:
    """The options of one ``qcgflow service`` run, parsed and checked."""

    file_path: Optional[str]
    wd: Optional[str]
    nodes: Optional[str]
    system_core: bool
    resources: str
    envschema: str
    report_format: str
    report_file: str
    log_level: str
    service_id: Optional[str]
    tags: Tuple[str, ...]
    disable_nl: bool
    disable_pub: bool
    net: bool = False
    net_address: str = "127.0.0.1"
    net_tcp: bool = False  # a TCP address or port was asked for (else ipc://, owneronly)
    net_port: Optional[int] = None
    net_pub_port: Optional[int] = None
    net_port_min: Optional[int] = None
    net_port_max: Optional[int] = None
    ready_fd: Optional[int] = None
    owner_fd: Optional[int] = None  # stop when this pipe reports EOF (runtime/owner.py)
    show_progress: bool = False
    enable_rt_stats: bool = False
    wrapper_rt_stats: Optional[str] = None
    enable_proc_stats: bool = False
    disable_warm_workers: bool = False
    # modules whose `python -m M` tasks run in persistent warm workers: the caller's choice
    # (qcgflow service names the graph API's runner); the runtime names none itself
    warm_modules: Tuple[str, ...] = ()
    cancel_grace: Optional[float] = None  # --cancel-grace S; None: the manager's default
    resume: Optional[str] = None  # --resume PATH (aux dir or working dir holding one)
    no_journal: bool = False
    # Slurm mode and node launchers; 0-based node range, end exclusive (as upstream)
    slurm_limit_nodes_begin: Optional[int] = None
    slurm_limit_nodes_end: Optional[int] = None
    slurm_resources_file: Optional[str] = None
    nl_start_method: str = "slurm"
    nl_init_timeout: float = NL_INIT_TIMEOUT_DEFAULT
    nl_ready_threshold: float = 1.0
    # governor mode (qcgflow/runtime/governor/): --governor, or --slurm-partition-nodes N
    # (implies --governor); a manager with --parent registers with a governor
    governor: bool = False
    parent: Optional[str] = None
    parent_secrets: Optional[str] = None
    slurm_partition_nodes: Optional[int] = None
    manager_timeout: float = 10.0
    manager_queue_depth: int = 1
    slurm_partition_start: str = "local"  # local (children of the governor) | srun


def build_parser(prog: str = "qcgflow service") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the pilot-job manager (QCG-PilotJob compatible). "
        "Exit status: 0 done, 2 bad options or requests file, 3 node agents did not start, 4 a request of "
        "--file-path was refused, 128+N stopped by signal N.")
    add = parser.add_argument
    add("--net", action="store_true",
        help="enable the network interface (qcgflow: ipc:// sockets in an owner-only "
             "directory unless a TCP address or port is given)")
    add("--net-port", type=int, help="port of the network interface (implies --net)")
    add("--net-pub-port", type=int, help="port of the status publisher (implies --net)")
    add("--net-port-min", type=int, help="lowest port to try (implies --net)")
    add("--net-port-max", type=int, help="highest port to try (implies --net)")
    add("--file", action="store_true", help="enable the file interface")
    add("--file-path", help="path to the requests file (implies --file)")
    add("--wd", help="working directory of the service (default: current directory)")
    add("--envschema", default="auto", help="job environment schema [auto|slurm]")
    add("--resources", default="auto", help="source of resources [auto|slurm|local]")
    add("--report-format", default="json", help="format of the job report [json|text]")
    add("--report-file", default="jobs.report", help="name of the job report file")
    add("--nodes", help="available resources, e.g. 4 | n1:2 | 4,2,2 | a:8,b:8 "
                        "(implies --resources local)")
    add("--log", default="info", choices=LOG_LEVELS, help="log level of service.log")
    add("--system-core", action="store_true", help="reserve one core for the manager")
    add("--disable-nl", action="store_true", help="disable node launcher agents")
    add("--show-progress", action="store_true", help="print progress of executing tasks")
    add("--governor", action="store_true", help="run as a governor of other managers")
    add("--parent", help="address of the governor to register with")
    add("--id", help="identifier of this manager instance (default: <host>.<pid>)")
    add("--tags", help="tags of this manager instance, separated by commas")
    add("--slurm-partition-nodes", type=int, help="nodes per partition manager")
    add("--parent-secrets", help="(qcgflow) the governor's secrets directory (token, CURVE "
                                 "keys): <governor aux dir>/governor-secrets; by default "
                                 "found in ~/.qcgflow/governors (docs/governor.md)")
    add("--manager-timeout", type=float,
        help="(qcgflow, governor) seconds of silence after which a manager counts as lost "
             "(default 10)")
    add("--slurm-partition-start", choices=("local", "srun"),
        help="(qcgflow) where the partition managers run: local (default: children of the "
             "governor on its host) or srun (one `srun --overlap` step on the first node of "
             "each partition; give --net-address reachable from the nodes)")
    add("--manager-queue-depth", type=int,
        help="(qcgflow, governor) units given to a manager per core it has, so that it "
             "queues the next ones itself (default 1)")
    add("--slurm-limit-nodes-range-begin", type=int,
        help="first node of the allocation to use (0-based index)")
    add("--slurm-limit-nodes-range-end", type=int,
        help="end of the node range to use (0-based index, exclusive)")
    add("--slurm-resources-file",
        help="file describing the resources instead of the Slurm environment: the output of "
             "`scontrol show job -d JOBID`, or QCG-PilotJob's JSON resources description")
    add("--resume", help="resume an interrupted run: its service directory "
                         "(.qcgpjm-service-*) or the working directory holding it")
    add("--no-journal", action="store_true",
        help="(qcgflow) do not write the resume journal (for measurements; such a run "
             "cannot be resumed)")
    add("--enable-proc-stats", action="store_true", help="gather launched process statistics")
    add("--enable-rt-stats", action="store_true", help="gather exact start/stop times")
    add("--wrapper-rt-stats", help="path of the start/stop statistics wrapper")
    add("--nl-init-timeout", type=float, help="node launcher start timeout (s, default 600)")
    add("--nl-ready-treshold", "--nl-ready-threshold", dest="nl_ready_threshold", type=float,
        help="fraction (0.0-1.0, default 1.0) of node launchers registered before "
             "computing starts")
    add("--disable-pub", action="store_true", help="disable the status publisher")
    add("--nl-start-method", default="slurm",
        help="how to start node launchers [slurm|ssh] (default slurm)")
    add("--net-address", help="(qcgflow) TCP address to bind the network sockets to "
                              "(default: owner-only ipc:// sockets); every TCP endpoint, "
                              "127.0.0.1 included, requires CURVE authentication; implies --net")
    add("--ready-fd", type=int, help="(qcgflow) write one JSON line with the addresses to this "
                                     "file descriptor once the service is ready")
    add("--owner-fd", type=int,
        help="(qcgflow) stop (as on SIGTERM: tasks killed) when this descriptor reports "
             "end-of-file, i.e. when the process that started the service has died")
    add("--cancel-grace", type=float, metavar="S",
        help="(qcgflow) seconds between SIGTERM and SIGKILL when a running job is canceled "
             "(default 10; cancelJob with force: true kills at once)")
    add("--disable-warm-workers", action="store_true",
        help="(qcgflow) start every Python task (`python -m ...` jobs) as a new process "
             "instead of forking it from a warm Python worker")
    add("--warm-modules", metavar="MODULES",
        help="(qcgflow) comma-separated modules whose `python -m MODULE` tasks run one after "
             "another in persistent warm workers (each defines main(argv) -> int; a task "
             "keeps the worker's imports); default: none for `python -m qcgflow.runtime "
             "service`, the graph API's runner for `qcgflow service`")
    return parser


def parse_service_args(argv: Sequence[str]) -> ServiceConfig:
    """Parse and check the service options.

    Raises:
        UnsupportedOption: an option this version cannot honour, or a bad combination.
        SystemExit: argparse's own errors and --help.
    """
    args = build_parser().parse_args(list(argv))
    for dest, feature in _NOT_YET.items():
        if _given(args, dest):
            raise UnsupportedOption("--%s: %s is not available in this version of qcgflow"
                                    % (dest.replace("_", "-"), feature))
    net = args.net or any(_given(args, d) for d in (
        "net_port", "net_pub_port", "net_port_min", "net_port_max", "net_address"))
    for dest in ("net_port", "net_pub_port", "net_port_min", "net_port_max"):
        value = getattr(args, dest)
        if value is not None and not 1 <= value <= 65535:
            raise UnsupportedOption("--%s: %d is not a port number (1-65535)"
                                    % (dest.replace("_", "-"), value))
    if (args.net_port_min and args.net_port_max and args.net_port_min > args.net_port_max):
        raise UnsupportedOption("--net-port-min (%d) is larger than --net-port-max (%d)"
                                % (args.net_port_min, args.net_port_max))
    _check_mode("--resources", args.resources, ("auto", "slurm", "local"))
    _check_mode("--envschema", args.envschema, ("auto", "slurm"))
    _check_slurm_options(args)
    _check_mode("--nl-start-method", args.nl_start_method, NL_START_METHODS)
    nl_init_timeout = (NL_INIT_TIMEOUT_DEFAULT if args.nl_init_timeout is None
                       else args.nl_init_timeout)
    if not 0 < nl_init_timeout < float("inf"):
        raise UnsupportedOption("--nl-init-timeout: %g is not a positive number of seconds"
                                % args.nl_init_timeout)
    nl_ready_threshold = 1.0 if args.nl_ready_threshold is None else args.nl_ready_threshold
    if not 0.0 <= nl_ready_threshold <= 1.0:
        raise UnsupportedOption("--nl-ready-treshold: %g is not a fraction between 0.0 and 1.0"
                                % args.nl_ready_threshold)
    if args.cancel_grace is not None and not 0 <= args.cancel_grace < float("inf"):
        raise UnsupportedOption("--cancel-grace: %g is not a number of seconds (0 or more)"
                                % args.cancel_grace)
    if args.report_format not in ("json", "text"):
        raise UnsupportedOption("--report-format: unknown format '%s' (use json or text)"
                                % args.report_format)
    net = net or bool(args.governor or args.parent or args.slurm_partition_nodes)
    _check_governor_options(args)
    if not args.file_path and not net and not args.resume:
        raise UnsupportedOption("no interface: give --file-path FILE and/or --net")
    tags = tuple(t.strip() for t in (args.tags or "").split(",") if t.strip())
    return ServiceConfig(
        file_path=args.file_path, wd=args.wd, nodes=args.nodes, system_core=args.system_core,
        resources=args.resources, envschema=args.envschema, report_format=args.report_format,
        report_file=args.report_file, log_level=args.log, service_id=args.id, tags=tags,
        disable_nl=args.disable_nl, disable_pub=args.disable_pub, net=net,
        net_address=args.net_address or "127.0.0.1", net_port=args.net_port,
        net_tcp=any(_given(args, d) for d in ("net_port", "net_pub_port", "net_port_min",
                                                "net_port_max", "net_address")),
        net_pub_port=args.net_pub_port, net_port_min=args.net_port_min,
        net_port_max=args.net_port_max, ready_fd=args.ready_fd, owner_fd=args.owner_fd,
        show_progress=args.show_progress, enable_rt_stats=args.enable_rt_stats,
        wrapper_rt_stats=args.wrapper_rt_stats, enable_proc_stats=args.enable_proc_stats,
        disable_warm_workers=args.disable_warm_workers, cancel_grace=args.cancel_grace,
        warm_modules=_warm_modules(args.warm_modules),
        resume=args.resume, no_journal=args.no_journal,
        slurm_limit_nodes_begin=args.slurm_limit_nodes_range_begin,
        slurm_limit_nodes_end=args.slurm_limit_nodes_range_end,
        slurm_resources_file=args.slurm_resources_file,
        nl_start_method=args.nl_start_method, nl_init_timeout=nl_init_timeout,
        nl_ready_threshold=nl_ready_threshold,
        governor=bool(args.governor or args.slurm_partition_nodes), parent=args.parent,
        parent_secrets=args.parent_secrets, slurm_partition_nodes=args.slurm_partition_nodes,
        manager_timeout=10.0 if args.manager_timeout is None else args.manager_timeout,
        manager_queue_depth=args.manager_queue_depth or 1,
        slurm_partition_start=args.slurm_partition_start or "local")


def _check_governor_options(args) -> None:
    """Refuse governor-mode options that contradict each other."""
    governor = args.governor or args.slurm_partition_nodes is not None
    if args.slurm_partition_nodes is not None and args.slurm_partition_nodes < 1:
        raise UnsupportedOption("--slurm-partition-nodes: %d is not a positive number of "
                                "nodes" % args.slurm_partition_nodes)
    if governor and args.parent:
        raise UnsupportedOption("--parent cannot be combined with --governor: a governor "
                                "does not register with another governor")
    if args.governor and args.resume and args.slurm_partition_nodes is None:
        raise UnsupportedOption("--resume with --governor needs --slurm-partition-nodes: "
                                "the replayed jobs are dispatched once the partition managers "
                                "registered (see docs/governor.md)")
    if governor and args.nodes is not None:
        raise UnsupportedOption("--nodes cannot be combined with %s: a governor has no "
                                "resources of its own (its managers bring them)"
                                % ("--governor" if args.governor else "--slurm-partition-nodes"))
    if args.parent_secrets is not None and not args.parent:
        raise UnsupportedOption("--parent-secrets is only used with --parent ADDRESS")
    if args.manager_timeout is not None and not 0 < args.manager_timeout < float("inf"):
        raise UnsupportedOption("--manager-timeout: %g is not a positive number of seconds"
                                % args.manager_timeout)
    if args.manager_timeout is not None and not governor:
        raise UnsupportedOption("--manager-timeout is only used with --governor")
    if args.manager_queue_depth is not None and not 1 <= args.manager_queue_depth <= 64:
        raise UnsupportedOption("--manager-queue-depth: %d is not between 1 and 64"
                                % args.manager_queue_depth)
    if args.slurm_partition_start is not None and args.slurm_partition_nodes is None:
        raise UnsupportedOption("--slurm-partition-start is only used with "
                                "--slurm-partition-nodes")
    if args.manager_queue_depth is not None and not governor:
        raise UnsupportedOption("--manager-queue-depth is only used with --governor")


def _check_mode(option: str, value: str, known: Tuple[str, ...]) -> None:
    """Refuse a value that is not one of ``known``."""
    if value not in known:
        raise UnsupportedOption("%s: unknown value '%s' (use %s or %s)"
                                % (option, value, ", ".join(known[:-1]), known[-1]))


def _check_slurm_options(args) -> None:
    """Refuse Slurm resource options that contradict the resource source or each other."""
    begin, end = args.slurm_limit_nodes_range_begin, args.slurm_limit_nodes_range_end
    if begin is not None and begin < 0:
        raise UnsupportedOption("--slurm-limit-nodes-range-begin: %d is negative (nodes are "
                                "numbered from 0)" % begin)
    if end is not None and end < 1:
        raise UnsupportedOption("--slurm-limit-nodes-range-end: %d selects no nodes (the end "
                                "is exclusive, nodes are numbered from 0)" % end)
    if begin is not None and end is not None and begin >= end:
        raise UnsupportedOption("--slurm-limit-nodes-range-begin %d is not below "
                                "--slurm-limit-nodes-range-end %d (the end is exclusive)"
                                % (begin, end))
    if args.slurm_resources_file is not None and not args.slurm_resources_file.strip():
        raise UnsupportedOption("--slurm-resources-file: the path is empty")
    slurm_only = [name for name, given in (
        ("--slurm-resources-file", args.slurm_resources_file is not None),
        ("--slurm-limit-nodes-range-begin", begin is not None),
        ("--slurm-limit-nodes-range-end", end is not None)) if given]
    if args.nodes is not None and args.resources == "slurm":
        raise UnsupportedOption("--nodes describes local resources and cannot be combined "
                                "with --resources slurm")
    if slurm_only and (args.nodes is not None or args.resources == "local"):
        raise UnsupportedOption("%s applies to Slurm resources and cannot be combined with %s"
                                % (slurm_only[0], "--nodes" if args.nodes is not None
                                   else "--resources local"))


def _warm_modules(text: Optional[str]) -> Tuple[str, ...]:
    """``--warm-modules a.b,c``: module names (an empty value: none)."""
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise UnsupportedOption("--warm-modules: '%s' is not a module name" % name)
    return names


def _given(args, dest: str) -> bool:
    value = getattr(args, dest)
    return value not in (None, False)
