"""Discovery of local resources: the ``--nodes`` option and the local host.

Pure: the host name and CPU count are passed in by the caller, which reads them from the
system; this module only turns them (or a ``--nodes`` value) into ``(node, core ids)``
pairs suitable for :class:`qcgflow.runtime.resources.ResourcePool`.

``--nodes`` follows QCG-PilotJob's syntax ``[NODE_NAME:]CORES[,[NODE_NAME:]CORES]...``:
``'4'`` is one node with 4 cores, ``'4,2,2'`` three unnamed nodes, ``'n1:4, n2:4'`` two
named ones. An unnamed node is called ``n<position>`` after its 0-based position in the list.
"""

from __future__ import annotations

from typing import Optional

from qcgflow.runtime.errors import ResourcesError

__all__ = ["parse_nodes_spec", "local_nodes"]

# Characters that would make the runtime's 'node[c0:c1],node2[...]' allocation wire format
# ambiguous, so they may not appear in a node name.
_FORBIDDEN_IN_NAME = frozenset(",:[]")

_SYNTAX = "expected [NAME:]CORES[,[NAME:]CORES]..."


def parse_nodes_spec(spec: str) -> list[tuple[str, int]]:
    """Parse a ``--nodes`` value into ``(node name, core count)`` pairs in the given order.

    Guarantees: at least one node, names unique and non-empty, every count >= 1.

    Raises:
        ResourcesError: with a one-line message naming the offending item, when the value is
            empty, an item is empty, a core count is not a positive integer, a name is empty
            or contains whitespace or one of ``, : [ ]``, or a name repeats.
    """
    if not spec.strip():
        raise ResourcesError(f"Invalid --nodes value '{spec}': no nodes given ({_SYNTAX})")
    result: list[tuple[str, int]] = []
    seen: set[str] = set()
    for position, raw in enumerate(spec.split(",")):
        item = raw.strip()
        if not item:
            raise ResourcesError(
                f"Invalid --nodes value '{spec}': entry {position + 1} is empty ({_SYNTAX})")
        # The count follows the last ':' (QCG-PilotJob splits the same way).
        name, colon, count_text = item.rpartition(":")
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
        result.append((name, int(count_text)))
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
