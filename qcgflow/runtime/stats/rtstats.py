"""Exact start and end times of every launched process (``--enable-rt-stats``).

::

    LocalLauncher: spawn returned (the child has exec'd) -> started (monotonic)
                   pidfd readable -> wait4               -> ended (monotonic), rusage
        -> Executor.exit_listeners -> RtStatsRecorder -> <aux_dir>/rtstats.jsonl

Upstream QCG-PilotJob needs a C wrapper around every task to learn these times; our
launcher knows them already, so no wrapper is involved and nothing is added to the task's
command line.

The file holds JSON lines: a first line describing the resources
(``{"resources": {"n0": [0, 1]}, "host": ..., "pid": ...}``) and then one line per
process::

    {"name": "job:0", "allocation": "n0[0]", "pid": 8350, "start": "2026-...T...",
     "end": "...", "exit_code": 0, "utime": 0.01, "stime": 0.0, "maxrss_kb": 2048}

Times are local, naive ISO dates like the ones in jobs.report, so both can be compared.
Lines are buffered and written in batches (at most every 0.5 s, and on close).
"""

import json
import os
import socket
import time
from datetime import datetime
from typing import List, Optional, Sequence, Tuple

from ..batched import BatchedLines

RTSTATS_FILE = "rtstats.jsonl"


class RtStatsRecorder:
    """An executor exit listener that appends one line per ended process.

    Args:
        path: the file to append to.
        loop: the service's event loop (for the batch timer).
        nodes: the resources as ``(node name, core ids)``, written as the first line.
        delay: seconds a line may wait in the buffer.
        batch: lines that force a write at once.
    """

    def __init__(self, path: str, loop, nodes: Sequence[Tuple[str, Sequence[int]]],
                 delay: float = 0.5, batch: int = 5000):
        self.path = path
        self._loop = loop
        self._delay = delay
        self._batch = batch
        self._out = BatchedLines(path)
        header = {"resources": {name: list(cores) for name, cores in nodes},
                  "host": socket.gethostname(), "pid": os.getpid()}
        self._out.write_now(json.dumps(header) + "\n")

    def __call__(self, name: str, allocation, info) -> None:
        # The launcher's times are monotonic; map them to the wall clock as it is now, so
        # a clock step during a long run shifts only the processes that ended after it.
        offset = time.time() - time.monotonic()
        record = {
            "name": name,
            "allocation": allocation.describe(),
            "pid": info.pid,
            "start": _iso(info.started + offset),
            "end": _iso(info.ended + offset),
            "exit_code": info.exit_code,
            "utime": round(info.user_time, 6),
            "stime": round(info.system_time, 6),
            "maxrss_kb": info.max_rss_kb,
        }
        self._out.append(json.dumps(record, separators=(",", ":")) + "\n")
        if len(self._out) >= self._batch:
            self._out.flush()
        else:
            self._out.flush_later(self._loop, self._delay)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).isoformat()


def read_rtstats(path: str) -> Tuple[Optional[dict], List[dict]]:
    """The header and the process lines of an rtstats file (a torn last line is skipped)."""
    header, records = None, []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed service
            if not isinstance(data, dict):
                continue
            if "resources" in data and "name" not in data:
                # one header per service run (a --resume appends): the union of them
                if header is not None and isinstance(header.get("resources"), dict) \
                        and isinstance(data.get("resources"), dict):
                    data = dict(data, resources=dict(header["resources"],
                                                     **data["resources"]))
                header = data
            elif "name" in data:
                records.append(data)
    return header, records
