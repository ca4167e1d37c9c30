"""THE wire contract: requests, responses and job descriptions (QCG-PilotJob 0.14.2 format).

camelCase keys live here and nowhere else. Incoming dicts are parsed once into typed
records (``Request`` subclasses, ``jobs.JobSpec``); outgoing replies are built by the
``reply_*`` helpers. Every violation raises ``InvalidRequest`` (or a subclass) whose
message is the one-line text sent back to the user; the messages that upstream clients
know are kept word for word.
"""

import re
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from .errors import InvalidRequest, JobDescriptionError, ResourcesError
from .iterschedulers import validate_scheduler
from .jobs import (CANCELED, EXECUTING, FAILED, FINAL_STATE_NAMES, OMITTED, QUEUED, SCHEDULED,
                   STATE_NAMES, SUCCEED, DependencyRef, ExecutionSpec, IterationSpec, JobSpec,
                   ResourcesSpec, SchedulerSpec)  # the state names: for the graph side to import
from .names import name_problem, shown
from .resources import CountRange
from .variables import has_variables, substitute, substitute_all

OK = 0
ERROR = -1

MAX_ITERATIONS = 100_000_000  # one byte of state each: 100 MB at most
# The largest request the network interface reads (ZMQ_MAXMSGSIZE): a bigger message
# drops the sender's connection before it is buffered, so no client can exhaust the
# service's memory; ~100,000 job descriptions fit. Clients refuse to send more.
MAX_REQUEST_BYTES = 32 * 1024 * 1024

MODELS = ("default", "threads", "openmpi", "intelmpi", "srunmpi")
LOCAL_MODELS = ("default", "threads", "openmpi", "intelmpi")  # srunmpi needs Slurm

_JOB_KEYS = ("name", "iteration", "execution", "resources", "dependencies", "attributes")
_EXECUTION_KEYS = ("exec", "args", "script", "env", "wd", "stdin", "stdout", "stderr",
                   "modules", "venv", "model", "model_opts")
_RESOURCES_KEYS = ("numCores", "numNodes", "wt", "nodeCrs")
_KNOWN_CRS = ("GPU", "MEM")  # consumable resources upstream knows (CRType); GPUs scheduled
_COUNT_KEYS = ("exact", "min", "max", "scheduler")
_MODEL_OPTS_KEYS = ("mpirun", "mpirun_args")


# --------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class Request:
    """Base of all parsed requests."""


@dataclass(frozen=True)
class SubmitRequest(Request):
    jobs: Tuple[Mapping[str, Any], ...]  # raw descriptions: parsed by the manager (needs vars)


@dataclass(frozen=True)
class ListJobsRequest(Request):
    """``listJobs``: every job's name and state."""


@dataclass(frozen=True)
class JobStatusRequest(Request):
    names: Tuple[str, ...]


@dataclass(frozen=True)
class JobInfoRequest(Request):
    names: Tuple[str, ...]
    with_childs: bool = False


@dataclass(frozen=True)
class CancelJobRequest(Request):
    names: Tuple[str, ...]
    force: bool = False  # qcgflow extension: running tasks get SIGKILL at once


@dataclass(frozen=True)
class RemoveJobRequest(Request):
    names: Tuple[str, ...]


@dataclass(frozen=True)
class ResourcesInfoRequest(Request):
    """``resourcesInfo``: the nodes, cores and GPUs, free and used."""


@dataclass(frozen=True)
class ControlRequest(Request):
    command: str


@dataclass(frozen=True)
class FinishRequest(Request):
    """``finish``: stop the service."""


@dataclass(frozen=True)
class StatusRequest(Request):
    all_jobs_finished: bool = False  # options.allJobsFinished: only that flag is wanted


@dataclass(frozen=True)
class BlockedRequest(Request):
    """A qcgflow extension (no upstream client sends it): the running task whose
    ``QCG_PM_STEP_ID`` is ``step`` waits (``blocked``) for other tasks, so its cores may
    run them meanwhile, or it goes on (``not blocked``) and takes cores back."""
    step: str
    blocked: bool


CONTROL_FINISH_AFTER_ALL = "finishAfterAllTasksDone"

