"""Exceptions of the upstream-compatible API (the class names of ``qcg.pilotjob.api.errors``).

::

    QCGPJMAError
     +-- InternalError               an unexpected reply or state
     +-- InvalidJobDescriptionError  Jobs.add / add_std / load_from_file got a bad description
     |    +-- TemplateError          an executor template could not be filled (also a KeyError)
     +-- JobNotDefinedError          Jobs.remove of a name that is not in the group
     +-- ConnectionError             the service cannot be talked to
     |    +-- RequestFailedError     the service refused a request (also a ServiceError);
     |    |                          str(exc) is the service's own message
     |    +-- ServiceTimeoutError    no reply within the request timeout (dead service)
     +-- WrongArgumentsError
     +-- FileError                   Jobs.load_from_file / save_to_file failed
     +-- ServiceError                the service could not be started, stopped or used
    TimeoutElapsed                   a wait4* timeout given by the caller elapsed

Upstream turns every refusal into ``ConnectionError('Request failed - <msg>')``; here the
class is still a ``ConnectionError`` (scripts that catch it keep working) but the text is
the service's message alone.

Note: ``ConnectionError`` shadows the builtin of that name inside this module's namespace,
as upstream's does; it is not a subclass of the builtin.
"""


class QCGPJMAError(Exception):
    """Base of the API's errors."""


class InternalError(QCGPJMAError):
    pass


class InvalidJobDescriptionError(QCGPJMAError):
    pass


class JobNotDefinedError(QCGPJMAError):
    pass


class ConnectionError(QCGPJMAError):  # noqa: A001 - upstream's name
    pass


class WrongArgumentsError(QCGPJMAError):
    pass


class FileError(QCGPJMAError):
    pass


class ServiceError(QCGPJMAError):
    pass


class TimeoutElapsed(Exception):
    pass


class RequestFailedError(ConnectionError, ServiceError):
    """The service answered a request with an error; ``str(exc)`` is its message."""

    def __init__(self, message: str, request=None):
        super().__init__(message)
        self.message = message
        self.request = request


class ServiceTimeoutError(ConnectionError):
    """The service did not answer within the request timeout."""


class TemplateError(InvalidJobDescriptionError, KeyError):
    """A template placeholder has no value, or the filled template is not a description."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""
