"""Helpers of the report tests: run the real service and the real report commands.

* ``run_service(tmp_path, jobs, *options)`` -> ``Run``: ``python -m qcgflow.cli service
  --file-path <requests> --nodes 2 --wd <tmp>/wd --id rep *options`` to the end.
* ``cli(*args)`` -> ``subprocess.CompletedProcess`` of ``python -m qcgflow.cli ARGS``.
* ``call(main, argv, capsys)`` -> ``(exit status, stdout, stderr)`` of an in-process call
  (no interpreter or matplotlib start-up per call).
* ``job(...)``: a job description.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
SERVICE_ID = "rep"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    wd: Path

    @property
    def aux(self) -> Path:
        return self.wd / (".qcgpjm-service-%s" % SERVICE_ID)

    def log(self) -> str:
        return (self.aux / "service.log").read_text()

    def describe(self) -> str:
        log = self.log() if (self.aux / "service.log").exists() else "(no service.log)"
        return "exit %s\n--- stderr\n%s\n--- service.log\n%s" % (self.returncode,
                                                                 self.stderr[-3000:], log[-3000:])


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def job(name: str, exec_: Optional[str] = None, args: Sequence[Any] = (), *,
        script: Optional[str] = None, iterations: Optional[int] = None,
        cores: Optional[int] = None) -> dict:
    execution: Dict[str, Any] = {"script": script} if script else {
        "exec": exec_, "args": [str(a) for a in args]}
    desc: Dict[str, Any] = {"name": name, "execution": execution}
    if iterations is not None:
        desc["iteration"] = {"stop": iterations}
    if cores is not None:
        desc["resources"] = {"numCores": {"exact": cores}}
    return desc


def run_service(tmp_path: Path, jobs: Sequence[dict], *options: str, nodes: str = "2",
                timeout: float = 60.0) -> Run:
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps([{"request": "submit", "jobs": list(jobs)}]))
    wd = tmp_path / "wd"
    argv = [sys.executable, "-m", "qcgflow.cli", "service", "--file-path", str(requests),
            "--nodes", nodes, "--wd", str(wd), "--id", SERVICE_ID, *options]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          cwd=str(tmp_path), env=_env(), stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr, wd)


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qcgflow.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          stdin=subprocess.DEVNULL)


def call(main, argv: Sequence[Any], capsys):
    """Run a command's main function in-process; returns (status, stdout, stderr)."""
    capsys.readouterr()
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors and --help
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def figures(text: str) -> Dict[str, str]:
    """The ``label: value`` lines of a text report."""
    found = {}
    for line in text.splitlines():
        if ": " not in line:
            break  # the per-core details start with a node line
        label, value = line.split(": ", 1)
        found[label.strip()] = value.strip()
    return found


def magic(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(512)
