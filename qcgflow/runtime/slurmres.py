"""Slurm allocation facts turned into ``(node name, core ids)``: Slurm's notations, parsed.

Pure: no I/O, no environment reads, no clock. The caller (:mod:`qcgflow.runtime.discovery`)
reads the environment and runs ``scontrol``; this module only interprets the text::

    environ: SLURM_JOB_ID, SLURM_JOB_NODELIST ('n[1-3]'), SLURM_JOB_CPUS_PER_NODE ('2(x2),1')
    `scontrol show job -d ID` text: NodeList=, EndTime=, 'Nodes=n[1-2] CPU_IDs=0-1 ... GRES=...'
        -> allocation_from_env(...) -> SlurmAllocation(job_id, nodes=(SlurmNode(name, cores,
           gpus), ...), end_time, source)
        -> limit_nodes(...)           (--slurm-limit-nodes-range-begin/-end)
        -> reserve_system_core(...)   (--system-core: first core of the first node)

Nodes are identified by their Slurm node name (what ``SLURMD_NODENAME`` says on the node),
never by host name: several Slurm nodes may share one host.

Every error is a :class:`~qcgflow.runtime.errors.ResourcesError` with a one-line message that
names the variable (or option, or text) and the offending value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Mapping, Optional

from qcgflow.runtime.errors import ResourcesError

__all__ = ["SlurmNode", "JobDetails", "SlurmAllocation", "expand_node_list", "expand_counts",
           "expand_ids", "parse_gres_gpus", "parse_job_details", "limit_nodes",
           "reserve_system_core", "allocation_from_env", "job_id_of", "nodes_of", "MAX_EXPANDED"]

# A typo such as 'n[1-100000000]' must fail fast instead of building a huge list.
MAX_EXPANDED = 1_000_000

_COUNT_ITEM = re.compile(r"(\d+)(?:\(x(\d+)\))?\Z", re.ASCII)
_ID_ITEM = re.compile(r"(\d+)(?:-(\d+))?\Z", re.ASCII)
# 'gpu:2(IDX:0-1)', 'gpu:a100:2(IDX:0,2)', 'gpu(IDX:0-1)' (GRES_IDX= of older Slurm).
_GPU_GRES = re.compile(r"(?:^|,)gpu(?::[^,(]*)?\(IDX:([^)]*)\)")
_DETAIL_KEYS = frozenset({"Nodes", "CPU_IDs", "Mem", "GRES", "GRES_IDX"})
_NO_VALUE = frozenset({"", "(null)", "N/A", "None", "Unknown"})


@dataclass(frozen=True)
class SlurmNode:
    """One node of an allocation: its Slurm name, the CPU ids given to the job, GPU ids."""

    name: str
    cores: tuple[int, ...]
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobDetails:
    """What ``scontrol show job -d ID`` (multi-line or ``-o``) says about one job.

    ``cpu_ids``/``gpu_ids`` map node names to ascending ids; they are empty when the text has
    no detail lines (``scontrol`` without ``-d``). ``end_time`` is the local wall-clock time
    Slurm prints (naive), ``None`` when the job has no time limit (``EndTime=Unknown``) or the
    value cannot be read.
    """

    job_id: Optional[str] = None
    node_list: Optional[str] = None
    end_time: Optional[datetime] = None
    cpu_ids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    gpu_ids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SlurmAllocation:
    """The usable part of an allocation.

    ``source`` says where the core ids come from: ``'scontrol'`` (the real CPU ids Slurm gave
    the job) or ``'environment'`` (only counts were known: ids ``0..n-1``).
    ``reserved_core`` is ``(node, cpu id)`` kept for the manager by :func:`reserve_system_core`.
    ``notes`` are non-fatal remarks the caller should log as warnings.
    """

    job_id: Optional[str]
    nodes: tuple[SlurmNode, ...]
    end_time: Optional[datetime] = None
    source: str = "environment"
    reserved_core: Optional[tuple[str, int]] = None
    notes: tuple[str, ...] = ()


def _bad(source: str, value: str, reason: str) -> ResourcesError:
    return ResourcesError(f"Invalid {source} value '{value}': {reason}")


def _split_top_level(spec: str, source: str) -> list[str]:
    """Split at commas outside brackets; unbalanced or nested brackets are errors."""
    items, depth, start = [], 0, 0
    for position, char in enumerate(spec):
        if char == "[":
            if depth:
                raise _bad(source, spec, "nested '['")
            depth = 1
        elif char == "]":
            if not depth:
                raise _bad(source, spec, "']' without '['")
            depth = 0
        elif char == "," and not depth:
            items.append(spec[start:position])
            start = position + 1
    if depth:
        raise _bad(source, spec, "'[' without ']'")
    items.append(spec[start:])
    return items


def _expand_ranges(body: str, spec: str, source: str) -> list[str]:
    """'1-3,05' -> ['1', '2', '3', '05']: the width of a range's first bound is kept."""
    result: list[str] = []
    for part in body.split(","):
        low, dash, high = part.partition("-")
        if not (low.isascii() and low.isdigit()) or (
                dash and not (high.isascii() and high.isdigit())):
            raise _bad(source, spec, f"bad range '{part}' in brackets (expected N or N-M)")
        if not dash:
            result.append(low)
            continue
        first, last = int(low), int(high)
        if first > last:
            raise _bad(source, spec, f"range '{part}' goes backwards")
        if last - first >= MAX_EXPANDED:
            raise _bad(source, spec, f"range '{part}' is too large")
        # Slurm pads every number to the width of the range's first bound: n[08-10] -> n08..n10.
        width = len(low)
        result.extend(str(number).zfill(width) for number in range(first, last + 1))
    return result


