"""``JobInfo``: a ``jobInfo`` reply entry parsed into attributes (as upstream's).

Attributes: ``name``, ``status``, ``nodes`` ({node: [core ids]}), ``total_cores``, ``wdir``,
``time`` (timedelta of the run), ``iteration`` (for an iteration), ``iterations`` (the
counters of an iterative job), ``childs`` (JobInfo per iteration, with ``withChilds``),
``history`` (lines ``<date>: STATE``), ``messages``, and ``exit_code`` (int or None, an
addition).
"""

import json
import re
from datetime import timedelta
from typing import Dict, List, Optional

_RTIME = re.compile(r"^(?:(?P<days>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)$")


class JobInfo:
    """Parsed information about one job or one iteration."""

    def __init__(self):
        self.name: Optional[str] = None
        self.status: Optional[str] = None
        self.nodes: Optional[Dict[str, List[str]]] = None
        self.total_cores: Optional[int] = None
        self.wdir: Optional[str] = None
        self.time: Optional[timedelta] = None
        self.iteration: Optional[int] = None
        self.iterations: Optional[dict] = None
        self.childs: Optional[List["JobInfo"]] = None
        self.history: Optional[List[str]] = None
        self.messages: Optional[str] = None
        self.exit_code: Optional[int] = None

    @staticmethod
    def from_child(job_name: str, child_data: dict) -> "JobInfo":
        """Parse one entry of ``childs`` of the job ``job_name``."""
        info = JobInfo()
        info.iteration = child_data.get("iteration")
        info.name = "%s:%s" % (job_name, info.iteration)
        info.status = child_data.get("state", child_data.get("status"))
        info._set_runtime(child_data.get("runtime") or {})
        info.history = JobInfo._parse_history(child_data)
        info.messages = child_data.get("messages")
        return info

    @staticmethod
    def from_job(job_data: dict) -> "JobInfo":
        """Parse the ``data`` of one job of a ``jobInfo`` reply."""
        info = JobInfo()
        info.name = job_data.get("jobName")
        info.status = job_data.get("status")
        info.nodes = {}
        info.total_cores = 0
        info._set_runtime(job_data.get("runtime") or {})
        info.iterations = job_data.get("iterations", {})
        if "childs" in job_data:
            info.childs = [JobInfo.from_child(info.name, child)
                           for child in job_data.get("childs") or []]
        info.history = JobInfo._parse_history(job_data)
        info.messages = job_data.get("messages")
        return info

    def _set_runtime(self, runtime: dict) -> None:
        self.wdir = runtime.get("wd")
        if runtime.get("allocation"):
            self.nodes = JobInfo._parse_allocation(runtime["allocation"])
            self.total_cores = sum(len(cores) for cores in self.nodes.values())
        if runtime.get("rtime"):
            self.time = JobInfo._parse_runtime(runtime["rtime"])
        code = runtime.get("exit_code")
        try:
            self.exit_code = int(code) if code is not None else None
        except (TypeError, ValueError):
            self.exit_code = None

    @staticmethod
    def _parse_history(data: dict) -> List[str]:
        history = data.get("history")
        if history is None:
            history = (data.get("runtime") or {}).get("history", "")
        if isinstance(history, list):
            return [str(line) for line in history if line]
        return [line for line in str(history).splitlines() if line.strip()]

    @staticmethod
    def _parse_allocation(allocation: str) -> Dict[str, List[str]]:
        """``n0[0:1],n1[2]`` -> ``{"n0": ["0", "1"], "n1": ["2"]}``."""
        nodes: Dict[str, List[str]] = {}
        for part in filter(None, allocation.split(",")):
            name, bracket, rest = part.partition("[")
            cores = rest.rstrip("]") if bracket else ""
            nodes[name] = cores.split(":") if cores else []
        return nodes

    @staticmethod
    def _parse_runtime(runtime: str) -> Optional[timedelta]:
        """``H:MM:SS.ffffff`` (``str(timedelta)``, possibly with days) -> timedelta."""
        match = _RTIME.match(runtime.strip())
        if match is None:
            return None
        return timedelta(days=int(match.group("days") or 0), hours=int(match.group("h")),
                         minutes=int(match.group("m")), seconds=float(match.group("s")))

    def __str__(self) -> str:
        return json.dumps({attr: str(value) for attr, value in sorted(vars(self).items())})

    def __repr__(self) -> str:
        return "JobInfo(name=%r, status=%r)" % (self.name, self.status)
