"""The status publisher: job and iteration state changes on a ZeroMQ XPUB socket.

Each message is one string ``"<TOPIC> <json>"`` as QCG-PilotJob 0.14.2 sends them, so its
client library (and ours) can wait on events instead of polling:

=====  =====================================  ======================================
topic  when                                   data
=====  =====================================  ======================================
IST    an iteration changed state             {"manager", "job", "state", "it"}
IFI    an iteration reached a final state     same
JST    a job changed state                    {"manager", "job", "state"}
JFI    a job reached a final state            same
NOJ    no unfinished job is left              {"manager"}
=====  =====================================  ======================================

The bytes are those of ``json.dumps`` of the dict in the order shown (default separators,
ASCII escapes), formatted from cached pieces instead of encoding a dict per event.

Only what someone subscribed to is encoded::

    SUB clients ──subscribe "JFI" / unsubscribe──> XPUB socket ──(EventLoop reader)──>
        prefix counts ──> "wanted" flag per topic ──> an unwanted event costs no encoding

An XPUB socket is a PUB socket for its subscribers (the same wire, the same byte-prefix
filtering), which also hands the publisher the subscriptions (``b"\\x01" + prefix``) and
unsubscriptions (``b"\\x00" + prefix``, also sent when the last subscriber of a prefix
disconnects). Subscriptions are read by an event-loop reader, and again right before an
event is found unwanted, so a client that subscribed just before it submitted gets the
events a plain PUB socket would have delivered. That check (``ZMQ_EVENTS``, ~1.5 us) is
made at most once per ``recheck_interval`` (1 ms) within one event-loop callback: a plain
PUB socket likewise reads new subscriptions at most about once a millisecond while it is
sending (libzmq throttles its command processing), so a burst of unwanted events costs one
check, not one per event. The next callback may check again at once: otherwise a job that
ends in the callback right after its submit (under 1 ms later) was skipped although its
client had subscribed before submitting, and upstream's ``wait4``, which then waits only
for events, hung (issue 20, tests/compat/test_compat_upstream_client_fixes.py).
A slow subscriber never stalls the service: sends do not block, and ZeroMQ drops what is
over its high-water mark.

A subscriber that joins late still learns what just ended: the final events (IFI, JFI) of
the last ``REPLAY_WINDOW`` seconds are sent again when a subscription to their topic is
first read. A client connects its SUB socket before it submits, but the connection is
made in the background; under load a job could end before the subscription reached us,
and upstream's ``wait4``, which after one ``jobStatus`` waits only for events, then hung
until its timeout (tests/adversarial/test_adv_other_users.py, 1 run in 6 at load 10).
Subscribers already there may see an event twice; clients look finished jobs up by name,
so a repeat is ignored. NOJ is never replayed: "no job left" may no longer be true.
"""

import logging
import time
from collections import deque
from json.encoder import encode_basestring_ascii
from typing import Dict, Optional

import zmq

from .jobs import FINAL_STATES, JobState
from .registry import Job

_log = logging.getLogger(__name__)

TOPICS = ("IST", "IFI", "JST", "JFI", "NOJ")
_SUBSCRIBE = 1
_UNSUBSCRIBE = 0
RECHECK_INTERVAL = 0.001  # s between two checks for unread subscriptions (see above)
_NAME_CACHE_SIZE = 8192  # encoded job names kept; cleared when full (names repeat in bursts)
REPLAY_WINDOW = 10.0  # s of final events sent again to a new subscription (see above)
REPLAY_LIMIT = 10_000  # at most this many of them are kept


def could_match(prefix: bytes, topic: str) -> bool:
    """Whether a SUB prefix could match some message of ``topic`` (conservative).

    A message is ``topic + " " + json``: the prefix matches when it is a prefix of
    ``"<topic> "`` or extends it (any JSON continuation is assumed possible).
    """
    head = topic.encode() + b" "
    return head.startswith(prefix) or prefix.startswith(head)


