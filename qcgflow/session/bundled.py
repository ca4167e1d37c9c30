"""The driver's side of bundles (qcgflow/session/bundles.py decides): a session's
service's cores, bundle names, a bundle's end told to the tracker call by call, and the
run times learned; which maps of ``qcgflow.run`` may run in chunks (fastpath.chunk). A
mixin of ``driver.Session`` (its lock, client, tracker, outbox).
"""

import os
from typing import Optional

from qcgflow.build import payload
from qcgflow.build import store
from qcgflow.runtime.protocol import CANCELED, FAILED, SUCCEED
from qcgflow.session.tracker import Task


class BundledCalls:
    """Bundles of a ``driver.Session`` (``self.bundler``: ``bundles.Bundler``)."""

    cores: Optional[int] = None  # the service's, asked when first needed
    chunk_maps: frozenset = frozenset()  # qcgflow.run's maps that may run in chunks

    def _cores(self) -> int:
        """The service's cores (asked once): a send's calls go in at least that many
        bundles."""
        if self.cores is None:
            try:
                reply = self.client.request({"request": "resourcesInfo"}) or {}
                self.cores = max(1, int(reply.get("total_cores") or 1))
            except self.client_errors + (TypeError, ValueError):
                self.cores = os.cpu_count() or 1
        return self.cores

    def _bundle_name(self) -> str:
        """A job name for a bundle: new in this session and in its run directory (an
        earlier run's stream files there are never appended to)."""
        while True:
            number = self.counters.get(" bundle", 0)
            self.counters[" bundle"] = number + 1
            name = "qcgflow-bundle-%s%d" % (self.prefix, number)
            if name not in self.taken and not {name, name + ".stdout", name + ".stderr"} \
                    & self.fast.present:
                self.taken.add(name)
                return name

    def _members(self, names) -> tuple:
        """``names`` with each bundle's name replaced by its calls' (``lock`` held; a refused
        bundle is no longer in flight)."""
        out = []
        for name in names:
            bundle = self.bundler.ended(name)
            out += bundle.members if bundle is not None else [name]
        return tuple(out)

    def _learn(self, task: Task) -> None:
        """The run time the call put with its result (the store indexed it when the result
        was loaded: no read here)."""
        data = store.peek(self.base, os.path.join(self.base, task.name, store.TIME))
        seconds = store.seconds_of(data)
        if seconds is not None and task.node.fn is not None:
            with self.lock:
                self.bundler.learn(task.node.fn, seconds)

    def _settle_bundle(self, name: str, state: str) -> None:
        """A bundle ended: each call ends as its own job would have (bundles.py)."""
        with self.lock:
            bundle = self.bundler.ended(name)
            adopted = self.bundler.watched.pop(name, [])
        if bundle is None:  # a bundle of another session: the calls whose refs came here
            for member in adopted:
                outcome = self._outcome(member)
                if outcome is not None or state == CANCELED:
                    self._guarded(member, self._settle, member, outcome or CANCELED)
                # else it runs again, alone, under its own name: its own event comes
            return
        outcomes = None
        if state == SUCCEED:
            try:
                result = payload.read_result(os.path.join(self.base, payload.result_file(name)))
                outcomes = result[1] if result[0] == "ok" else None
            except (OSError, ValueError, EOFError, IndexError, TypeError):
                outcomes = None
        again: list = []
        for index, item in enumerate(bundle.items):  # what goes wrong fails that call only
            self._guarded(item.job["name"], self._end_call, bundle, index, outcomes, state,
                          again)
        with self.lock:
            self.outbox[:0] = again + self.bundler.released()
            if self.outbox:
                self.fast.hurry()

    def _end_call(self, bundle, index: int, outcomes, state: str, again: list) -> None:
        """The end of a bundle's call ``index``: told to the tracker, or (the bundle's
        process ended before the call did) the call goes again, alone, into ``again``."""
        item = bundle.items[index]
        if item.task.cancel_requested:  # canceled: TaskCancelled, whatever it did
            ending = CANCELED
        elif outcomes is not None and index < len(outcomes):
            ending = SUCCEED if outcomes[index] == 0 else FAILED
        else:
            ending = self._outcome(item.job["name"])
            if ending is None:
                if state == CANCELED:
                    ending = CANCELED
                elif any(bundle.items[i].task.error is not None for i in bundle.reads[index]):
                    ending = FAILED  # skipped: its predecessor in the bundle failed
                else:
                    with self.lock:
                        self.bundler.again(item)
                    again.append(item)
                    return
        self._settle(item.job["name"], ending)

    def _outcome(self, member: str) -> Optional[str]:
        """SUCCEED or FAILED as the result a bundled call left says, None when it left none."""
        data = payload.result_data(os.path.join(self.base, payload.result_file(member)))
        if data is None:
            return None
        try:
            return SUCCEED if payload.pickle.loads(data)[0] == "ok" else FAILED
        except Exception:  # noqa: BLE001 - a damaged result: the tracker reports it
            return FAILED

