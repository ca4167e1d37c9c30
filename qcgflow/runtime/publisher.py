"""The status publisher: job and iteration state changes on a ZeroMQ PUB socket.

Each message is one string ``"<TOPIC> <json>"`` as QCG-PilotJob 0.14.2 sends them, so its
client library (and ours) can wait on events instead of polling:

=====  =====================================  ======================================
topic  when                                   data
=====  =====================================  ======================================
IST    an iteration changed state             {"manager", "job", "it", "state"}
IFI    an iteration reached a final state     same
JST    a job changed state                    {"manager", "job", "state"}
JFI    a job reached a final state            same
NOJ    no unfinished job is left              {"manager"}
=====  =====================================  ======================================
"""

import json
import logging
from typing import Optional

import zmq

from .jobs import FINAL_STATES, JobState
from .registry import Job

_log = logging.getLogger(__name__)


class StatusPublisher:
    """A registry listener that publishes every state change."""

    def __init__(self, socket: "zmq.Socket", manager_id: str):
        self.socket = socket
        self._manager_id = manager_id
        self.address: Optional[str] = None

    def __call__(self, job: Job, position: Optional[int], state: JobState) -> None:
        event = {"manager": self._manager_id, "job": job.name, "state": state.name}
        if position is None:
            self._send("JST", event)
            if state in FINAL_STATES:
                self._send("JFI", event)
        else:
            event["it"] = job.spec.iteration.start + position
            self._send("IST", event)
            if state in FINAL_STATES:
                self._send("IFI", event)

    def no_jobs(self) -> None:
        self._send("NOJ", {"manager": self._manager_id})

    def _send(self, topic: str, data: dict) -> None:
        try:
            self.socket.send_string("%s %s" % (topic, json.dumps(data)), zmq.NOBLOCK)
        except zmq.Again:  # a slow subscriber must not stall the manager: drop the event
            _log.debug("publisher queue full, dropped %s event", topic)

    def close(self) -> None:
        self.socket.close(linger=0)
