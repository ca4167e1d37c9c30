"""What programs use to reach a service: talk to it, start it, read its working files.

- ``client``: the bounded ZeroMQ client (its public names are re-exported here);
- ``spawn``: THE one way to start a local service child (``python -m qcgflow.runtime
  service``: environment, ``--ready-fd`` handshake, ``--owner-fd``, stopping);
- ``workdir``: the ``.qcgpjm-service-*`` directories of a working directory and the one
  jobs.report reader.
"""

# The client's names are loaded on first use (PEP 562): a program that only reads working
# files (``workdir``; the service itself, through resume.py) does not load the client.
_CLIENT_NAMES = frozenset((
    "DEFAULT_TIMEOUT", "KEYS_DIR_ENV", "TOPIC_ITERATION_STATUS", "TOPIC_ITERATION_FINISHED",
    "TOPIC_JOB_STATUS", "TOPIC_JOB_FINISHED", "TOPIC_NO_JOBS", "TOPICS", "FINISH_TOPICS",
    "ClientError", "ServiceError", "ServiceTimeout", "ServiceUnavailable", "ProtocolError",
    "Event", "CurveKeys", "load_curve_keys", "is_loopback", "resolve_keys", "ServiceClient",
    "EventStream"))
__all__ = sorted(_CLIENT_NAMES)


def __getattr__(name):
    if name in _CLIENT_NAMES:
        from qcgflow.runtime.client import client  # noqa: PLC0415
        return getattr(client, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