_NAMES_REQUESTS = {
    "jobStatus": (JobStatusRequest, "Wrong job status request - missing job names"),
    "jobInfo": (JobInfoRequest, "Wrong job info request - missing job names"),
    "cancelJob": (CancelJobRequest, "Wrong cancel job request - missing job names"),
    "removeJob": (RemoveJobRequest, "Wrong remove job request - missing job names"),
}


def parse_request(data: Any) -> Request:
    """Turn one decoded JSON request into a typed ``Request``.

    Raises:
        InvalidRequest: with the upstream wording for the known error cases.
    """
    if not isinstance(data, dict) or not isinstance(data.get("request"), str):
        raise InvalidRequest("Invalid request")
    name = data["request"]
    if name == "submit":
        jobs = data.get("jobs")
        if not jobs or not isinstance(jobs, list):  # upstream: absent, empty or not a list
            raise InvalidRequest("Wrong submit request - missing jobs data%s" % (
                "" if jobs is None else " (a non-empty list of job descriptions is needed, "
                "not %s)" % _kind(jobs)))
        if not all(isinstance(j, dict) for j in jobs):
            raise InvalidRequest("Wrong submit request - wrong job data")
        return SubmitRequest(tuple(jobs))
    if name in _NAMES_REQUESTS:
        cls, missing = _NAMES_REQUESTS[name]
        names = data.get("jobNames")
        if not isinstance(names, list) or not names:
            raise InvalidRequest(missing)
        if not all(isinstance(n, str) for n in names):
            raise InvalidRequest("Wrong %s request - job names must be strings" % name)
        if cls is JobInfoRequest:
            params = data.get("params") or {}
            with_childs = bool(data.get("withChilds", params.get("withChilds", False))
                               if isinstance(params, dict) else data.get("withChilds", False))
            return JobInfoRequest(tuple(names), with_childs)
        if cls is CancelJobRequest:
            return CancelJobRequest(tuple(names), data.get("force") is True)
        return cls(tuple(names))
    if name == "listJobs":
        return ListJobsRequest()
    if name == "resourcesInfo":
        return ResourcesInfoRequest()
    if name == "control":
        command = data.get("command")
        if command is None:
            raise InvalidRequest("Wrong control request - missing command")
        if command != CONTROL_FINISH_AFTER_ALL:
            raise InvalidRequest("Wrong control request - unknown command")
        return ControlRequest(command)
    if name in ("taskBlocked", "taskUnblocked"):
        step = data.get("step")
        if not isinstance(step, str) or not step:
            raise InvalidRequest("Wrong %s request - missing step (QCG_PM_STEP_ID)" % name)
        return BlockedRequest(step, name == "taskBlocked")
    if name == "finish":
        return FinishRequest()
    if name == "status":
        options = data.get("options")
        return StatusRequest(bool(options.get("allJobsFinished", False))
                             if isinstance(options, dict) else False)
    if name in _PEER_REQUESTS:
        _check_peer_request(name, data)
    raise InvalidRequest("Unknown request name: %s" % name)


# upstream's manager-to-governor requests: entity, required params
_PEER_REQUESTS = {"register": ("manager", ("id", "address", "resources")),
                  "notify": ("job", ("name", "state", "attributes"))}


def _check_peer_request(name: str, data: dict) -> None:
    """Upstream's validation of ``register``/``notify`` (its messages), then the refusal.

    qcgflow managers register with a governor and report job changes to it over the
    governor's own authenticated endpoint (docs/governor.md), never through this interface,
    so a well-formed request is refused too, saying so.
    """
    entity, keys = _PEER_REQUESTS[name]
    if data.get("entity") != entity:
        raise InvalidRequest("Wrong %s request - missing/unknown entity (expected '%s')"
                             % (name, entity))
    params = data.get("params")
    if params is None:
        # upstream says "register parameters" for notify too
        raise InvalidRequest("Wrong %s request - missing register parameters" % name)
    if not isinstance(params, dict) or not all(key in params for key in keys):
        raise InvalidRequest("Wrong %s request - missing key %s parameters (needs %s)"
                             % (name, name, ", ".join(keys)))
    raise InvalidRequest("Wrong %s request - not accepted on this interface: qcgflow managers "
                         "talk to a governor over its own authenticated endpoint "
                         "(qcgflow service --parent)" % name)


