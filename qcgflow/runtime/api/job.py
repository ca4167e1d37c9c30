"""``Jobs``: a group of job descriptions to submit (as ``qcg.pilotjob.api.job.Jobs``).

Two ways to add a job:

- ``add(name=..., exec=..., args=..., numCores=2, iteration=10, after='a', ...)``: the
  simple, flat format, converted to the standard one::

      exec/script, args, stdin, stdout, stderr, wd, modules, venv, model, model_opts, env
                                            -> "execution"
      numCores, numNodes (int n -> {"exact": n}), wt, nodeCrs ({"gpu": n}) -> "resources"
      iteration (int n -> {"start": 0, "stop": n}; list -> {"values": [...]}) -> "iteration"
      after (str -> [str])                                  -> "dependencies": {"after": [...]}

- ``add_std({...})``: a standard description (what the service accepts) as it is.

A job without a name gets a unique (uuid4) name. Names must be unique in a group.
"""

import json
import uuid
from typing import Dict, List, Optional

from .errors import FileError, InvalidJobDescriptionError, JobNotDefinedError

# attribute -> accepted types, for the simple format
SIMPLE_ATTRS = {
    "name": (str,),
    "exec": (str,),
    "script": (str,),
    "args": (list, str),
    "stdin": (str,),
    "stdout": (str,),
    "stderr": (str,),
    "wd": (str,),
    "modules": (list, str),
    "venv": (str,),
    "model": (str,),
    "model_opts": (dict,),
    "env": (dict,),  # qcgflow extension: execution.env of the standard format
    "numNodes": (int, dict),
    "numCores": (int, dict),
    "wt": (str,),
    "nodeCrs": (dict,),  # consumable resources per node, e.g. {"gpu": 2}
    "iteration": (int, list, dict),
    "after": (list, str),
}
EXECUTION_KEYS = ("args", "stdin", "stdout", "stderr", "wd", "modules", "venv", "model",
                  "model_opts", "env")
RESOURCE_KEYS = ("numCores", "numNodes", "wt", "nodeCrs")
COUNT_ATTRS = {"min": (int,), "max": (int,), "exact": (int,), "scheduler": (str, dict)}
ITERATION_ATTRS = {"start": (int,), "stop": (int,), "values": (list,)}

MAX_ITERATIONS = 64 * 1024  # upstream's client-side limit of the simple format


def _merge(job_attrs: Optional[dict], kw_attrs: dict) -> dict:
    if job_attrs is None:
        return dict(kw_attrs)
    if not isinstance(job_attrs, dict):
        raise InvalidJobDescriptionError("job description must be a dictionary, not %s"
                                         % type(job_attrs).__name__)
    return {**job_attrs, **kw_attrs}


def _type_names(types) -> str:
    return " or ".join(t.__name__ for t in types)


def _check_types(where: str, attrs: dict, table: dict) -> None:
    # upstream's wording first ("Unknown attribute x", "Invalid numCores attribute exact type"),
    # scripts and upstream's tests match it; what was expected follows
    prefix = "" if where == "job" else where + " "
    for key, value in attrs.items():
        if key not in table:
            raise InvalidJobDescriptionError("Unknown %sattribute %s (known: %s)" % (
                prefix, key, ", ".join(sorted(table))))
        if isinstance(value, bool) or not isinstance(value, table[key]):
            raise InvalidJobDescriptionError("Invalid %sattribute %s type %s (expected %s)"
                                             % (prefix, key, type(value).__name__,
                                                _type_names(table[key])))


def _count(name: str, value) -> dict:
    if isinstance(value, int):
        return {"exact": value}
    _check_types(name, value, COUNT_ATTRS)
    return dict(value)


def _iteration(value) -> dict:
    if isinstance(value, int):
        value = {"start": 0, "stop": value}
    elif isinstance(value, list):
        value = {"values": list(value)}
    else:
        _check_types("iteration", value, ITERATION_ATTRS)
        value = dict(value)
    if "stop" not in value and "values" not in value:
        raise InvalidJobDescriptionError("Required attribute stop of element iteration not "
                                         "defined")
    if "stop" in value and "values" in value:
        raise InvalidJobDescriptionError("Stop and values iteration attribute are excluding")
    count = len(value["values"]) if "values" in value else value["stop"] - value.get("start", 0)
    if count < 0 or count > MAX_ITERATIONS:
        raise InvalidJobDescriptionError("Wrong number of iterations - outside range (0, %d)"
                                         % MAX_ITERATIONS)
    return value