def _expand_item(item: str, spec: str, source: str) -> list[str]:
    """One comma-free host expression: literal text and bracket groups, their product."""
    names = [""]
    position = 0
    while position < len(item):
        opening = item.find("[", position)
        if opening < 0:
            names = [name + item[position:] for name in names]
            break
        closing = item.index("]", opening)  # brackets are balanced: _split_top_level checked
        literal, body = item[position:opening], item[opening + 1:closing]
        position = closing + 1
        if not body:
            raise _bad(source, spec, "empty '[]'")
        values = _expand_ranges(body, spec, source)
        if len(names) * len(values) > MAX_EXPANDED:
            raise _bad(source, spec, f"expands to more than {MAX_EXPANDED} names")
        names = [name + literal + value for name in names for value in values]
    return names


def expand_node_list(spec: str, source: str = "SLURM_JOB_NODELIST") -> list[str]:
    """Expand a Slurm host list: ``'n[1-3,5]'`` -> ``['n1', 'n2', 'n3', 'n5']``.

    Supports zero padding (``tcn[0001-0004]``), several bracket groups in one name
    (``r[1-2]n[1-2]`` -> ``r1n1 r1n2 r2n1 r2n2``, as ``scontrol show hostnames``) and
    comma-separated mixes (``a[1-2],b3``). Order is kept as written.

    Args:
        spec: the host list.
        source: where ``spec`` came from (variable or option name), used in error messages.

    Raises:
        ResourcesError: empty list or item, whitespace, unbalanced/nested/empty brackets, a
            non-numeric or backward range, a name containing ``:``, a repeated name, or more
            than :data:`MAX_EXPANDED` names.
    """
    if not spec or not spec.strip():
        raise _bad(source, spec, "no nodes")
    if any(char.isspace() for char in spec):
        raise _bad(source, spec, "node lists contain no whitespace")
    names: list[str] = []
    for item in _split_top_level(spec, source):
        if not item:
            raise _bad(source, spec, "empty entry")
        names.extend(_expand_item(item, spec, source))
        if len(names) > MAX_EXPANDED:
            raise _bad(source, spec, f"expands to more than {MAX_EXPANDED} names")
    # Names are made of the literal text and digits, so ':' in the text is the only way a
    # name could break the allocation wire format (',' '[' ']' are host-list syntax).
    if ":" in spec:
        bad = next(name for name in names if ":" in name)
        raise _bad(source, spec, f"node name '{bad}' contains one of , : [ ]")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        twice = next(name for name in names if name in seen or seen.add(name))
        raise _bad(source, spec, f"node '{twice}' is listed twice")
    return names


