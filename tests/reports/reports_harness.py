"""Helpers of the report tests: run the real service and the real report commands.

* ``run_service(tmp_path, jobs, *options)`` -> ``support.results.Result``: ``qcgflow
  service --file-path <requests> --nodes 2 --wd <tmp>/wd --id rep *options`` to the end
  (support.services.run_service with the jobs in one submit request).
* ``cli(*args)``: the ``qcgflow`` command line (support.services.cli).
* ``call(main, argv, capsys)`` -> ``(exit status, stdout, stderr)`` of an in-process call
  (no interpreter or matplotlib start-up per call).
* ``job(...)``: a job description (``iterations=N``: N iterations).
"""

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from support import jobs, services
from support.results import Result
from support.services import cli  # noqa: F401  (the report tests' command line)

SERVICE_ID = "rep"


def job(name: str, exec_: Optional[str] = None, args: Sequence[Any] = (), *,
        script: Optional[str] = None, iterations: Optional[int] = None,
        cores: Optional[int] = None) -> dict:
    return jobs.job(name, exec_, args, script=script, cores=cores,
                    iteration={"stop": iterations} if iterations is not None else None)


def run_service(tmp_path: Path, job_list: Sequence[dict], *options: str, nodes: str = "2",
                timeout: float = 60.0) -> Result:
    return services.run_service(tmp_path, [jobs.submit(*job_list)], *options, nodes=nodes,
                                service_id=SERVICE_ID, timeout=timeout)


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
