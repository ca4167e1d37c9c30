"""Task options: ONE declarative table, used by ``@task``, ``.options()``, ``shell`` and ``mpi``.

Each ``Option`` names its job-description destination and a checker that returns the
normalised value or raises ``_Invalid(fix)``; ``validate`` turns that into a
``TaskOptionError`` whose message says how to fix it. ``job_fields`` turns validated options
into the ``execution`` / ``resources`` parts of a standard job description (compile uses it).
"""

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from qcgflow.errors import TaskOptionError
from qcgflow.runtime.protocol import MODELS, name_problem, parse_wall_time

SCHEDULERS = ("maximum-iters", "split-into")
PARALLEL_MODELS = ("openmpi", "intelmpi", "srunmpi")
MODEL_OPTS_KEYS = ("mpirun", "mpirun_args")
_BAD_NAME = re.compile(r"[:\s/$]")


class _Invalid(Exception):
    """Raised by a checker: the text says what a valid value looks like."""


# --------------------------------------------------------------------------- checkers

def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _count(what: str) -> Callable[[Any], Dict[str, int]]:
    example = ("%s=4 (exactly 4) or %s={'min': 2, 'max': 8} (as many as are free, "
               "2 to 8)" % (what, what))

    def check(value: Any) -> Dict[str, int]:
        if _positive(value):
            return {"exact": value}
        if isinstance(value, tuple) and len(value) == 2:
            value = {"min": value[0], "max": value[1]}
        if not isinstance(value, Mapping) or not value:
            raise _Invalid("use a positive integer or a range: %s" % example)
        unknown = sorted(set(value) - {"exact", "min", "max"})
        if unknown:
            raise _Invalid("unknown key %r; use %s" % (unknown[0], example))
        if any(not _positive(v) for v in value.values() if v is not None):
            raise _Invalid("counts must be positive integers: %s" % example)
        if "exact" in value and len(value) > 1:
            raise _Invalid("'exact' excludes 'min' and 'max'; use %s" % example)
        if "exact" not in value and "min" not in value:
            raise _Invalid("a range needs 'min' (at least 1): %s" % example)
        if value.get("max") is not None and value["max"] < value["min"]:
            raise _Invalid("'min' (%d) is larger than 'max' (%d)" % (value["min"], value["max"]))
        return {k: v for k, v in value.items() if v is not None}
    return check


def _gpus(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid("use a whole number of GPUs per node, e.g. gpus=1 (0: none)")
    return value


def _model(value: Any) -> str:
    if value not in MODELS:
        raise _Invalid("use one of %s" % ", ".join(repr(m) for m in MODELS))
    return value


def _model_opts(value: Any) -> Dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid("use a dict such as {'mpirun': '/opt/bin/mpirun', 'mpirun_args': "
                       "['--map-by', 'core']}")
    unknown = sorted(set(value) - set(MODEL_OPTS_KEYS))
    if unknown:
        raise _Invalid("unknown key %r; the keys are %s" % (unknown[0], ", ".join(MODEL_OPTS_KEYS)))
    if "mpirun" in value and not isinstance(value["mpirun"], str):
        raise _Invalid("'mpirun' must be the path of the mpirun command (a string)")
    if "mpirun_args" in value:
        value = dict(value, mpirun_args=_strings(value["mpirun_args"], "mpirun_args"))
    return dict(value)


def _wall_time(value: Any) -> Any:
    if parse_wall_time(value) is None:
        raise _Invalid("use a positive number of seconds or a text like '30s', '10m', "
                       "'1h30m' or '01:30:00'")
    return value


def _env(value: Any) -> Dict[str, str]:
    if not isinstance(value, Mapping):
        raise _Invalid("use a dict of variable names to values, e.g. {'OMP_PLACES': 'cores'}")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise _Invalid("variable names must be non-empty strings, got %r" % (key,))
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _Invalid("the value of %s must be a string or a number, got %s"
                           % (key, type(item).__name__))
        out[key] = str(item)
    return out


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("use a non-empty path (relative paths are relative to the run's "
                       "working directory)")
    return value


def _strings(value: Any, what: str = "modules") -> list:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid("use a list of non-empty strings, e.g. %s=['gcc/12']" % what)
    return list(value)


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid("use a whole number of retries, 0 or more")
    return value


def _outputs(value: Any) -> list:
    paths = _strings(value, "outputs")
    for path in paths:
        if path.startswith("/") or ".." in path.split("/"):
            raise _Invalid("use paths inside the task's working directory (relative, no "
                           "'..'), e.g. outputs=['result_${it}.txt']: %r is not" % path)
    return paths


def _retry_exceptions(value: Any):
    if isinstance(value, bool):
        return value
    if isinstance(value, type) and issubclass(value, BaseException):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, type) and issubclass(v, BaseException) for v in value):
        return tuple(value)
    raise _Invalid("use True (retry every failure), False (only lost processes: killed, "
                   "crashed, out of wall time) or a list of exception classes, e.g. "
                   "retry_exceptions=[KeyError]")