def expand_counts(spec: str, source: str = "SLURM_JOB_CPUS_PER_NODE") -> list[int]:
    """Expand Slurm's per-node counts: ``'2(x3),1'`` -> ``[2, 2, 2, 1]``.

    Raises:
        ResourcesError: empty value or entry, an entry that is not ``N`` or ``N(xM)``, a zero
            count or repetition, or more than :data:`MAX_EXPANDED` values.
    """
    if not spec or not spec.strip():
        raise _bad(source, spec, "no counts")
    result: list[int] = []
    for item in spec.split(","):
        match = _COUNT_ITEM.match(item.strip())
        if not match:
            raise _bad(source, spec, f"entry '{item}' is not N or N(xM)")
        count, times = int(match.group(1)), int(match.group(2) or 1)
        if count < 1 or times < 1:
            raise _bad(source, spec, f"entry '{item}' has a zero count")
        if len(result) + times > MAX_EXPANDED:
            raise _bad(source, spec, f"expands to more than {MAX_EXPANDED} values")
        result.extend([count] * times)
    return result


def expand_ids(spec: str, source: str) -> list[int]:
    """Expand an id list such as ``'0-1,4'`` -> ``[0, 1, 4]`` (ascending, no repeats).

    Raises:
        ResourcesError: empty value or entry, an entry that is not ``N`` or ``N-M``, a
            backward range, a repeated id, or more than :data:`MAX_EXPANDED` ids.
    """
    if not spec or not spec.strip():
        raise _bad(source, spec, "no ids")
    result: list[int] = []
    for item in spec.split(","):
        match = _ID_ITEM.match(item.strip())
        if not match:
            raise _bad(source, spec, f"entry '{item}' is not N or N-M")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if first > last:
            raise _bad(source, spec, f"range '{item}' goes backwards")
        if len(result) + last - first + 1 > MAX_EXPANDED:
            raise _bad(source, spec, f"expands to more than {MAX_EXPANDED} ids")
        result.extend(range(first, last + 1))
    if len(set(result)) != len(result):
        raise _bad(source, spec, "an id is listed twice")
    return sorted(result)


def parse_gres_gpus(value: str, source: str = "GRES") -> list[int]:
    """GPU indices from a per-node GRES value of ``scontrol show job -d``.

    ``'gpu:2(IDX:0-1)'`` -> ``[0, 1]``; ``'gpu:a100:1(IDX:0),gpu:v100:1(IDX:3)'`` -> ``[0, 3]``;
    no gpu entry, ``'(null)'`` or ``IDX:N/A`` -> ``[]``. Other GRES kinds are ignored.

    Raises:
        ResourcesError: an ``IDX:`` list that is not an id list, or a GPU listed twice.
    """
    ids: list[int] = []
    for match in _GPU_GRES.finditer(value.strip()):
        idx = match.group(1).strip()
        if idx in _NO_VALUE:
            continue
        ids.extend(expand_ids(idx, source))
    if len(set(ids)) != len(ids):
        raise _bad(source, value, "a GPU index is listed twice")
    return sorted(ids)


def _parse_end_time(value: str) -> Optional[datetime]:
    if value in _NO_VALUE:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None  # documented: an unreadable end time is an unknown end time


