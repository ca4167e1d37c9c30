"""Helpers of the re-run tests: what a run directory holds.

* ``outputs(wd)``: the user-visible files of a run directory (not qcgflow's own:
  ``.qcgflow/``, ``.qcgpjm-service-*/``, ``qcgflow-*``), each as its sorted lines with the
  directory's path replaced by ``WD``. Lines are sorted because iterations that append to
  one file (``>>``) do so in the order they finish, which differs between two clean runs.

A run in the background (so that a signal can go to its whole process group, as Ctrl-C
in a terminal does): ``support.services.start_cli``; waiting: ``support.eventually``.
"""

from pathlib import Path
from typing import Dict, List

OWN = (".qcgflow", "qcgflow-")


def outputs(wd: Path) -> Dict[str, List[str]]:
    found = {}
    for path in sorted(wd.rglob("*")):
        rel = path.relative_to(wd)
        if not path.is_file() or rel.parts[0].startswith(OWN) or \
                rel.parts[0].startswith(".qcgpjm-service-"):
            continue
        text = path.read_text(errors="replace").replace(str(wd), "WD")
        found[str(rel)] = sorted(text.splitlines())
    return found
