"""Requests and job descriptions for tests, in the service's wire format.

* ``job(name, exec_, args, script=, cores=, nodes=, wt=, after=, iteration=, **execution)``:
  a job description (``cores``/``nodes``: an int means exactly that many, a dict is used
  as it is); ``submit(*jobs)``: a submit request.
* ``wait_marker(job, state)`` / ``wait_file(path)``: pseudo-requests of the driver
  (``support.services.run_driver``) holding the next requests back until a job is in a
  state or a file exists.
* ``history_states(entry)`` / ``history_time(entry, state)``: the states of a jobs.report
  entry's history, in order; the date it reached ``state``.
"""

from typing import Any, Dict, List, Optional, Sequence


def job(name: str, exec_: Optional[str] = None, args: Sequence = (), *,
        script: Optional[str] = None, cores: Any = None, nodes: Any = None,
        wt: Any = None, after: Sequence[str] = (), iteration: Any = None,
        **execution) -> dict:
    """A job description; ``cores``/``nodes`` are an int (exact) or a dict."""
    ex: Dict[str, Any] = {}
    if script is not None:
        ex["script"] = script
    else:
        ex["exec"] = exec_ or "true"
        if args:
            ex["args"] = [str(a) for a in args]
    ex.update(execution)
    desc: Dict[str, Any] = {"name": name, "execution": ex}
    resources: Dict[str, Any] = {}
    if cores is not None:
        resources["numCores"] = {"exact": cores} if isinstance(cores, int) else cores
    if nodes is not None:
        resources["numNodes"] = {"exact": nodes} if isinstance(nodes, int) else nodes
    if wt is not None:
        resources["wt"] = wt
    if resources:
        desc["resources"] = resources
    if after:
        desc["dependencies"] = {"after": list(after)}
    if iteration is not None:
        desc["iteration"] = iteration
    return desc


def submit(*jobs: dict) -> dict:
    return {"request": "submit", "jobs": list(jobs)}


def history_states(entry: dict) -> List[str]:
    return [h["state"] for h in entry.get("history", [])]


def history_time(entry: dict, state: str) -> str:
    for h in entry.get("history", []):
        if h["state"] == state:
            return h["date"]
    raise AssertionError("%s never reached %s: %s" % (entry.get("name"), state,
                                                      entry.get("history")))


def wait_marker(job: str, state: str = "EXECUTING", timeout: float = 10.0) -> dict:
    """A driver pseudo-request: hold the next requests until ``job`` is in ``state``."""
    return {"__wait__": {"job": job, "state": state, "timeout": timeout}}


def wait_file(path: str, timeout: float = 10.0) -> dict:
    """A driver pseudo-request: hold the next requests until ``path`` (under --wd) exists."""
    return {"__wait__": {"file": path, "timeout": timeout}}
