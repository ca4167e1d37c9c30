"""Bundles: several short ``.remote`` calls of a session in one job of its own service
(issue 19). Used by ``qcgflow.session.driver`` only. PURE: no threads, requests or clock.

A job costs the client, the service and a warm worker about a quarter of a millisecond of
CPU each, whatever the function does; a call that runs for microseconds pays that three
times over. A bundle is one job whose runner runs its calls one after the other
(``groups.run_bundle``), each with its own result, error and traceback::

    Session._flush(outbox) ── Bundler.route(items, cores) ──> what to send now: a Submit as
        it is (dependencies on bundled calls removed) or a Bundle (one job); the rest waits
        here (parked) until the bundles it needs have ended
    a bundle's final event ── Session._settle_bundle ── each call's outcome (the bundle's
        result, else the call's own result) ──> the tracker, as if the call's own job had
        ended; calls left without an outcome (the process ended early) go again, alone
    a call's result with its run time (``<job>/time`` in the store) ── learn(fn, seconds)

Which calls are bundled (``eligible``): a plain Python task's ``Submit`` on the fast path
(inline call, result store), with no option that makes it a job of its own (resources,
wall time, retries, declared outputs, ``any_outcome`` or element-wise dependencies), of a
function whose calls so far took less than ``SHORT`` on average. Nothing is bundled before
its function's run time is known: a long call never waits behind others, and the results
of long calls come one by one, as their jobs end. A bundle holds at most ``WORK`` seconds
of expected work and at most a share ``1/cores`` of the eligible calls of one send (all
of them when fewer than ``cores`` could run at once: a chain): the cores stay busy.

Guarantees (tests/graph/test_graph_bundles.py, tests/unit/test_bundler.py):

* The service never hears the job name of a bundled call: a job that needs one waits here
  until that call's bundle has ended, and is then sent without that dependency (the call
  succeeded; one that failed withdraws it: ``DependencyFailed``, as the service would).
* The calls of a bundle have the same dependencies outside it: a bundle the service
  cancels because one of them failed fails each call with ``DependencyFailed``, rightly.
  Inside a bundle, a call whose predecessor failed is skipped and fails so too.
* A call that ends the bundle's process (``os._exit``, a crash, a signal): every call of
  the bundle without an outcome runs again, alone, once; its failure is then its own.
* Cancel: a bundled call's future fails with ``TaskCancelled`` when its bundle ends (the
  bundle, a few milliseconds of work, runs on; the bundle is canceled when all its calls
  are); ``future.cancel()`` refuses (the call counts as started once its bundle is sent).
* Its stdout and stderr are the bundle's files (``.qcgflow/<bundle>.stdout``).
"""

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from qcgflow.build import groups, payload
from qcgflow.session.events import Submit

SHORT = 0.002  # s: a function whose calls took less on average is bundled
WORK = 0.02  # s of expected work per bundle at most
MOST = 128  # calls per bundle at most
SAMPLES = 2  # run times known of a function before its calls are bundled
ARGUMENT_BYTES = 96 * 1024  # the bundle's runner argument: one argv string (Linux: 128 KiB)
SMOOTHING = 0.25  # weight of a new run time in the running mean
RUNNER = "qcgflow.runner"
_JOB_KEYS = frozenset({"name", "execution", "dependencies", "attributes"})
_EXECUTION_KEYS = frozenset({"exec", "args", "stdout", "stderr", "env"})


