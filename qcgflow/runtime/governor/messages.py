"""The governor <-> manager wire messages (one JSON object per ZeroMQ message).

::

    manager (DEALER)                                      governor (ROUTER)
      register {version, token, id, tags, nodes, host,  -->
                pid, aux_dir, address}
                                                        <-- welcome {governor, heartbeat, timeout}
                                                            | refused {reason}  (then nothing)
      beat {}                     every ``heartbeat`` s -->
                                                        <-- beat {}  every ``heartbeat`` s
                                                        <-- submit {jobs: [job description]}
                                                        <-- cancel {names: [remote name]}
                                                        <-- finish {}
      states {events: [[name, state, message, runtime]]} -->

A unit the governor dispatches is one job description for the manager: a non-iterative job
keeps its name; iteration ``i`` of job ``a`` becomes job ``a#i`` with ``iteration {start: i,
stop: i + 1}`` (so ``${it}`` keeps its value). ``dependencies`` are never sent: the
governor starts a unit only once its dependencies are satisfied. ``states`` events report
EXECUTING and the final state of those jobs (``message`` and ``runtime`` may be null).

Keys are snake_case; the job descriptions inside are the standard (camelCase) ones.
"""

import json
from typing import Optional

from ..errors import InvalidRequest
from ..limits import check_depth

PROTOCOL_VERSION = 1
ITERATION_MARK = "#"


def encode(kind: str, **fields) -> bytes:
    fields["op"] = kind
    return json.dumps(fields).encode()


def decode(raw: bytes) -> Optional[dict]:
    """The message as a dict with an ``op`` string, or None when it is not one."""
    try:
        message = json.loads(raw)
        check_depth(message)  # what follows walks it; any peer can send anything
    except (ValueError, RecursionError, InvalidRequest):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        return None
    return message


def remote_name(name: str, index: Optional[int]) -> str:
    """The manager-side job name of a unit (``index`` is the iteration index or None)."""
    return name if index is None else "%s%s%d" % (name, ITERATION_MARK, index)