class StatusPublisher:
    """A registry listener that publishes state changes someone subscribed to.

    Args:
        socket: a bound ``zmq.XPUB`` socket (a ``zmq.PUB`` socket works too, without
            subscription tracking: every event is then encoded and sent).
        manager_id: the ``"manager"`` value of every message.
        loop: the service's event loop; when given, subscriptions are read as they arrive
            (otherwise only when an event would be skipped). ``close`` unregisters it.

    Attributes:
        sent: messages handed to ZeroMQ, per topic.
        skipped: events not encoded because nobody subscribed to their topic, per topic.
        recheck_interval: seconds between two checks for unread subscriptions before an
            event is skipped (0: check before every skipped event).
    """

    def __init__(self, socket: "zmq.Socket", manager_id: str, loop=None):
        self.socket = socket
        self.address: Optional[str] = None
        self.sent: Dict[str, int] = dict.fromkeys(TOPICS, 0)
        self.skipped: Dict[str, int] = dict.fromkeys(TOPICS, 0)
        self._tracking = socket.type == zmq.XPUB
        self._prefixes: Dict[bytes, int] = {}  # subscribed prefix -> subscriptions seen
        self._wanted: Dict[str, bool] = dict.fromkeys(TOPICS, not self._tracking)
        self.recheck_interval = RECHECK_INTERVAL
        self._next_check = float("-inf")
        self._reset_queued = False  # a call_soon lifting the throttle is pending
        manager = encode_basestring_ascii(manager_id).encode()
        head = b' {"manager": ' + manager + b', "job": '
        self._heads = {topic: topic.encode() + head for topic in TOPICS}
        self._job_tails = {state: b', "state": "%s"}' % state.name.encode()
                           for state in JobState}
        self._iter_tails = {state: b', "state": "%s", "it": ' % state.name.encode()
                            for state in JobState}
        self._no_jobs = b'NOJ {"manager": ' + manager + b"}"
        self._names: Dict[str, bytes] = {}
        self._loop = loop
        # final events of the last REPLAY_WINDOW s: (time, job, absolute iteration or None,
        # state), for subscriptions that arrive after them
        self._recent: "deque" = deque()
        if loop is not None and self._tracking:
            loop.add_reader(socket, self.read_subscriptions)

    # -------------------------------------------------------------- events
    def __call__(self, job: Job, position: Optional[int], state: JobState) -> None:
        final = state in FINAL_STATES
        if position is None:
            state_topic, final_topic = "JST", "JFI"
        else:
            state_topic, final_topic = "IST", "IFI"
        if final and self._tracking:
            self._remember(job.name, None if position is None
                           else job.spec.iteration.start + position, state)
        wanted = self._wanted
        want_state = wanted[state_topic]
        want_final = final and wanted[final_topic]
        if not (want_state and (want_final or not final)) and self._pending():
            want_state = wanted[state_topic]
            want_final = final and wanted[final_topic]
        if not want_state:
            self.skipped[state_topic] += 1
        if final and not want_final:
            self.skipped[final_topic] += 1
        if not (want_state or want_final):
            return
        name = self._names.get(job.name)
        if name is None:
            name = self._encode_name(job.name)
        if position is None:
            body = name + self._job_tails[state]
        else:
            body = name + self._iter_tails[state] + b"%d}" % (job.spec.iteration.start
                                                              + position)
        if want_state:
            self._send(state_topic, self._heads[state_topic] + body)
        if want_final:
            self._send(final_topic, self._heads[final_topic] + body)

    def no_jobs(self) -> None:
        """Publish NOJ: no unfinished job is left."""
        if self._wanted["NOJ"] or (self._pending() and self._wanted["NOJ"]):
            self._send("NOJ", self._no_jobs)
        else:
            self.skipped["NOJ"] += 1

    def _remember(self, name: str, it: Optional[int], state: JobState) -> None:
        recent = self._recent
        now = time.monotonic()
        recent.append((now, name, it, state))
        while recent and (recent[0][0] < now - REPLAY_WINDOW or len(recent) > REPLAY_LIMIT):
            recent.popleft()

    def _replay(self, topics) -> None:
        """Send the recent final events of ``topics`` (a new subscription to them was read)."""
        since = time.monotonic() - REPLAY_WINDOW
        for when, name, it, state in list(self._recent):
            topic = "JFI" if it is None else "IFI"
            if when < since or topic not in topics:
                continue
            body = self._names.get(name) or self._encode_name(name)
            if it is None:
                body += self._job_tails[state]
            else:
                body += self._iter_tails[state] + b"%d}" % it
            self._send(topic, self._heads[topic] + body)

    def _encode_name(self, name: str) -> bytes:
        if len(self._names) >= _NAME_CACHE_SIZE:
            self._names.clear()
        encoded = self._names[name] = encode_basestring_ascii(name).encode()
        return encoded

    def _send(self, topic: str, message: bytes) -> None:
        try:
            self.socket.send(message, zmq.NOBLOCK)
        except zmq.Again:  # a slow subscriber must not stall the manager: drop the event
            _log.debug("publisher queue full, dropped %s event", topic)
        else:
            self.sent[topic] += 1

    # -------------------------------------------------------------- subscriptions
    def _pending(self) -> bool:
        """Read subscriptions that arrived since the last read; True if any was read."""
        if not self._tracking:
            return False
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.recheck_interval
        if self._loop is not None and not self._reset_queued:
            self._reset_queued = True  # the throttle holds within this callback only
            self._loop.call_soon(self._lift_throttle)
        if not self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return False
        return self.read_subscriptions()

    def _lift_throttle(self) -> None:
        self._reset_queued = False
        self._next_check = float("-inf")

    def read_subscriptions(self) -> bool:
        """Drain the (un)subscription messages waiting on the socket; True if any was read.

        Guarantees: afterwards each topic's wanted flag reflects every subscription read.
        """
        changed = False
        joined = set()  # final topics a subscription that is new to us covers
        while True:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not message or message[0] not in (_SUBSCRIBE, _UNSUBSCRIBE):
                continue  # not a subscription (an XSUB peer may send anything): ignore
            prefix = message[1:]
            count = self._prefixes.get(prefix, 0)
            if message[0] == _SUBSCRIBE:
                self._prefixes[prefix] = count + 1
                joined.update(t for t in ("JFI", "IFI") if could_match(prefix, t))
            elif count > 1:
                self._prefixes[prefix] = count - 1
            else:
                self._prefixes.pop(prefix, None)
            changed = True
        if changed:
            self._update_wanted()
        if joined and self._recent:
            self._replay(joined)
        return changed

    def _update_wanted(self) -> None:
        for topic in TOPICS:
            self._wanted[topic] = any(could_match(prefix, topic) for prefix in self._prefixes)
        _log.debug("publisher subscriptions %s: wanted %s", sorted(self._prefixes),
                   [topic for topic in TOPICS if self._wanted[topic]])

    def wanted(self, topic: str) -> bool:
        """Whether some subscriber currently receives ``topic`` (as last read)."""
        return self._wanted[topic]

    def close(self) -> None:
        """Unregister from the event loop and close the socket (pending events dropped)."""
        if self._loop is not None and self._tracking:
            self._loop.remove_reader(self.socket)
        _log.info("status publisher: sent %s; skipped %s",
                  " ".join("%s=%d" % item for item in self.sent.items()),
                  " ".join("%s=%d" % item for item in self.skipped.items()))
        self.socket.close(linger=0)