class Bundle:
    """Calls sent as one job: ``items`` (their ``Submit`` instructions, in order), the
    indices of the earlier members each reads (``reads``), the jobs outside the bundle they
    all run after (``outside``)."""

    __slots__ = ("name", "items", "reads", "outside", "env", "size", "limit", "job")

    def __init__(self, name: str, outside: frozenset, env: Optional[Dict[str, str]],
                 limit: int):
        self.name, self.outside, self.env, self.limit = name, outside, env, limit
        self.items: List[Any] = []
        self.reads: List[Tuple[int, ...]] = []
        self.size = 0  # bytes of the members' call arguments
        self.job: Optional[Dict[str, Any]] = None

    @property
    def members(self) -> List[str]:
        return [item.job["name"] for item in self.items]

    def has_room(self, argument: str) -> bool:
        return len(self.items) < self.limit and \
            self.size + len(argument) + 64 <= ARGUMENT_BYTES * 3 // 4  # base64 grows 4/3

    def add(self, item: Any, reads: Tuple[int, ...]) -> None:
        self.items.append(item)
        self.reads.append(reads)
        self.size += len(item.job["execution"]["args"][2]) + 64

    def close(self) -> Dict[str, Any]:
        """The bundle's job: the runner with every call, in the members' environment."""
        first = self.items[0].job["execution"]
        result_dir = first["args"][3].rsplit("/", 2)[0]  # ${root_wd}/.qcgflow
        stream_dir = first["stdout"].rsplit("/", 1)[0]
        calls = [(item.job["name"], item.job["execution"]["args"][2], reads)
                 for item, reads in zip(self.items, self.reads)]
        execution: Dict[str, Any] = {
            "exec": first["exec"],
            "args": ["-m", RUNNER, groups.bundle_argument(calls),
                     "%s/%s/result.pkl" % (result_dir, self.name)],
            "stdout": "%s/%s.stdout" % (stream_dir, self.name),
            "stderr": "%s/%s.stderr" % (stream_dir, self.name)}
        if self.env is not None:
            execution["env"] = dict(self.env)
        self.job = {"name": self.name, "execution": execution}
        if self.outside:
            self.job["dependencies"] = {"after": sorted(self.outside)}
        attributes = self.items[0].job.get("attributes")
        if attributes:
            self.job["attributes"] = attributes
        return self.job


class BundleItem:
    """A bundle as the driver sends it (``job``; ``task`` None: its calls' tasks are in
    ``bundle.items``)."""

    __slots__ = ("bundle", "job", "task")

    def __init__(self, bundle: Bundle):
        self.bundle, self.job, self.task = bundle, bundle.job, None