def reply_ok(message: Optional[str] = None, data: Optional[Mapping[str, Any]] = None) -> dict:
    """A successful reply: ``{"code": 0, "message"?: ..., "data"?: ...}``."""
    reply: dict = {"code": OK}
    if message is not None:
        reply["message"] = message
    if data is not None:
        reply["data"] = data
    return reply


def reply_error(message: str) -> dict:
    """A failed reply: ``{"code": -1, "message": ...}``."""
    return {"code": ERROR, "message": message}


# --------------------------------------------------------------------------- job descriptions

_WT_UNITS = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_WT_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def parse_wall_time(value: Any) -> Optional[float]:
    """``"2s"``, ``"10m"``, ``"1h30m"``, ``"01:30:00"`` or a number of seconds -> seconds.

    Returns None when the value cannot be read.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if 0 < value < float("inf") else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "")
    match = _WT_UNITS.match(text)
    if match and any(match.groups()):
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        total = hours * 3600 + minutes * 60 + seconds
        return total if total > 0 else None
    match = _WT_CLOCK.match(text)
    if match:
        hours = float(match.group(1) or 0)
        total = hours * 3600 + float(match.group(2)) * 60 + float(match.group(3))
        return total if total > 0 else None
    return None


class _JobParser:
    """Validates one substituted job description; ``fail`` names the job and the field."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, message: str) -> JobDescriptionError:
        return JobDescriptionError("Job '%s': %s" % (self.name, message))

    def check_keys(self, obj: Mapping, allowed: Tuple[str, ...], where: str) -> None:
        for key in obj:
            if key not in allowed:
                raise self.fail("unknown key '%s' in %s (allowed: %s)"
                                % (key, where, ", ".join(allowed)))

    def string(self, obj: Mapping, key: str, where: str) -> Optional[str]:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail("%s.%s must be a string, got %s" % (where, key, _kind(value)))
        if "\x00" in value:  # no file name, argument or variable can hold one
            raise self.fail("%s.%s must not contain a NUL character" % (where, key))
        return value

    def string_list(self, obj: Mapping, key: str, where: str) -> Tuple[str, ...]:
        value = obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("%s.%s must be a list, got %s" % (where, key, _kind(value)))
        items = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.fail("%s.%s[%d] must be a string or a number, got %s"
                                % (where, key, index, _kind(item)))
            if isinstance(item, str) and "\x00" in item:
                raise self.fail("%s.%s[%d] must not contain a NUL character"
                                % (where, key, index))
            items.append(str(item))
        return tuple(items)

    def iteration(self, value: Any) -> Optional[IterationSpec]:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"stop": value}  # Jobs.add(iteration=10) of the upstream API
        if not isinstance(value, dict):
            raise InvalidRequest("Wrong format of iteration directive: not a dictionary")
        self.check_keys(value, ("start", "stop", "values"), "iteration")
        if "values" in value:
            if "start" in value or "stop" in value:
                raise self.fail("iteration: 'values' is mutually exclusive with start/stop")
            values = value["values"]
            if not isinstance(values, list) or not values:
                raise self.fail("iteration.values must be a non-empty list")
            return IterationSpec(0, len(values), tuple(_scalar_text(v) for v in values))
        start, stop = value.get("start", 0), value.get("stop")
        if stop is None:
            raise InvalidRequest("Wrong format of iteration directive: missing stop or values")
        for key, number in (("start", start), ("stop", stop)):
            if isinstance(number, bool) or not isinstance(number, int):
                raise self.fail("iteration.%s must be an integer, got %s" % (key, _kind(number)))
        if stop - start > MAX_ITERATIONS:
            raise self.fail("iteration: %d iterations exceed the limit of %d per job"
                            % (stop - start, MAX_ITERATIONS))
        if start >= stop:
            # upstream's words first where it has them (start > stop; its tests match them)
            raise InvalidRequest("Wrong format of iteration directive: %sthe stop index must be "
                                 "greater than the start index (start %d, stop %d)" % (
                                     "start index larger then stop one: " if start > stop else "",
                                     start, stop))
        return IterationSpec(start, stop)

    def count(self, value: Any, where: str) -> Tuple[CountRange, Optional[SchedulerSpec]]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"exact": value}
        if not isinstance(value, dict):
            raise self.fail("%s must be a dictionary with exact or min/max" % where)
        self.check_keys(value, _COUNT_KEYS, where)
        for key in ("exact", "min", "max"):
            number = value.get(key)
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                                       or number < 1):
                raise self.fail("%s.%s must be a positive integer, got %r" % (where, key, number))
        exact, low, high = value.get("exact"), value.get("min"), value.get("max")
        if exact is not None and (low is not None or high is not None):
            raise self.fail("%s: exact is mutually exclusive with min and max" % where)
        if exact is None and low is None and high is None:
            raise self.fail("%s needs exact, min or max" % where)
        if low is not None and high is not None and low > high:
            raise self.fail("%s: min (%d) is larger than max (%d)" % (where, low, high))
        rng = CountRange(exact, exact) if exact is not None else CountRange(low or 1, high)
        scheduler = None
        if value.get("scheduler") is not None:
            sched = value["scheduler"]
            if isinstance(sched, str):
                sched = {"name": sched}  # the upstream client's simple format sends a name
            if not isinstance(sched, dict) or not isinstance(sched.get("name"), str):
                raise self.fail("%s.scheduler must be a dictionary with a name" % where)
            self.check_keys(sched, ("name", "params"), where + ".scheduler")
            params = sched.get("params") or {}
            if not isinstance(params, dict):
                raise self.fail("%s.scheduler.params must be a dictionary" % where)
            try:
                validate_scheduler(sched["name"], params, rng)
            except InvalidRequest as exc:
                raise self.fail("%s.scheduler: %s" % (where, exc)) from None
            scheduler = SchedulerSpec(sched["name"], dict(params))
        return rng, scheduler

    def resources(self, value: Any) -> ResourcesSpec:
        if value is None:
            return ResourcesSpec(cores=CountRange(1, 1))
        if not isinstance(value, dict):
            raise self.fail("resources must be a dictionary")
        self.check_keys(value, _RESOURCES_KEYS, "resources")
        if value.get("numCores") is None and value.get("numNodes") is None:
            # upstream's words first (clients match them), then which job and field
            raise InvalidRequest(
                "No resources defined: job '%s' has resources %s without numCores or "
                "numNodes (leave resources out for one core, or add resources.numCores)"
                % (self.name, "{%s}" % ", ".join(sorted(map(str, value)))))
        cores = nodes = cores_sched = nodes_sched = None
        if value.get("numCores") is not None:
            cores, cores_sched = self.count(value["numCores"], "resources.numCores")
        if value.get("numNodes") is not None:
            nodes, nodes_sched = self.count(value["numNodes"], "resources.numNodes")
        # upstream checks nodes first (scheduleralgo.allocate_job)
        unschedulable = (self.open_range(value.get("numNodes"), "node", "numNodes", nodes_sched)
                         or self.open_range(value.get("numCores"), "core", "numCores",
                                            cores_sched))
        wt = None
        if value.get("wt") is not None:
            wt = parse_wall_time(value["wt"])
            if wt is None:
                raise self.fail("resources.wt: invalid wall time %r (use e.g. 30s, 10m, 1h30m or "
                                "a number of seconds)" % (value["wt"],))
        gpus = self.node_crs(value.get("nodeCrs"))
        return ResourcesSpec(cores, nodes, cores_sched, nodes_sched, wt,
                             unschedulable=unschedulable, gpus=gpus)

    def node_crs(self, value: Any) -> int:
        """``resources.nodeCrs``: ``{"gpu": n}`` (names case-insensitive) -> GPUs per node."""
        if value is None:
            return 0
        if not isinstance(value, dict):
            raise self.fail("resources.nodeCrs must be a dictionary like {\"gpu\": 1}, got %s"
                            % _kind(value))
        gpus = 0
        seen = set()
        for key, count in value.items():
            kind = str(key).upper()
            where = "resources.nodeCrs.%s" % key
            if kind not in _KNOWN_CRS:
                raise self.fail("%s: unknown consumable resource (known: gpu)" % where)
            if kind in seen:
                raise self.fail("%s: consumable resource given twice" % where)
            seen.add(kind)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise self.fail("%s must be a positive integer, got %r" % (where, count))
            if kind == "MEM":
                raise self.fail("%s: memory is not a schedulable resource here (only gpu)"
                                % where)
            gpus = count
        return gpus

    def open_range(self, raw: Any, kind: str, field: str, scheduler) -> Optional[str]:
        """Upstream's wording when a range lacks min or max and no iteration scheduler
        makes it exact (accepted, then FAILED when started), our detail after it."""
        if not isinstance(raw, dict) or raw.get("exact") is not None or scheduler is not None:
            return None
        given = [key for key in ("min", "max") if raw.get(key) is not None]
        if len(given) != 1:
            return None
        return ("Both %s's range boundaries (min, max) must be defined (job '%s': "
                "resources.%s has only %s; give min and max, or exact, or an iteration "
                "scheduler)" % (kind, self.name, field, given[0]))

    def execution(self, value: Any) -> ExecutionSpec:
        if value is None:
            raise InvalidRequest("Missing execution element in job description")
        if not isinstance(value, dict):
            raise self.fail("execution must be a dictionary")
        self.check_keys(value, _EXECUTION_KEYS, "execution")
        exe = self.string(value, "exec", "execution")
        script = self.string(value, "script", "execution")
        if isinstance(value.get("args"), str):
            value = dict(value, args=[value["args"]])  # upstream accepts a single argument
        args = self.string_list(value, "args", "execution")
        if script is not None and (exe is not None or args):
            raise self.fail("execution.script is mutually exclusive with exec and args")
        if script is None and not exe:
            raise self.fail("execution needs exec or script")
        env = value.get("env") or {}
        if not isinstance(env, dict):
            raise self.fail("execution.env must be a dictionary of strings")
        for key, item in env.items():
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.fail("execution.env.%s must be a string, got %s" % (key, _kind(item)))
            if "\x00" in str(key) + str(item) or "=" in str(key) or not str(key):
                raise self.fail("execution.env: invalid variable %r (a name must be non-empty, "
                                "without '=' or NUL)" % (key,))
        model = self.string(value, "model", "execution") or "default"
        if model.lower() not in MODELS:
            raise self.fail("execution.model: unknown model '%s' (known: %s)"
                            % (model, ", ".join(MODELS)))
        model_opts = value.get("model_opts") or {}
        if not isinstance(model_opts, dict):
            raise self.fail("execution.model_opts must be a dictionary")
        self.check_keys(model_opts, _MODEL_OPTS_KEYS, "execution.model_opts")
        if model_opts.get("mpirun") is not None and not isinstance(model_opts["mpirun"], str):
            raise self.fail("execution.model_opts.mpirun must be a string (the mpirun command)")
        mpirun_args = model_opts.get("mpirun_args")
        if mpirun_args is not None and (not isinstance(mpirun_args, list) or not all(
                isinstance(a, str) for a in mpirun_args)):
            raise self.fail("execution.model_opts.mpirun_args must be a list of strings")
        modules = value.get("modules")
        if isinstance(modules, str):
            modules = [modules]  # upstream accepts a single module name
        venv = self.string(value, "venv", "execution")
        return ExecutionSpec(
            exec=exe, args=args, script=script,
            env={str(k): str(v) for k, v in env.items()},
            wd=self.string(value, "wd", "execution"),
            stdin=self.string(value, "stdin", "execution"),
            stdout=self.string(value, "stdout", "execution"),
            stderr=self.string(value, "stderr", "execution"),
            modules=self.string_list({"modules": modules}, "modules", "execution"),
            venv=venv, model=model.lower(), model_opts=dict(model_opts))

    def dependencies(self, value: Any) -> Tuple[DependencyRef, ...]:
        """``after`` (upstream's) and ``afterAny`` (a qcgflow extension: released in any
        final state). A predecessor named in both keeps the stricter ``after`` edge."""
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail("dependencies must be a dictionary with 'after'")
        self.check_keys(value, ("after", "afterAny"), "dependencies")
        refs: List[DependencyRef] = []
        for key, any_state in (("after", False), ("afterAny", True)):
            entries = value.get(key) or []
            if not isinstance(entries, list) or not all(isinstance(a, str) for a in entries):
                raise self.fail("dependencies.%s must be a list of job names" % key)
            for entry in entries:
                ref = self.dependency(entry.strip(), key)
                strict = DependencyRef(ref.job, ref.iteration, ref.per_iteration)
                if not any_state or strict not in refs:
                    refs.append(DependencyRef(ref.job, ref.iteration, ref.per_iteration,
                                              any_state))
        return tuple(dict.fromkeys(refs))  # duplicates add nothing

    def dependency(self, entry: str, key: str = "after") -> DependencyRef:
        job, sep, iteration = entry.partition(":")
        if not job or (sep and not iteration):
            raise self.fail("dependencies.%s: invalid entry '%s'" % (key, shown(entry)))
        if not job.isprintable():  # no job can have that name: say so now, in one line
            raise self.fail("dependencies.%s: '%s' is not a valid job name: %s"
                            % (key, shown(job), name_problem(job)))
        if not sep:
            return DependencyRef(job)
        if iteration in ("${it}", "$it"):  # placeholders.py: ${ it } is text, an error
            return DependencyRef(job, per_iteration=True)
        if re.fullmatch(r"-?\d+", iteration):
            return DependencyRef(job, iteration=int(iteration))
        raise self.fail("dependencies.%s: invalid iteration in '%s' (use a number or ${it})"
                        % (key, shown(entry)))


