"""The ``qcgflow`` command line: ``run``, ``compile``, ``status``, ``service``, ``report``,
``processes``; ``main`` is the console script (``python -m qcgflow.cli`` runs it too)."""

from qcgflow.cli.main import main  # noqa: F401