class Bundler:
    """A session's bundles: what is in flight, what waits for them, what was learned.

    ``new_name()`` gives a fresh job name for a bundle (unique in the session and in its
    run directory)."""

    def __init__(self, new_name: Callable[[], str]):
        self.new_name = new_name
        self.durations: Dict[Any, Tuple[int, float]] = {}  # fn -> (samples, mean s)
        self.bundles: Dict[str, Bundle] = {}  # in flight, by name
        self.home: Dict[str, Bundle] = {}  # a call's job name -> its bundle in flight
        self.hidden: Set[str] = set()  # job names of calls the service never heard of
        self.sent_in: Dict[str, str] = {}  # a hidden call's job name -> its bundle's
        self.alone: Set[str] = set()  # never bundled (again): sent alone, or travelled
        self.parked: List[Any] = []  # items waiting for bundles (or for parked items)
        self.parked_names: Set[str] = set()
        self.watched: Dict[str, List[str]] = {}  # another session's bundle -> calls adopted

    # ------------------------------------------------------------------ learning
    def learn(self, fn: Any, seconds: float) -> None:
        """One more run time of a call of ``fn``."""
        try:
            samples, mean = self.durations.get(fn, (0, seconds))
            self.durations[fn] = (samples + 1, mean + SMOOTHING * (seconds - mean)
                                  if samples else seconds)
        except TypeError:  # an unhashable callable: never bundled
            pass

    def short(self, fn: Any) -> Optional[float]:
        """The mean run time of ``fn``'s calls if they are known to be short, else None."""
        try:
            known = self.durations.get(fn)
        except TypeError:
            return None
        if known is None or known[0] < SAMPLES or known[1] >= SHORT:
            return None
        return known[1]

    # ------------------------------------------------------------------ sending
    def eligible(self, item: Any) -> Optional[float]:
        """The expected run time of ``item``'s call if it may join a bundle, else None."""
        if type(item) is not Submit:
            return None
        task, job = item.task, item.job
        node = task.node
        if task.name in self.alone or node.kind != "python" or node.mapped is not None \
                or not _JOB_KEYS.issuperset(job):
            return None
        execution = job["execution"]
        args = execution.get("args") or ()
        if not _EXECUTION_KEYS.issuperset(execution) or len(args) != 4 \
                or args[0] != "-m" or args[1] != RUNNER \
                or not args[2].startswith(payload.INLINE) or "env" not in execution:
            return None  # no result store (its variable): results are files, not bundled
        ours = (job.get("attributes") or {}).get("qcgflow") or {}
        if set(ours) - {"when_written"}:
            return None
        dependencies = job.get("dependencies") or {}
        if set(dependencies) - {"after"} or \
                any(":" in name for name in dependencies.get("after", ())):
            return None
        return self.short(node.fn)

    def route(self, items: List[Any], cores: Callable[[], int],
              bundle: bool = True) -> List[Any]:
        """What to send now of ``items`` (in order; ``bundle`` False: none bundled): items
        and ``BundleItem``s, every dependency on a bundled call removed; the items that
        need a call in flight (or a parked item) are parked."""
        expected = [self.eligible(item) for item in items] if bundle else [None] * len(items)
        share = self._share(items, expected, cores)
        if share < 2:  # one call per core or fewer: alone, in parallel
            expected = [None] * len(items)
        out: List[Any] = []
        opened: Dict[Tuple[Any, frozenset], Bundle] = {}
        made: List[Bundle] = []
        for item, seconds in zip(items, expected):
            job = item.job
            dependencies = job.get("dependencies") or {}
            names = [n for key in ("after", "afterAny") for n in dependencies.get(key, ())]
            waiting = [n for n in names if n.split(":")[0] in self.home
                       or n.split(":")[0] in self.parked_names]
            if seconds is not None:
                env = job["execution"]["env"]
                env_key = tuple(sorted(env.items()))
                in_flight = [n for n in waiting if n in self.home]
                homes = {self.home[n] for n in in_flight}
                outside = frozenset(n for n in names if n not in self.home
                                    and n not in self.hidden)
                argument = job["execution"]["args"][2]
                if len(homes) == 1 and len(in_flight) == len(waiting):
                    home = next(iter(homes))
                    if home in made and home.env == env and outside <= home.outside \
                            and home.has_room(argument):
                        index = {name: i for i, name in enumerate(home.members)}
                        self._join(home, item, tuple(sorted(index[n] for n in in_flight)))
                        continue
                if not waiting:
                    key = (env_key, outside)
                    home = opened.get(key)
                    if home is None or not home.has_room(argument):
                        limit = max(2, min(MOST, share, int(WORK / max(seconds, 1e-6))))
                        home = opened[key] = Bundle(self.new_name(), outside, env, limit)
                        made.append(home)
                        out.append(home)
                    self._join(home, item, ())
                    continue
            if waiting:
                self.parked.append(item)
                self.parked_names.add(job["name"])
                continue
            out.append(self._stripped(item))
        sent: List[Any] = []
        for entry in out:
            if type(entry) is Bundle:
                if len(entry.items) == 1:  # nothing to share the job with: it goes alone
                    only = entry.items[0]
                    self._unjoin(only)
                    sent.append(self._stripped(only))
                    continue
                entry.close()
                self.bundles[entry.name] = entry
                sent.append(BundleItem(entry))
            else:
                sent.append(entry)
        # items parked above on a bundle that went alone after all (one member) go too
        sent += [self._stripped(item) for item in self.released()]
        return sent

    @staticmethod
    def _share(items: List[Any], expected: List[Optional[float]],
               cores: Callable[[], int]) -> int:
        """Calls per bundle at most: none when there are no more eligible calls than cores
        (each may have one); else the calls spread over as many bundles as could start at
        once: the cores, or fewer when fewer calls need no other of them (a chain: one)."""
        names = {item.job["name"] for item, seconds in zip(items, expected)
                 if seconds is not None}
        count = max(1, cores())
        if len(names) <= count:
            return 0
        roots = sum(1 for item, seconds in zip(items, expected) if seconds is not None and
                    not names.intersection((item.job.get("dependencies") or {})
                                           .get("after", ())))
        return math.ceil(len(names) / max(1, min(roots, count)))

    def _join(self, bundle: Bundle, item: Any, reads: Tuple[int, ...]) -> None:
        bundle.add(item, reads)
        name = item.job["name"]
        self.home[name] = bundle
        self.hidden.add(name)
        self.sent_in[name] = bundle.name

    def _unjoin(self, item: Any) -> None:
        name = item.job["name"]
        self.home.pop(name, None)
        self.hidden.discard(name)
        self.sent_in.pop(name, None)

    def _stripped(self, item: Any) -> Any:
        """``item`` with its dependencies on hidden calls (ended: they succeeded) removed:
        the service does not know those names."""
        dependencies = item.job.get("dependencies")
        if not dependencies or not self.hidden:
            return item
        kept = {key: [n for n in names if n.split(":")[0] not in self.hidden]
                for key, names in dependencies.items()}
        kept = {key: names for key, names in kept.items() if names}
        if kept:
            item.job["dependencies"] = kept
        else:
            del item.job["dependencies"]
        return item

    # ------------------------------------------------------------------ ending
    def ended(self, name: str) -> Optional[Bundle]:
        """The bundle ``name`` has ended: no longer in flight (None: not one of ours)."""
        bundle = self.bundles.pop(name, None)
        if bundle is not None:
            for member in bundle.members:
                self.home.pop(member, None)
        return bundle

    def again(self, item: Any) -> None:
        """``item``'s call goes again, alone (its bundle's process ended before it did)."""
        name = item.job["name"]
        self.hidden.discard(name)
        self.sent_in.pop(name, None)
        self.alone.add(name)

    def asked(self, names: Iterable[str]) -> List[str]:
        """The jobs to ask the service about for ``names``: a call in a bundle in flight is
        asked as its bundle (once), a bundled call that ended not at all (its end was
        handled), the rest as they are."""
        out: List[str] = []
        seen: Set[str] = set()
        for name in names:
            home = self.home.get(name)
            if home is not None:
                name = home.name
            elif name in self.hidden:
                continue
            if name not in seen:
                seen.add(name)
                out.append(name)
        return out

    def released(self) -> List[Any]:
        """The parked items that may go now (in the order they came)."""
        if not self.parked:
            return []
        ready, still = [], []
        waiting_on = set(self.home)
        for item in self.parked:
            dependencies = item.job.get("dependencies") or {}
            names = {n.split(":")[0] for key in ("after", "afterAny")
                     for n in dependencies.get(key, ())}
            if names & waiting_on:
                still.append(item)
                waiting_on.add(item.job["name"])  # its dependants wait with it
            else:
                ready.append(item)
        self.parked = still
        self.parked_names = {item.job["name"] for item in still}
        return ready

    def unpark(self, names: Iterable[str]) -> None:
        """Take parked items out (canceled before they were sent)."""
        gone = set(names)
        self.parked = [item for item in self.parked if item.job["name"] not in gone]
        self.parked_names -= gone

    # ------------------------------------------------------------------ refs
    def travelling(self, name: str) -> Tuple[bool, Optional[str]]:
        """A ref of the call ``name`` is pickled: ``(ended, bundle)``. A call not sent yet is
        never bundled; one in a bundle in flight is watched through its bundle by whoever
        adopts the ref; a bundled call that ended is read from its result."""
        home = self.home.get(name)
        if home is not None:
            return False, home.name
        if name in self.hidden:
            return True, None
        self.alone.add(name)
        return False, None

    def watch(self, bundle: str, member: str) -> None:
        """An adopted ref of ``member``, a call in another session's ``bundle``."""
        self.watched.setdefault(bundle, []).append(member)