def parse_job_details(text: str, source: str = "scontrol show job -d") -> JobDetails:
    """Parse the output of ``scontrol show job -d ID`` (either layout, with or without ``-o``).

    Detail entries (``Nodes=n[1-2] CPU_IDs=0-1 Mem=0 GRES=gpu:2(IDX:0-1)``) give every node
    of the group the same CPU and GPU ids; groups may be listed in any number.

    Raises:
        ResourcesError: a ``CPU_IDs``/``GRES`` entry before any ``Nodes=``, a node in two
            groups, or a malformed host list or id list (named after ``source``).
    """
    job_id = node_list = None
    end_time: Optional[datetime] = None
    cpu_ids: dict[str, tuple[int, ...]] = {}
    gpu_ids: dict[str, tuple[int, ...]] = {}
    group: Optional[list[str]] = None
    for token in text.split():
        key, equals, value = token.partition("=")
        if not equals:
            continue
        if key not in _DETAIL_KEYS:
            group = None
            if key == "JobId" and job_id is None:
                job_id = value
            elif key == "NodeList" and value not in _NO_VALUE:
                node_list = value
            elif key == "EndTime":
                end_time = _parse_end_time(value)
            continue
        if key == "Nodes":
            group = expand_node_list(value, f"{source} Nodes")
            for name in group:
                if name in cpu_ids:
                    raise _bad(f"{source} Nodes", value, f"node '{name}' appears in two groups")
                cpu_ids[name] = ()
            continue
        if group is None:
            raise _bad(source, token, "detail entry without a preceding Nodes=")
        if key == "CPU_IDs":
            ids = tuple(expand_ids(value, f"{source} CPU_IDs"))
            for name in group:
                cpu_ids[name] = ids
        elif key in ("GRES", "GRES_IDX"):
            gpus = tuple(parse_gres_gpus(value, f"{source} {key}"))
            if gpus:
                for name in group:
                    gpu_ids[name] = gpus
    # A 'Nodes=' group without CPU_IDs says nothing about CPUs.
    cpu_ids = {name: ids for name, ids in cpu_ids.items() if ids}
    return JobDetails(job_id=job_id, node_list=node_list, end_time=end_time, cpu_ids=cpu_ids,
                      gpu_ids=gpu_ids)


def job_id_of(environ: Mapping[str, str]) -> Optional[str]:
    """The allocation's job id (``SLURM_JOB_ID``, else the older ``SLURM_JOBID``), or None."""
    return environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID") or None


