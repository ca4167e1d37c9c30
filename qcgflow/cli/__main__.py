"""``python -m qcgflow.cli``: the ``qcgflow`` command."""

import sys

from qcgflow.cli.main import main

sys.exit(main())
