"""Where the resources come from: ``--nodes``, the local host, a Slurm allocation or a file.

This is the only module that reads the environment for resources. :func:`discover` chooses
the source from the options and returns a frozen :class:`ResourcesInfo`; the reads
(environment, ``scontrol``, host name, CPU count, the resources file) are injectable so
tests can drive every branch without a cluster::

    --slurm-resources-file F  -> scontrol text or QCG-PilotJob JSON in F      -> mode from F
    --resources local, or auto with --nodes or outside Slurm
                              -> --nodes value | local host (name, CPU count) -> 'local'
    --resources slurm, or auto inside an allocation (SLURM_JOB_ID / SLURM_JOBID)
                              -> SLURM_JOB_NODELIST + `scontrol show job -d $SLURM_JOB_ID`
                                 CPU_IDs (fallback: SLURM_JOB_CPUS_PER_NODE counts, ids
                                 0..n-1, with a warning)                    -> 'slurm'
    then: --slurm-limit-nodes-range-begin/-end (Slurm nodes only), --system-core

``--nodes`` follows QCG-PilotJob's syntax ``[NODE_NAME:]CORES[,[NODE_NAME:]CORES]...``:
``'4'`` is one node with 4 cores, ``'4,2,2'`` three unnamed nodes, ``'n1:4, n2:4'`` two
named ones. An unnamed node is called ``n<position>`` after its 0-based position in the list.
qcgflow adds GPUs per node: ``[NAME:]CORES:gpus=IDS`` where IDS are GPU ids joined by ``+``
or ranges ``a-b`` (``','`` already separates nodes): ``'n1:4:gpus=0+1,n2:4:gpus=2-3'``.

GPUs (ids per node, see ``ResourcesInfo.gpus``): in local mode the ``gpus=`` of ``--nodes``;
without ``--nodes``, a numeric ``CUDA_VISIBLE_DEVICES`` of the service's environment, else
the GPUs ``nvidia-smi -L`` lists (when the command exists). In Slurm mode each node's own ids
from the GRES ``IDX`` of ``scontrol show job -d`` (see slurmres.allocation_from_env).

The resources file (``--slurm-resources-file``) holds either the saved output of
``scontrol show job -d JOBID`` (node names from ``NodeList=``, CPU ids from the
``Nodes=... CPU_IDs=...`` lines, GPUs from their ``GRES=``), or the JSON resources
description of QCG-PilotJob (``{"type": "SLURM"|"LOCAL", "nodes": [{"name", "total_cores",
"core_ids", "free_cores", "crs": {"GPU": {"data": {"ids": [...]}}}}]}``; the free cores are
the ones used). The first form gives Slurm mode, the second the mode its ``type`` says.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Optional, Sequence

from qcgflow.runtime.errors import ResourcesError
from qcgflow.runtime.slurmres import (JobDetails, SlurmAllocation, SlurmNode,
                                      allocation_from_env, job_id_of, limit_nodes,
                                      parse_job_details, reserve_system_core)

__all__ = ["parse_nodes_spec", "parse_nodes_gpus", "local_gpus", "local_nodes", "ResourcesInfo",
           "discover", "run_scontrol", "run_nvidia_smi", "parse_resources_json",
           "run_scontrol_nodes", "node_cpu_totals", "allocation_shortfall"]

SCONTROL_TIMEOUT = 30.0

# Characters that would make the runtime's 'node[c0:c1],node2[...]' allocation wire format
# ambiguous, so they may not appear in a node name.
_FORBIDDEN_IN_NAME = frozenset(",:[]")
_NVIDIA_SMI_GPU = re.compile(r"^GPU (\d+):", re.MULTILINE)

_SYNTAX = "expected [NAME:]CORES[:gpus=IDS][,[NAME:]CORES[:gpus=IDS]]..."
NVIDIA_SMI_TIMEOUT = 10.0


def _gpu_ids(text: str, item: str) -> tuple[int, ...]:
    """``'0+2-3'`` -> ``(0, 2, 3)``; raises ResourcesError naming the --nodes item."""
    ids: list[int] = []
    for piece in text.split("+"):
        low, dash, high = piece.strip().partition("-")
        bounds = (low, high) if dash else (low,)
        if not all(b.isascii() and b.isdigit() for b in bounds) or int(bounds[0]) > int(bounds[-1]):
            raise ResourcesError(
                f"Invalid --nodes value '{item}': gpus= takes GPU ids joined by '+' or "
                f"ranges a-b, e.g. gpus=0+1 or gpus=0-3")
        ids.extend(range(int(bounds[0]), int(bounds[-1]) + 1))
    if len(set(ids)) != len(ids):
        raise ResourcesError(f"Invalid --nodes value '{item}': a GPU id is listed twice")
    return tuple(sorted(ids))


def parse_nodes_gpus(spec: str) -> dict[str, tuple[int, ...]]:
    """GPU ids per node name given by ``gpus=`` in a ``--nodes`` value (nodes with GPUs only).

    Raises:
        ResourcesError: as :func:`parse_nodes_spec`.
    """
    return {name: gpus for name, _, gpus in _parse_nodes(spec) if gpus}


def parse_nodes_spec(spec: str) -> list[tuple[str, int]]:
    """Parse a ``--nodes`` value into ``(node name, core count)`` pairs in the given order.

    Guarantees: at least one node, names unique and non-empty, every count >= 1.

    Raises:
        ResourcesError: with a one-line message naming the offending item, when the value is
            empty, an item is empty, a core count is not a positive integer, a name is empty
            or contains whitespace or one of ``, : [ ]``, or a name repeats.
    """
    return [(name, count) for name, count, _ in _parse_nodes(spec)]


def _parse_nodes(spec: str) -> list[tuple[str, int, tuple[int, ...]]]:
    if not spec.strip():
        raise ResourcesError(f"Invalid --nodes value '{spec}': no nodes given ({_SYNTAX})")
    result: list[tuple[str, int, tuple[int, ...]]] = []
    seen: set[str] = set()
    for position, raw in enumerate(spec.split(",")):
        item = raw.strip()
        if not item:
            raise ResourcesError(
                f"Invalid --nodes value '{spec}': entry {position + 1} is empty ({_SYNTAX})")
        gpus: tuple[int, ...] = ()
        head, colon, last = item.rpartition(":")
        if last.strip().startswith("gpus="):
            gpus = _gpu_ids(last.strip()[len("gpus="):], item)
            item_cores = head
        else:
            item_cores = item
        # The count follows the last ':' (QCG-PilotJob splits the same way).
        name, colon, count_text = item_cores.rpartition(":")
        name, count_text = name.strip(), count_text.strip()
        if colon and not name:
            raise ResourcesError(f"Invalid --nodes value '{item}': node name is empty")
        if not name:
            name = f"n{position}"
        elif any(ch.isspace() or ch in _FORBIDDEN_IN_NAME for ch in name):
            raise ResourcesError(
                f"Invalid --nodes value '{item}': node name must not contain spaces or any of , : [ ]")
        # isascii() because str.isdigit() also accepts characters int() rejects, like '²'.
        if not (count_text.isascii() and count_text.isdigit()) or int(count_text) < 1:
            raise ResourcesError(f"Invalid --nodes value '{item}': core count must be a positive integer")
        if name in seen:
            raise ResourcesError(f"Invalid --nodes value '{item}': duplicate node name '{name}'")
        seen.add(name)
        result.append((name, int(count_text), gpus))
    return result


def local_nodes(spec: Optional[str], *, system_core: bool, hostname: str,
                cpu_count: int) -> list[tuple[str, list[int]]]:
    """Return the local resources as ``(node name, core ids)`` pairs.

    Args:
        spec: the ``--nodes`` value, or ``None`` to use the local host.
        system_core: reserve one core for the manager itself (``--system-core``): core 0 of
            the first node is removed; a first node left without cores is dropped.
        hostname: name of the local host, used when ``spec`` is ``None``.
        cpu_count: number of CPUs of the local host, used when ``spec`` is ``None``.

    Returns:
        One entry per node, core ids ``0..n-1`` ascending (minus any reserved core); never
        empty and never a node without cores.

    Raises:
        ResourcesError: ``spec`` is invalid (see :func:`parse_nodes_spec`), ``cpu_count`` is
            below 1 or ``hostname`` is empty when the host is used, or ``system_core`` would
            leave no core for jobs.
    """
    if spec is None:
        if not hostname:
            raise ResourcesError("Cannot use the local host as a node: its host name is empty")
        if cpu_count < 1:
            raise ResourcesError(
                f"Cannot use host '{hostname}' as a node: no CPU cores were detected (use --nodes)")
        counts = [(hostname, cpu_count)]
    else:
        counts = parse_nodes_spec(spec)
    nodes = [(name, list(range(count))) for name, count in counts]
    if system_core:
        total = sum(count for _, count in counts)
        if total < 2:
            source = "the local host" if spec is None else f"--nodes '{spec}'"
            raise ResourcesError(
                f"--system-core needs at least 2 cores (one is kept for the manager), "
                f"but {source} provides only {total}")
        first_cores = nodes[0][1]
        del first_cores[0]
        if not first_cores:
            # A node with nothing left to run jobs on would only mislead node-count requests.
            del nodes[0]
    return nodes


# -- discover -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResourcesInfo:
    """The resources a service runs on, and where they came from.

    Attributes:
        mode: ``'local'`` (processes on this host) or ``'slurm'`` (nodes of an allocation).
        nodes: ``(node name, core ids)`` in pool order; names unique, cores ascending, never
            empty. Slurm nodes are named by their Slurm node name, never by host name.
        gpus: GPU ids per node name (nodes without GPUs are absent).
        job_id: the Slurm job id, if any.
        end_time: the allocation's end (naive local time, as Slurm prints it), None if
            unknown or unlimited.
        source: ``'nodes'`` (--nodes), ``'host'``, ``'scontrol'`` (real CPU ids),
            ``'environment'`` (SLURM_JOB_CPUS_PER_NODE counts) or ``'file'``.
        reserved_core: ``(node, core id)`` kept for the manager by --system-core, or None.
        warnings: remarks worth a warning in the service log.
    """

    mode: str
    nodes: tuple[tuple[str, tuple[int, ...]], ...]
    gpus: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    job_id: Optional[str] = None
    end_time: Optional[datetime] = None
    source: str = "host"
    reserved_core: Optional[tuple[str, int]] = None
    warnings: tuple[str, ...] = ()

    @property
    def total_cores(self) -> int:
        """Number of cores over all nodes."""
        return sum(len(cores) for _, cores in self.nodes)

    @property
    def total_gpus(self) -> int:
        """Number of GPUs over all nodes."""
        return sum(len(ids) for ids in self.gpus.values())

    def pool_nodes(self) -> list[tuple[str, list[int]]]:
        """``(name, core ids)`` pairs for :class:`~qcgflow.runtime.resources.ResourcePool`."""
        return [(name, list(cores)) for name, cores in self.nodes]

    def pool_nodes_with_gpus(self) -> list[tuple[str, list[int], list[int]]]:
        """``(name, core ids, GPU ids)`` for :class:`~qcgflow.runtime.resources.ResourcePool`."""
        return [(name, list(cores), list(self.gpus.get(name, ()))) for name, cores in self.nodes]


def run_scontrol(job_id: str) -> str:
    """Return the text of ``scontrol show job -d JOB_ID``.

    Raises:
        OSError: scontrol is missing, fails, or takes longer than ``SCONTROL_TIMEOUT``.
    """
    try:
        done = subprocess.run(["scontrol", "show", "job", "-d", job_id], capture_output=True,
                              text=True, timeout=SCONTROL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"timed out after {SCONTROL_TIMEOUT:g} s") from exc
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or "no message"
        raise OSError(f"exit status {done.returncode}: {detail}")
    return done.stdout


def run_scontrol_nodes(names: Sequence[str]) -> str:
    """Return the text of ``scontrol show node -o NAME,NAME...`` (one line per node).

    Raises:
        OSError: scontrol is missing, fails, or takes longer than ``SCONTROL_TIMEOUT``.
    """
    try:
        done = subprocess.run(["scontrol", "show", "node", "-o", ",".join(names)],
                              capture_output=True, text=True, timeout=SCONTROL_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"timed out after {SCONTROL_TIMEOUT:g} s") from exc
    if done.returncode != 0:
        raise OSError(f"exit status {done.returncode}: {' '.join(done.stderr.split())}")
    return done.stdout


def node_cpu_totals(text: str) -> dict[str, int]:
    """``{node: CPUTot}`` from ``scontrol show node -o`` text (nodes without it left out)."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        name = re.search(r"(?:^|\s)NodeName=(\S+)", line)
        cpus = re.search(r"(?:^|\s)CPUTot=(\d+)", line)
        if name and cpus:
            totals[name.group(1)] = int(cpus.group(1))
    return totals