def _node_list_of(environ: Mapping[str, str]) -> tuple[Optional[str], str]:
    for variable in ("SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if environ.get(variable):
            return environ[variable], variable
    return None, "SLURM_JOB_NODELIST"


_GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")


def _env_gpus(environ: Mapping[str, str]) -> tuple[tuple[int, ...], Optional[str]]:
    """The GPU ids Slurm put in the environment of the pilot's own node, if numeric.

    CUDA_VISIBLE_DEVICES first (what CUDA numbers from, also under device cgroups), then
    SLURM_STEP_GPUS, SLURM_JOB_GPUS. They describe the node the pilot runs on only.
    """
    for variable in _GPU_VARIABLES:
        value = environ.get(variable, "").strip()
        if not value:
            continue
        items = [item.strip() for item in value.split(",")]
        if not all(item.isascii() and item.isdigit() for item in items):
            return (), (f"{variable} '{value}' is not a list of GPU indices: "
                        "GPUs are not counted")
        return tuple(sorted({int(item) for item in items})), None
    return (), None


def allocation_from_env(environ: Mapping[str, str], details: Optional[JobDetails] = None,
                        ) -> SlurmAllocation:
    """Build the allocation's nodes from the SLURM_* variables and ``scontrol`` details.

    Node names and order come from ``SLURM_JOB_NODELIST`` (or ``SLURM_NODELIST``, or the
    details' ``NodeList=`` when neither is set). CPU ids come from the details' ``CPU_IDs``
    when present (the ids Slurm gave the job on each node), otherwise from the counts in
    ``SLURM_JOB_CPUS_PER_NODE`` (ids ``0..n-1``, with a note). GPU ids come from the details'
    GRES ``IDX`` of every node, otherwise from the pilot's own environment
    (``CUDA_VISIBLE_DEVICES``, ``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS``), which describes only
    the node it runs on (``SLURMD_NODENAME``, else the first node): the other nodes' GPUs are
    then unknown and not used, with a note. Upstream assumed the same ids on every node.

    Raises:
        ResourcesError: no job id, no node list, a node the details do not describe, counts
            that do not match the node list, or any malformed value (named in the message).
    """
    details = details or JobDetails()
    job_id = job_id_of(environ) or details.job_id
    spec, variable = _node_list_of(environ)
    if spec is None and details.node_list:
        spec, variable = details.node_list, "scontrol NodeList"
    if spec is None:
        raise ResourcesError("Not inside a Slurm allocation: SLURM_JOB_NODELIST is not set")
    names = expand_node_list(spec, variable)
    notes: list[str] = []
    if details.cpu_ids:
        missing = [name for name in names if name not in details.cpu_ids]
        if missing:
            raise ResourcesError(
                f"scontrol show job -d {job_id or ''} gives no CPU_IDs for node '{missing[0]}' "
                f"of {variable} '{spec}'")
        cores = [details.cpu_ids[name] for name in names]
        source = "scontrol"
    else:
        counts_text = environ.get("SLURM_JOB_CPUS_PER_NODE")
        if not counts_text:
            raise ResourcesError(
                "Cannot tell the cores of the Slurm allocation: no CPU_IDs from scontrol and "
                "SLURM_JOB_CPUS_PER_NODE is not set")
        counts = expand_counts(counts_text, "SLURM_JOB_CPUS_PER_NODE")
        if len(counts) != len(names):
            raise ResourcesError(
                f"SLURM_JOB_CPUS_PER_NODE '{counts_text}' gives {len(counts)} counts but "
                f"{variable} '{spec}' lists {len(names)} nodes")
        cores = [tuple(range(count)) for count in counts]
        source = "environment"
        notes.append("CPU ids of the Slurm allocation are unknown (no scontrol details): "
                     "using 0..n-1 from SLURM_JOB_CPUS_PER_NODE")
    if details.gpu_ids:
        gpus = [details.gpu_ids.get(name, ()) for name in names]
    else:
        ids, note = _env_gpus(environ)
        host = environ.get("SLURMD_NODENAME")
        host = host if host in names else names[0]
        gpus = [ids if name == host else () for name in names]
        if note:
            notes.append(note)
        if ids and len(names) > 1:
            notes.append(f"GPU ids of the nodes other than {host} are unknown (scontrol gave "
                         f"no GRES IDX): only the GPUs of {host} are used")
    nodes = tuple(SlurmNode(name, tuple(ids), node_gpus)
                  for name, ids, node_gpus in zip(names, cores, gpus))
    return SlurmAllocation(job_id=job_id, nodes=nodes, end_time=details.end_time,
                           source=source, notes=tuple(notes))


def limit_nodes(allocation: SlurmAllocation, begin: Optional[int],
                end: Optional[int]) -> SlurmAllocation:
    """Keep nodes ``begin <= index < end`` (0-based, ``end`` exclusive, as upstream).

    ``begin`` defaults to 0 and ``end`` to the number of nodes; an ``end`` past the last node
    is cut to it (upstream does the same).

    Raises:
        ResourcesError: a negative value, ``begin`` at or past the number of nodes, or a
            range that selects no node.
    """
    if begin is None and end is None:
        return allocation
    total = len(allocation.nodes)
    first = 0 if begin is None else begin
    last = total if end is None else min(end, total)
    if first < 0:
        raise ResourcesError(f"--slurm-limit-nodes-range-begin {first} is negative")
    if end is not None and end < 0:
        raise ResourcesError(f"--slurm-limit-nodes-range-end {end} is negative")
    if first >= total:
        raise ResourcesError(
            f"--slurm-limit-nodes-range-begin {first} is past the last node of the allocation "
            f"({total} nodes, numbered from 0)")
    if first >= last:
        raise ResourcesError(
            f"--slurm-limit-nodes-range-begin {first} / -end {end} select no nodes "
            f"(the end is exclusive)")
    return replace(allocation, nodes=allocation.nodes[first:last])


def reserve_system_core(allocation: SlurmAllocation,
                        what: str = "Slurm allocation") -> SlurmAllocation:
    """Keep the lowest CPU id of the first node for the manager (``--system-core``).

    A first node left without cores is dropped (with its GPUs): it could run no job.
    ``what`` names the resources in the error message.

    Raises:
        ResourcesError: fewer than 2 cores in total (nothing would be left for jobs).
    """
    total = sum(len(node.cores) for node in allocation.nodes)
    if total < 2:
        raise ResourcesError(
            f"--system-core needs at least 2 cores (one is kept for the manager), but the "
            f"{what} provides only {total}")
    first, rest = allocation.nodes[0], allocation.nodes[1:]
    reserved = (first.name, first.cores[0])
    if len(first.cores) > 1:
        rest = (replace(first, cores=first.cores[1:]),) + rest
    return replace(allocation, nodes=rest, reserved_core=reserved)


def nodes_of(allocation: SlurmAllocation) -> list[tuple[str, list[int]]]:
    """``(node name, core ids)`` pairs: the input of a ResourcePool."""
    return [(node.name, list(node.cores)) for node in allocation.nodes]
