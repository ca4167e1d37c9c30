"""What a ``qcgflow service`` run left behind, read back for assertions.

``collect(...)`` builds a ``Result`` from the exit status, the captured output and the
service directory (``<wd>/.qcgpjm-service-<id>``): the replies logged in ``service.log``
(``reply(n)``: the reply to the n-th request, 1-based), ``jobs.report`` (``entry(name)``,
``state(name)``, ``states``), ``final_status.json`` and the files the jobs wrote
(``read(relpath)``). ``describe()`` is the text to put in an assertion message.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

_REPLY_LINE = re.compile(r" request (\d+) \(([^)]*)\): (.*)$")


@dataclass
class Reply:
    number: int     # 1-based position of the request in the file
    request: str    # the request name as logged
    raw: str        # the logged JSON text
    data: Any       # the parsed reply (None when the logged text is not valid JSON)

    @property
    def code(self):
        return self.data.get("code") if isinstance(self.data, dict) else None

    @property
    def message(self):
        return self.data.get("message") if isinstance(self.data, dict) else None


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    wd: Path
    aux_dir: Optional[Path]
    report_lines: List[dict]
    report_text: str
    final_status: Optional[dict]
    service_log: str
    elapsed: float
    replies: List[Reply] = field(default_factory=list)

    # ---- replies
    def reply(self, number: int) -> dict:
        """The parsed reply to request ``number`` (1-based)."""
        for item in self.replies:
            if item.number == number:
                assert item.data is not None, "reply %d is not valid JSON in service.log: %r" % (
                    number, item.raw[-200:])
                return item.data
        raise AssertionError("no reply to request %d in service.log:\n%s"
                             % (number, self.service_log))

    def error_messages(self) -> List[str]:
        return [r.message for r in self.replies if r.code not in (0, None)]

    # ---- jobs.report
    def entry(self, name: str) -> dict:
        """The (last) jobs.report entry of ``name``."""
        found = [e for e in self.report_lines if e.get("name") == name]
        assert found, "no jobs.report entry for %r; entries: %s" % (
            name, [e.get("name") for e in self.report_lines])
        return found[-1]

    def state(self, name: str) -> str:
        return self.entry(name)["state"]

    @property
    def states(self) -> Dict[str, str]:
        return {e["name"]: e["state"] for e in self.report_lines}

    # ---- files
    def read(self, relpath: str) -> str:
        return (self.wd / relpath).read_text()

    def describe(self) -> str:
        return ("exit %s after %.2fs\n--- stderr\n%s\n--- stdout\n%s\n--- service.log\n%s"
                % (self.returncode, self.elapsed, self.stderr[-3000:], self.stdout[-2000:],
                   self.service_log[-4000:]))


def parse_replies(log: str) -> List[Reply]:
    replies = []
    for line in log.splitlines():
        match = _REPLY_LINE.search(line)
        if not match:
            continue
        raw = match.group(3)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        replies.append(Reply(int(match.group(1)), match.group(2), raw, data))
    return replies


def words(path: Path) -> List[str]:
    """The whitespace-separated words of a file ([] while it does not exist): what tasks
    appended to a marker file, one word per event."""
    return path.read_text().split() if path.exists() else []


def report_entries(path: Path) -> List[dict]:
    """The JSON lines of a jobs.report (none when it is missing; text-format lines and a
    torn last line are skipped: tests of the text format read the text)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                pass
    return entries


def _find_aux_dir(wd: Path, service_id: Optional[str]) -> Optional[Path]:
    if service_id is not None:
        path = wd / (".qcgpjm-service-%s" % service_id)
        return path if path.is_dir() else None
    found = sorted(wd.glob(".qcgpjm-service-*")) if wd.is_dir() else []
    return found[0] if len(found) == 1 else None


def collect(returncode, stdout, stderr, wd: Path, service_id, elapsed,
            report_file="jobs.report") -> Result:
    aux = _find_aux_dir(wd, service_id)
    report_lines, report_text, final_status, log = [], "", None, ""
    if aux is not None:
        report = aux / report_file
        if report.exists():
            report_text = report.read_text()
            report_lines = report_entries(report)
        status = aux / "final_status.json"
        if status.exists():
            try:
                final_status = json.loads(status.read_text())
            except ValueError:
                final_status = {"__invalid__": status.read_text()}
        if (aux / "service.log").exists():
            log = (aux / "service.log").read_text()
    return Result(returncode, stdout, stderr, wd, aux, report_lines, report_text, final_status,
                  log, elapsed, parse_replies(log))