def allocation_shortfall(info: "ResourcesInfo",
                         show_nodes: Optional[Callable[[Sequence[str]], str]] = None
                         ) -> Optional[str]:
    """One line when a Slurm allocation gives fewer CPUs on a node than the node has.

    ``salloc -N2`` without ``--exclusive`` (or ``-c``/``--ntasks-per-node``) gets one CPU
    per node: the service then runs one core's worth of tasks per node, which users notice
    only as slowness. Returns None in local mode, when every node is given whole, or when
    the node sizes cannot be read (``show_nodes`` raising OSError: nothing to say).
    """
    if info.mode != "slurm" or not info.nodes:
        return None
    names = [name for name, _ in info.nodes]
    try:
        totals = node_cpu_totals((show_nodes or run_scontrol_nodes)(names))
    except OSError:
        return None
    reserved = info.reserved_core[0] if info.reserved_core else None
    # given: what Slurm gave (the core --system-core keeps back still counts as given)
    given = {name: len(cores) + (1 if name == reserved else 0) for name, cores in info.nodes}
    short = [(name, given[name], totals[name]) for name in names
             if name in totals and given[name] < totals[name]]
    if not short:
        return None
    shown = ", ".join("%s %d of %d" % item for item in short[:4])
    more = " and %d more" % (len(short) - 4) if len(short) > 4 else ""
    return ("the Slurm allocation gives fewer CPUs than its nodes have (%s%s): tasks get "
            "only these; ask for whole nodes with --exclusive (or set -c / "
            "--ntasks-per-node)" % (shown, more))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def run_nvidia_smi() -> Optional[str]:
    """The text of ``nvidia-smi -L``, or None when it is missing, fails or hangs."""
    if shutil.which("nvidia-smi") is None:  # no fork of the service to find that out
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def local_gpus(environ: Mapping[str, str],
               nvidia_smi: Callable[[], Optional[str]]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """GPU ids of this host and warnings: CUDA_VISIBLE_DEVICES if set, else ``nvidia-smi -L``.

    A set but empty CUDA_VISIBLE_DEVICES means no GPU (CUDA hides them all); non-numeric
    values (UUIDs, MIG names) are not counted, with a warning.
    """
    if "CUDA_VISIBLE_DEVICES" in environ:
        value = environ["CUDA_VISIBLE_DEVICES"].strip()
        items = [item.strip() for item in value.split(",") if item.strip()]
        if not all(item.isascii() and item.isdigit() for item in items):
            return (), (f"CUDA_VISIBLE_DEVICES '{value}' is not a list of GPU indices: GPUs "
                        "are not counted (use --nodes NAME:CORES:gpus=IDS)",)
        return tuple(sorted({int(item) for item in items})), ()
    text = nvidia_smi()
    if not text:
        return (), ()
    return tuple(int(m.group(1)) for m in _NVIDIA_SMI_GPU.finditer(text)), ()


def discover(config: Any, environ: Optional[Mapping[str, str]] = None,
             scontrol: Optional[Callable[[str], str]] = None, *,
             hostname: Optional[str] = None, cpu_count: Optional[int] = None,
             read_text: Optional[Callable[[str], str]] = None,
             nvidia_smi: Optional[Callable[[], Optional[str]]] = None) -> ResourcesInfo:
    """Find the resources the options ask for (see the module docstring for the rules).

    Args:
        config: a :class:`~qcgflow.runtime.config.ServiceConfig` or anything with its
            attributes ``resources``, ``nodes``, ``system_core`` and (optional)
            ``slurm_limit_nodes_begin``/``_end``, ``slurm_resources_file``.
        environ: the environment (default ``os.environ``).
        scontrol: ``job id -> text`` of ``scontrol show job -d``, raising OSError when it
            cannot be had (default :func:`run_scontrol`).
        hostname, cpu_count: facts of the local host (default: read from the system).
        read_text: ``path -> text`` for the resources file (default: read the file).
        nvidia_smi: ``() -> text of nvidia-smi -L or None`` (default: run it).

    Returns:
        A frozen :class:`ResourcesInfo` whose nodes can feed a ResourcePool.

    Raises:
        ResourcesError: a one-line message naming the option, variable or file and the value:
            ``--resources slurm`` outside an allocation, malformed SLURM_* values or
            scontrol text, an unreadable or malformed resources file, a node range that
            selects nothing, --system-core with a single core, a bad --nodes value.
    """
    environ = os.environ if environ is None else environ
    resources = getattr(config, "resources", "auto")
    path = getattr(config, "slurm_resources_file", None)
    begin = getattr(config, "slurm_limit_nodes_begin", None)
    end = getattr(config, "slurm_limit_nodes_end", None)
    system_core = bool(getattr(config, "system_core", False))
    spec = getattr(config, "nodes", None)
    if path:
        mode, allocation = _from_file(path, environ, read_text or _read_text)
    elif resources == "slurm" or (resources == "auto" and spec is None and job_id_of(environ)):
        if not job_id_of(environ):
            raise ResourcesError("--resources slurm: not inside a Slurm allocation "
                                 "(SLURM_JOB_ID is not set)")
        mode, allocation = "slurm", _from_slurm(environ, scontrol or run_scontrol)
    else:
        info = _local(spec, system_core, begin, end, hostname, cpu_count)
        if spec is not None:
            gpus = parse_nodes_gpus(spec)
            warnings: tuple[str, ...] = ()
        else:
            ids, warnings = local_gpus(environ, nvidia_smi or run_nvidia_smi)
            gpus = {info.nodes[0][0]: ids} if ids else {}
        names = {name for name, _ in info.nodes}  # --system-core may have dropped a node
        return replace(info, gpus={name: ids for name, ids in gpus.items() if name in names},
                       warnings=info.warnings + warnings)
    allocation = limit_nodes(allocation, begin, end)
    if system_core:
        allocation = reserve_system_core(
            allocation, "Slurm allocation" if not path else f"resources file '{path}'")
    return ResourcesInfo(
        mode=mode, nodes=tuple((node.name, node.cores) for node in allocation.nodes),
        gpus={node.name: node.gpus for node in allocation.nodes if node.gpus},
        job_id=allocation.job_id, end_time=allocation.end_time,
        source="file" if path else allocation.source, reserved_core=allocation.reserved_core,
        warnings=allocation.notes)


def _local(spec: Optional[str], system_core: bool, begin: Optional[int], end: Optional[int],
           hostname: Optional[str], cpu_count: Optional[int]) -> ResourcesInfo:
    if spec is None:
        hostname = socket.gethostname() if hostname is None else hostname
        cpu_count = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    nodes = local_nodes(spec, system_core=system_core, hostname=hostname or "",
                        cpu_count=cpu_count or 0)
    reserved = None
    if system_core:
        first = parse_nodes_spec(spec)[0][0] if spec is not None else hostname
        reserved = (first, 0)
    warnings = ()
    if begin is not None or end is not None:
        warnings = ("--slurm-limit-nodes-range-begin/-end ignored: not inside a Slurm "
                    "allocation, using local resources",)
    return ResourcesInfo(mode="local", nodes=tuple((name, tuple(cores)) for name, cores in nodes),
                         source="host" if spec is None else "nodes", reserved_core=reserved,
                         warnings=warnings)


def _from_slurm(environ: Mapping[str, str], scontrol: Callable[[str], str]) -> SlurmAllocation:
    job_id = job_id_of(environ)
    try:
        text = scontrol(job_id)
    except OSError as exc:
        allocation = allocation_from_env(environ, None)
        failed = (f"scontrol show job -d {job_id} failed ({exc}): the CPU ids and the end time "
                  f"of the allocation are unknown")
        return replace(allocation, notes=(failed,) + allocation.notes)
    return allocation_from_env(environ, parse_job_details(text))


def _from_file(path: str, environ: Mapping[str, str],
               read_text: Callable[[str], str]) -> tuple[str, SlurmAllocation]:
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ResourcesError(f"Cannot read --slurm-resources-file '{path}': {reason}") from exc
    if text.lstrip().startswith("{"):
        return parse_resources_json(text, path)
    source = f"--slurm-resources-file '{path}'"
    details = parse_job_details(text, source)
    if not details.cpu_ids:
        raise ResourcesError(
            f"{source}: no 'Nodes=... CPU_IDs=...' lines (expected the output of "
            f"`scontrol show job -d JOBID` or a JSON resources description)")
    if details.node_list is None:
        details = JobDetails(job_id=details.job_id, node_list=",".join(details.cpu_ids),
                             end_time=details.end_time, cpu_ids=details.cpu_ids,
                             gpu_ids=details.gpu_ids)
    # The file, not the environment, describes the nodes; only the job id may come from it.
    job_env = {"SLURM_JOB_ID": details.job_id or job_id_of(environ) or ""}
    return "slurm", allocation_from_env(job_env, details)


def parse_resources_json(text: str, path: str) -> tuple[str, SlurmAllocation]:
    """Parse QCG-PilotJob's JSON resources description; return ``(mode, allocation)``.

    Raises:
        ResourcesError: invalid JSON, or a description that is not an object with a known
            ``type`` and a non-empty ``nodes`` list of named nodes with integer core ids.
    """
    where = f"--slurm-resources-file '{path}'"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ResourcesError(f"{where}: not valid JSON ({exc})") from exc
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in ("SLURM", "LOCAL"):
        raise ResourcesError(f"{where}: 'type' must be \"SLURM\" or \"LOCAL\", got {kind!r}")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ResourcesError(f"{where}: 'nodes' must be a non-empty list")
    nodes = tuple(_json_node(raw, number, where) for number, raw in enumerate(raw_nodes))
    names = [node.name for node in nodes]
    for name in names:
        if names.count(name) > 1:
            raise ResourcesError(f"{where}: node '{name}' is listed twice")
    return kind.lower(), SlurmAllocation(job_id=None, nodes=nodes, source="file")


def _json_ids(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise ResourcesError(f"{what} must be a list")
    ids = []
    for value in values:
        text = str(value).strip()
        if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
            hint = " (hyper-thread groups are not supported)" if "," in text else ""
            raise ResourcesError(f"{what}: '{value}' is not a non-negative integer id{hint}")
        ids.append(int(text))
    if len(set(ids)) != len(ids):
        raise ResourcesError(f"{what}: an id is listed twice")
    return tuple(sorted(ids))


def _json_node(raw: Any, number: int, where: str) -> SlurmNode:
    if not isinstance(raw, dict):
        raise ResourcesError(f"{where}: node {number} is not an object")
    name = raw.get("name")
    if (not isinstance(name, str) or not name
            or any(ch.isspace() or ch in _FORBIDDEN_IN_NAME for ch in name)):
        raise ResourcesError(f"{where}: node {number} has no valid 'name' (got {name!r})")
    what = f"{where} node '{name}'"
    total = raw.get("total_cores")
    if "free_cores" in raw and raw["free_cores"] is not None:
        cores = _json_ids(raw["free_cores"], f"{what} free_cores")
    elif raw.get("core_ids"):
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            total = len(raw["core_ids"]) if isinstance(raw["core_ids"], list) else 0
        cores = _json_ids(raw["core_ids"], f"{what} core_ids")[:total]
    elif isinstance(total, int) and not isinstance(total, bool) and total > 0:
        cores = tuple(range(total))
    else:
        raise ResourcesError(f"{what}: no cores (give total_cores, core_ids or free_cores)")
    if not cores:
        raise ResourcesError(f"{what}: no free cores")
    gpus: tuple[int, ...] = ()
    crs = raw.get("crs") or {}
    gpu = crs.get("GPU") if isinstance(crs, dict) else None
    if isinstance(gpu, dict):
        data = gpu.get("data") if isinstance(gpu.get("data"), dict) else gpu
        if data.get("ids") is not None:
            gpus = _json_ids(data["ids"], f"{what} GPU ids")
        elif isinstance(data.get("total"), int):
            gpus = tuple(range(data["total"]))
    return SlurmNode(name, cores, gpus)