def _num_returns(value: Any) -> int:
    if not _positive(value):
        raise _Invalid("use a positive whole number of returned values, e.g. num_returns=2")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("use True or False")
    return value


def _name(value: Any) -> str:
    problem = name_problem(value) if isinstance(value, str) else "not a string"
    if problem is not None or _BAD_NAME.search(value):
        raise _Invalid("%s; use a non-empty name without ':', '/', '$' or white space, not "
                       "starting with '-', e.g. name='prepare'" % (problem or "invalid"))
    return value


def _scheduler(value: Any) -> Dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or value.get("name") not in SCHEDULERS \
            or set(value) - {"name", "params"}:
        raise _Invalid("use 'maximum-iters' or {'name': 'split-into', 'params': {'parts': 2}}")
    params = value.get("params") or {}
    if not isinstance(params, Mapping):
        raise _Invalid("'params' must be a dict, e.g. {'parts': 2}")
    if value["name"] == "split-into" and not _positive(params.get("parts")):
        raise _Invalid("split-into needs a positive number of parts: "
                       "{'name': 'split-into', 'params': {'parts': 2}}")
    return {"name": value["name"], "params": dict(params)} if params else {"name": value["name"]}


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Option:
    """One task option: its ``name``, where it goes in a job description, its checker."""

    name: str
    doc: str
    check: Callable[[Any], Any]
    target: Tuple[str, ...]  # ("execution", "env"), ("resources", "wt"), () = not in the job


OPTIONS: Dict[str, Option] = {o.name: o for o in (
    Option("cores", "cores per task (or per node with nodes): n or {'min', 'max'}",
           _count("cores"), ("resources", "numCores")),
    Option("nodes", "whole nodes: n or {'min', 'max'}", _count("nodes"),
           ("resources", "numNodes")),
    Option("gpus", "GPUs on each node of the task (bound with CUDA_VISIBLE_DEVICES); "
           "0 = none", _gpus, ("resources", "nodeCrs")),
    Option("model", "execution model: %s" % ", ".join(MODELS), _model, ("execution", "model")),
    Option("model_opts", "options of the MPI model (mpirun, mpirun_args)", _model_opts,
           ("execution", "model_opts")),
    Option("wt", "wall time ('30s', '10m', '1h30m', '01:30:00' or seconds); enforced",
           _wall_time, ("resources", "wt")),
    Option("env", "environment variables added to the task's environment", _env,
           ("execution", "env")),
    Option("wd", "working directory, relative to the run's", _path, ("execution", "wd")),
    Option("modules", "environment modules to load", _strings, ("execution", "modules")),
    Option("venv", "virtual environment to activate", _path, ("execution", "venv")),
    Option("retries", "resubmit a failed task up to n times", _retries, ()),
    Option("retry_exceptions", "which failures retries re-run: True (every one, the "
           "default), False (only a task that did not raise: killed, crashed, out of wall "
           "time) or exception classes (those, and tasks that did not raise)",
           _retry_exceptions, ()),
    Option("num_returns", "n: .remote / .bind give n refs, one per item of the returned "
           "sequence (Ray's num_returns)", _num_returns, ()),
    Option("name", "the job name (default: the function's name and a number)", _name, ()),
    Option("cache", "False: never reuse an earlier result of this task (resume, cache_dir); "
           "it runs every time, and so do the tasks using its result", _flag, ()),
    Option("scheduler", "iteration scheduler of a mapped task with a range of cores or nodes",
           _scheduler, ()),
    Option("outputs", "files the task makes (relative to its wd; ${it} in a mapped task): "
           "removed before it runs, checked after it (missing: it FAILS), kept in the cache",
           _outputs, ()),
    Option("pure", "True: the task has no effect but its result (no files): cache_dir may "
           "reuse it in another run directory", _flag, ()),
)}


