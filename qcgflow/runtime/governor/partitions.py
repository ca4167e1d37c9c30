"""``--slurm-partition-nodes N``: one manager per N nodes of the allocation.

::

    governor --discover the allocation (Slurm)--> nodes 0..K-1 (after any
             --slurm-limit-nodes-range) --> partitions [0,N) [N,2N) ... (the last may be
             smaller) --> one child ``qcgflow service --parent <hub> --parent-secrets <dir>
             --id <governor id>.p<k> --slurm-limit-nodes-range-begin/-end ...`` per partition
             (runtime/client/spawn.py), output in <aux>/partition-<k>.log

The managers run as child processes on the governor's host (``--slurm-partition-start
local``, the default) or, with ``srun``, each in an ``srun --overlap -N1 -n1`` step on the
first node of its partition (then the governor must bind an address the nodes reach,
``--net-address``). Either way each starts its own node agents on its partition's nodes,
so the tasks run where they belong. Guarantees: ``problem()`` names the first child
that ended before it registered (with the tail of its log); ``stop`` waits for the children
(they were told to finish) and kills what is left after ``grace`` seconds.
"""

import logging
import os
import subprocess
import time
from typing import List, Optional, Tuple

from ..client.spawn import ServiceStartError, start_service
from ..discovery import discover
from ..errors import RuntimeLayerError

_log = logging.getLogger(__name__)

# options a partition manager inherits from the governor's command line
_PASSED = (("disable_nl", "--disable-nl", None), ("system_core", "--system-core", None),
           ("nl_start_method", "--nl-start-method", str),
           ("nl_init_timeout", "--nl-init-timeout", str),
           ("nl_ready_threshold", "--nl-ready-threshold", str),
           ("slurm_resources_file", "--slurm-resources-file", str),
           ("enable_rt_stats", "--enable-rt-stats", None),
           ("disable_warm_workers", "--disable-warm-workers", None))


def partition_ranges(total_nodes: int, per: int) -> List[Tuple[int, int]]:
    """``[begin, end)`` node index ranges of ``per`` nodes (the last may be smaller)."""
    return [(begin, min(begin + per, total_nodes)) for begin in range(0, total_nodes, per)]


class Partitions:
    """The partition managers started by a governor."""

    def __init__(self, config, governor_id: str, wd: str, aux_dir: str):
        self._config = config
        self._governor_id = governor_id
        self._wd = wd
        self._aux_dir = aux_dir
        self.children: List[Tuple[str, subprocess.Popen, str]] = []  # (id, process, log)
        self.ranges: List[Tuple[int, int]] = []

    def plan(self) -> List[Tuple[int, int]]:
        """Discover the allocation and split it; raises a one-line RuntimeLayerError."""
        info = discover(self._config)
        if getattr(info, "mode", "local") != "slurm":
            raise RuntimeLayerError("--slurm-partition-nodes needs a Slurm allocation (run it "
                                    "inside salloc or sbatch)")
        offset = self._config.slurm_limit_nodes_begin or 0
        self.node_names = [name for name, _ in info.pool_nodes()]
        nodes = len(self.node_names)
        self.ranges = [(offset + b, offset + e) for b, e in
                       partition_ranges(nodes, self._config.slurm_partition_nodes)]
        _log.info("allocation of %d nodes: %d partitions of up to %d nodes", nodes,
                  len(self.ranges), self._config.slurm_partition_nodes)
        return self.ranges

    def manager_id(self, k: int) -> str:
        return "%s.p%d" % (self._governor_id, k)

    def start(self, hub_address: str, secrets_dir: str) -> None:
        config = self._config
        for k, (begin, end) in enumerate(self.ranges):
            place = []
            if config.slurm_partition_start == "srun":  # the manager on its first node
                first = self.node_names[begin - (config.slurm_limit_nodes_begin or 0)]
                place = ["srun", "--overlap", "-N1", "-n1", "-w", first, "--cpu-bind=none",
                         "--job-name", self.manager_id(k)]
            args = [
                "--parent", hub_address,
                "--parent-secrets", secrets_dir, "--id", self.manager_id(k),
                "--wd", self._wd, "--log", config.log_level, "--resources", "slurm",
                "--slurm-limit-nodes-range-begin", str(begin),
                "--slurm-limit-nodes-range-end", str(end),
                # the governor publishes the states and a governor is not resumed
                # (docs/governor.md): the partition managers need neither
                "--disable-pub", "--no-journal"]
            if config.tags:
                args += ["--tags", ",".join(config.tags)]
            for attr, option, text in _PASSED:
                value = getattr(config, attr, None)
                if text is None and value:
                    args.append(option)
                elif text is not None and value is not None:
                    args += [option, text(value)]
            log_path = os.path.join(self._aux_dir, "partition-%d.log" % k)
            with open(log_path, "wb") as log:
                # no ready line (it registers with the hub), no owner pipe (srun), and
                # our session: Slurm's signals reach it as before
                try:
                    child = start_service(args, prefix=place, cwd=self._wd, output=log,
                                          ready=False, owner=False, own_session=False)
                except ServiceStartError as exc:
                    raise RuntimeLayerError("partition manager %s: %s" % (
                        self.manager_id(k), exc)) from None
                child.close()  # nothing of spawn's to keep: the process is watched here
                process = child.popen
            self.children.append((self.manager_id(k), process, log_path))
            _log.info("partition %d (nodes %d..%d): manager %s, pid %d%s, log %s", k, begin,
                      end - 1, self.manager_id(k), process.pid,
                      " (srun on %s)" % place[5] if place else "", log_path)

    def problem(self, registered) -> Optional[str]:
        """Why the partitions cannot all register: a child that already ended."""
        for manager_id, process, log_path in self.children:
            if manager_id not in registered and process.poll() is not None:
                return "partition manager %s ended (exit %s) before it registered: %s" % (
                    manager_id, process.returncode, _tail(log_path))
        return None

    def stop(self, told=(), grace: float = 10.0) -> None:
        """Wait up to ``grace`` s for the managers in ``told`` (asked to finish); terminate
        the others (they never registered, so nobody can ask them) at once."""
        deadline = time.monotonic() + grace
        for manager_id, process, _ in self.children:
            if manager_id not in told and process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log.warning("partition manager %s did not finish in %.0f s: killing it",
                             manager_id, grace)
                process.kill()
                process.wait()


def _tail(path: str, limit: int = 400) -> str:
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode(errors="replace").strip()
    except OSError:
        return "(no log)"
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "(empty log)")[-limit:]