def simple_to_std(attrs: dict) -> dict:
    """Validate a simple description (with a name) and convert it to the standard format."""
    _check_types("job", attrs, SIMPLE_ATTRS)
    if "exec" not in attrs and "script" not in attrs:
        raise InvalidJobDescriptionError("No 'exec' nor 'script' defined")
    if "exec" in attrs and "script" in attrs:
        raise InvalidJobDescriptionError("Both 'exec' and 'script' defined")
    execution = {"exec": attrs["exec"]} if "exec" in attrs else {"script": attrs["script"]}
    for key in EXECUTION_KEYS:
        if key in attrs:
            execution[key] = attrs[key]
    std = {"name": attrs["name"], "execution": execution}
    resources = {}
    for key in RESOURCE_KEYS:
        if key in attrs:
            value = attrs[key]
            resources[key] = _count(key, value) if key in ("numCores", "numNodes") else value
    if resources:
        std["resources"] = resources
    if "iteration" in attrs:
        std["iteration"] = _iteration(attrs["iteration"])
    if "after" in attrs:
        after = attrs["after"]
        std["dependencies"] = {"after": [after] if isinstance(after, str) else list(after)}
    return std


class Jobs:
    """An ordered group of job descriptions (standard format), keyed by name."""

    def __init__(self):
        self._list: Dict[str, dict] = {}
        self._job_idx = 0

    @staticmethod
    def _generate_default_name() -> str:
        return str(uuid.uuid4())

    def _name_for(self, attrs: dict) -> str:
        if "name" not in attrs:
            attrs["name"] = self._generate_default_name()
        name = attrs["name"]
        if not isinstance(name, str) or not name:
            raise InvalidJobDescriptionError("Job name must be a non-empty string")
        if name in self._list:
            raise InvalidJobDescriptionError("Job %s already in list" % name)
        return name

    def _append_job(self, name: str, std_job: dict) -> None:
        self._list[name] = {"idx": self._job_idx, "data": std_job}
        self._job_idx += 1

    def add(self, job_attrs: Optional[dict] = None, **kw_attrs) -> "Jobs":
        """Add a job in the simple format (see the module docstring); returns self.

        Raises:
            InvalidJobDescriptionError: unknown attribute, wrong type, duplicate name, ...
        """
        attrs = _merge(job_attrs, kw_attrs)
        name = self._name_for(attrs)
        self._append_job(name, simple_to_std(attrs))
        return self

    def add_std(self, job_attrs: Optional[dict] = None, **kw_attrs) -> "Jobs":
        """Add a job in the standard format (as the service accepts it); returns self."""
        std = _merge(job_attrs, kw_attrs)
        self._validate_std_job(std)
        self._append_job(std["name"], std)
        return self

    def _validate_std_job(self, std: dict) -> None:
        if not isinstance(std, dict):
            raise InvalidJobDescriptionError("job description must be a dictionary, not %s"
                                             % type(std).__name__)
        execution = std.get("execution")
        if not isinstance(execution, dict) or ("exec" not in execution
                                               and "script" not in execution):
            raise InvalidJobDescriptionError('Missing "execution/exec" key')
        self._name_for(std)

    def remove(self, name: str) -> None:
        """Remove a job from the group.

        Raises:
            JobNotDefinedError: no job of that name in the group.
        """
        if name not in self._list:
            raise JobNotDefinedError(name)
        del self._list[name]

    def clear(self) -> int:
        """Remove every job; returns how many there were."""
        count = len(self._list)
        self._list.clear()
        return count

    def job_names(self) -> List[str]:
        return list(self._list)

    def ordered_job_names(self) -> List[str]:
        return [name for name, _ in sorted(self._list.items(), key=lambda kv: kv[1]["idx"])]

    def jobs(self) -> List[dict]:
        return [entry["data"] for entry in self._list.values()]

    def ordered_jobs(self) -> List[dict]:
        return [entry["data"] for entry in sorted(self._list.values(), key=lambda e: e["idx"])]

    def __len__(self) -> int:
        return len(self._list)

    def load_from_file(self, file_path: str) -> None:
        """Add the standard descriptions of a JSON file (a list of jobs).

        Raises:
            InvalidJobDescriptionError: a description is invalid (nothing is added then).
            FileError: the file cannot be read or is not a JSON list.
        """
        try:
            with open(file_path, "r", encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise FileError('File to open/write file "%s": %s' % (file_path, exc)) from None
        if not isinstance(loaded, list):
            raise FileError('File "%s" does not hold a list of job descriptions' % file_path)
        staged = Jobs()
        staged._list = dict(self._list)
        staged._job_idx = self._job_idx
        for std in loaded:
            staged.add_std(std)
        self._list, self._job_idx = staged._list, staged._job_idx

    def save_to_file(self, file_path: str) -> None:
        """Write the standard descriptions, in order, as a JSON list.

        Raises:
            FileError: the file cannot be written.
        """
        try:
            with open(file_path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(self.ordered_jobs(), indent=2))
        except OSError as exc:
            raise FileError('File to open/write file "%s": %s' % (file_path, exc)) from None

    def __repr__(self) -> str:
        return "Jobs(%s)" % ", ".join(self.ordered_job_names())
