"""Upstream's module path ``qcg.pilotjob.api.manager``: ``Manager``, ``TimeStamp`` and
``LocalManager`` (``from qcgflow.runtime.api.manager import LocalManager`` works as
upstream's does).

The code lives in ``remote.py`` (``Manager``: the client of a running service) and
``local.py`` (``LocalManager``: a service in a child process, built on ``Manager``); this
module only names them, so that neither has to import the other's importer.
"""

from .local import LocalManager
from .remote import FINAL_STATES, Manager, TimeStamp

__all__ = ["LocalManager", "Manager", "TimeStamp", "FINAL_STATES"]
