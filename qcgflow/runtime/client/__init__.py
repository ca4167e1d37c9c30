"""What programs use to reach a running service: the bounded ZeroMQ client (``client``).

The names below are the client's public surface; ``qcgflow.runtime.client.client`` holds them.
"""

from qcgflow.runtime.client.client import (  # noqa: F401
    DEFAULT_TIMEOUT, KEYS_DIR_ENV, TOPIC_ITERATION_STATUS, TOPIC_ITERATION_FINISHED,
    TOPIC_JOB_STATUS, TOPIC_JOB_FINISHED, TOPIC_NO_JOBS, TOPICS, FINISH_TOPICS, ClientError,
    ServiceError, ServiceTimeout, ServiceUnavailable, ProtocolError, Event, CurveKeys,
    load_curve_keys, is_loopback, resolve_keys, ServiceClient, EventStream,)