def _kind(value: Any) -> str:
    return {dict: "a dictionary", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


_NAME_INVALID = re.compile(r"[:\s/\x00]")


def parse_job(raw: Mapping[str, Any], submit_vars: Optional[Mapping[str, str]]) -> JobSpec:
    """Validate one job description and apply the submit-stage variables.

    Args:
        raw: the job description as it arrived.
        submit_vars: rcnt, uniq, sname, date, time, dateTime (jname is added here); None
            for a description that went through the submit stage already (resume), which
            must not run twice (``$$`` would be undoubled again).

    Raises:
        InvalidRequest: the description is invalid; the message names the job and field.
    """
    if not isinstance(raw, dict):
        raise InvalidRequest("Wrong submit request - wrong job data")
    name = raw.get("name")
    if name is None or name == "":
        raise InvalidRequest("Missing name in job description")
    if not isinstance(name, str):
        raise InvalidRequest("Invalid job name %s: must be a string" % shown(repr(name)))
    for key in raw:
        if key not in _JOB_KEYS:
            raise JobDescriptionError("Unknown job attribute '%s' in job '%s'"
                                      % (shown(str(key)), shown(name)))
    # submit_vars None: already substituted once (a resumed journal), nothing to apply
    job_name = name if submit_vars is None else substitute(name, submit_vars, unescape=True)
    if has_variables(job_name) or "$" in job_name:
        raise InvalidRequest("Job identifier '(%s)' contains invalid characters or unknown "
                             "variables" % shown(name))
    problem = name_problem(job_name)
    if problem is not None:
        if _NAME_INVALID.search(job_name) and job_name.isprintable() and len(job_name) < 80:
            raise InvalidRequest("Invalid job name %s" % job_name)  # upstream's words
        raise InvalidRequest("Invalid job name %s: %s (docs/file-interface.md, job names)"
                             % (shown(job_name), problem))
    desc = {k: v for k, v in raw.items() if k != "name"}
    if submit_vars is not None:
        desc = substitute_all(desc, dict(submit_vars, jname=job_name), unescape=True)
    desc["name"] = job_name
    parser = _JobParser(job_name)
    attributes = desc.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise parser.fail("attributes must be a dictionary")
    return JobSpec(
        name=job_name,
        iteration=parser.iteration(desc.get("iteration")),
        execution=parser.execution(desc.get("execution")),
        resources=parser.resources(desc.get("resources")),
        after=parser.dependencies(desc.get("dependencies")),
        attributes=attributes,
        description=desc,
    )


def nodes_spec_problem(spec: str) -> Optional[str]:
    """What is wrong with a ``--nodes`` value, checked as the service checks it (None: it is
    valid), so that a front end starting a service can refuse it first."""
    from .discovery import parse_nodes_spec  # discovery imports this module
    try:
        parse_nodes_spec(spec)
    except ResourcesError as exc:
        return str(exc)
    return None