def _unknown(option: str, value: Any, where: str) -> TaskOptionError:
    close = difflib.get_close_matches(option, list(OPTIONS), n=1)
    fix = ("did you mean %r? " % close[0] if close else "") + \
        "the options are: %s" % ", ".join(OPTIONS)
    return TaskOptionError(option, value, "unknown option; " + fix, where)


def validate(options: Mapping[str, Any], where: str = "",
             base: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """``base`` (already valid) updated with ``options``, every value checked and normalised.

    An option set to None is removed (back to the default).

    Raises:
        TaskOptionError: an unknown option or an invalid value; the message says the fix.
    """
    result = dict(base or {})
    for key, value in options.items():
        option = OPTIONS.get(key)
        if option is None:
            raise _unknown(key, value, where)
        if value is None:
            result.pop(key, None)
            continue
        try:
            result[key] = option.check(value)
        except _Invalid as exc:
            raise TaskOptionError(key, value, str(exc), where) from None
    if "scheduler" in result and not any(
            "exact" not in result.get(k, {"exact": 1}) for k in ("cores", "nodes")):
        raise TaskOptionError("scheduler", result["scheduler"],
                              "an iteration scheduler needs a range of cores or nodes, e.g. "
                              "cores={'min': 1}", where)
    if "scheduler" not in result:
        for key in ("cores", "nodes"):
            bounds = result.get(key, {})
            if "exact" not in bounds and ("min" in bounds) != ("max" in bounds):
                # the runtime (and QCG-PilotJob) would fail every such task: say it now
                raise TaskOptionError(key, bounds, "a range needs both 'min' and 'max' unless "
                                      "an iteration scheduler sizes it: %s={'min': 2, 'max': 8}"
                                      " or scheduler='maximum-iters'" % key, where)
    if result.get("outputs") and result.get("model") in PARALLEL_MODELS:
        raise TaskOptionError("outputs", result["outputs"],
                              "outputs cannot be declared with the %s model (their check "
                              "wraps the program, which would then start once per rank): "
                              "check the files in the task that reads them"
                              % result["model"], where)
    if result.get("scheduler", {}).get("name") == "maximum-iters" and any(
            "max" in result.get(k, {}) for k in ("cores", "nodes")):
        raise TaskOptionError("scheduler", result["scheduler"],
                              "maximum-iters gives each iteration an equal share of what is "
                              "free: drop 'max' from the range (e.g. cores={'min': 2})", where)
    return result


def job_fields(options: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The ``execution`` and ``resources`` entries for validated ``options`` (new dicts)."""
    parts: Dict[str, Dict[str, Any]] = {"execution": {}, "resources": {}}
    for key, value in options.items():
        target = OPTIONS[key].target
        if key == "gpus":
            if value:
                parts["resources"]["nodeCrs"] = {"gpu": value}
            continue
        if target:  # copies: a compiled description must not share state with options
            parts[target[0]][target[1]] = (dict(value) if isinstance(value, dict) else
                                           list(value) if isinstance(value, list) else value)
    if "scheduler" in options:
        count = "numCores" if "exact" not in options.get("cores", {"exact": 1}) else "numNodes"
        parts["resources"][count] = dict(parts["resources"][count],
                                         scheduler=options["scheduler"])
    if parts["resources"] and not {"numCores", "numNodes"} & set(parts["resources"]):
        parts["resources"]["numCores"] = {"exact": 1}  # a wt alone is "No resources defined"
    return parts["execution"], parts["resources"]
