"""What an EasyVVUQ ``Actions`` chain is made of, and per-run resources (pure; no I/O).

A chain can be *split* when its first action is ``CreateRunDirectory`` and it has one
``ExecuteLocal`` and the default wrapper: the run directory is then known in the driver
and the model command can be a job of its own (wrapped by an MPI model, in a venv, with
modules) instead of a child of a Python task. It is *standard* when it is exactly
``CreateRunDirectory, Encode, ExecuteLocal, Decode``: the native path runs those.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ._worker import _default_wrapper, _is_execute_local

STANDARD = ("CreateRunDirectory", "Encode", "ExecuteLocal", "Decode")


def _kind(action) -> str:
    kind = type(action)
    return kind.__name__ if kind.__module__.startswith("easyvvuq.") else ""


@dataclass(frozen=True)
class Split:
    """A split chain: ``actions[1:model]`` before the model, ``actions[model+1:]`` after."""

    model: int  # index of the ExecuteLocal action

    def command(self, actions) -> List[str]:
        return list(actions.actions[self.model].full_cmd)


def actions_of(fn: Callable) -> Optional[Any]:
    """The ``Actions`` object when ``fn`` is its bound ``start`` (what a campaign submits)."""
    owner = getattr(fn, "__self__", None)
    if owner is None or getattr(fn, "__name__", "") != "start":
        return None
    kind = type(owner)
    if kind.__name__ != "Actions" or not kind.__module__.startswith("easyvvuq."):
        return None
    return owner


def split(actions) -> Optional[Split]:
    """The split of ``actions`` (see the module docstring), or None."""
    steps = list(getattr(actions, "actions", ()))
    if not steps or _kind(steps[0]) != "CreateRunDirectory" or not _default_wrapper(actions):
        return None
    models = [i for i, action in enumerate(steps) if _is_execute_local(action)]
    return Split(models[0]) if len(models) == 1 else None


def is_standard(actions) -> bool:
    """True for exactly CreateRunDirectory, Encode, ExecuteLocal, Decode (default wrapper)."""
    steps = list(getattr(actions, "actions", ()))
    return tuple(_kind(a) for a in steps) == STANDARD and _default_wrapper(actions)


def run_resources(defaults: Dict[str, Any], resources_for: Optional[Callable],
                  previous: Dict[str, Any]) -> Dict[str, Any]:
    """The task options ``cores`` / ``nodes`` of one run: ``defaults`` updated with
    ``resources_for(previous)``.

    Raises:
        ValueError: ``resources_for`` did not return a dict of cores / nodes (one line,
            naming the run).
    """
    result = dict(defaults)
    if resources_for is None:
        return result
    wanted = resources_for(previous)
    if wanted is None:
        return result
    if not isinstance(wanted, dict) or set(wanted) - {"cores", "nodes"}:
        raise ValueError("resources_for(run %s) must return a dict with 'cores' and/or "
                         "'nodes', got %r" % (previous.get("run_id"), wanted))
    result.update(wanted)
    return result
