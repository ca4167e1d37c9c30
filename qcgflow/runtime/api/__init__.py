"""The upstream-compatible client API (``qcg.pilotjob.api`` of QCG-PilotJob 0.14.2).

A script written for ``qcg.pilotjob.api`` runs after changing only its imports::

    from qcg.pilotjob.api.manager import LocalManager   ->  from qcgflow.runtime.api.manager import LocalManager
    from qcg.pilotjob.api.job import Jobs               ->  from qcgflow.runtime.api.job import Jobs
    from qcg.pilotjob.api.jobinfo import JobInfo        ->  from qcgflow.runtime.api.jobinfo import JobInfo
    from qcg.pilotjob.api.errors import ...             ->  from qcgflow.runtime.api.errors import ...

(or everything from ``qcgflow.runtime.api``). Modules: ``manager`` (Manager, TimeStamp,
LocalManager), ``local`` (LocalManager), ``job`` (Jobs), ``jobinfo`` (JobInfo), ``errors``.
"""

from . import errors
from .errors import (ConnectionError, FileError, InternalError, InvalidJobDescriptionError,
                     JobNotDefinedError, QCGPJMAError, RequestFailedError, ServiceError,
                     ServiceTimeoutError, TemplateError, TimeoutElapsed, WrongArgumentsError)
from .job import Jobs
from .jobinfo import JobInfo
from .manager import Manager, TimeStamp
from .local import LocalManager

__all__ = [
    "LocalManager", "Manager", "Jobs", "JobInfo", "TimeStamp", "errors",
    "QCGPJMAError", "InternalError", "InvalidJobDescriptionError", "JobNotDefinedError",
    "ConnectionError", "WrongArgumentsError", "FileError", "ServiceError", "TimeoutElapsed",
    "RequestFailedError", "ServiceTimeoutError", "TemplateError",
]
