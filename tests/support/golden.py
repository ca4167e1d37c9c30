"""Golden files: compiled job descriptions compared with a reviewed JSON file.

``assert_golden(directory, name, data)`` compares ``data`` with ``directory/<name>.json``.
With ``QCGFLOW_UPDATE_GOLDEN=1`` in the environment, or when the file does not exist yet,
it writes the file instead (sorted keys, two-space indent): review the diff before
committing it.
"""

import json
import os
from pathlib import Path


def assert_golden(directory: Path, name: str, data) -> None:
    path = Path(directory) / ("%s.json" % name)
    if os.environ.get("QCGFLOW_UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert data == json.loads(path.read_text())
