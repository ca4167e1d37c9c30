"""Iteration resource schedulers: turn a per-iteration minimum into an exact amount.

An iterative job may describe its per-iteration ``numCores`` or ``numNodes`` as a minimum
together with a scheduler; the scheduler then picks the exact amount for each iteration from
the total available (cores of the pool for ``numCores``, nodes for ``numNodes``). Two
schedulers exist, as in QCG-PilotJob:

``maximum-iters``
    Run as many iterations at once as the minimum allows. When they do not all fit, the
    iterations are split into the smallest possible number of *steps*; the earlier steps take
    the extra iteration when they do not divide evenly. Inside a step the whole total is
    shared as evenly as possible, and the larger shares go to the later iterations of the
    step (3 iterations on 10 cores get 3, 3, 4).

``split-into``
    Split the total into ``params['parts']`` equal partitions (``total // parts``, default
    ``parts`` = number of iterations) and give every iteration one partition, never less
    than the minimum.

Everything here is pure and works in O(1) time and memory per iteration, whatever the
number of iterations: no per-iteration list is ever built.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from qcgflow.runtime.errors import IterationSchedulerError
from qcgflow.runtime.resources import CountRange

__all__ = ["KNOWN_SCHEDULERS", "validate_scheduler", "plan_iterations"]

KNOWN_SCHEDULERS = ("maximum-iters", "split-into")


def _canonical(name: Any) -> str:
    """Return the known scheduler ``name`` refers to; matching ignores case like QCG-PilotJob."""
    if isinstance(name, str) and name.lower() in KNOWN_SCHEDULERS:
        return name.lower()
    raise IterationSchedulerError(
        f"Unknown iteration resources scheduler '{name}' (known: {', '.join(KNOWN_SCHEDULERS)})")


def _parts(params: Mapping[str, Any]) -> Optional[int]:
    """Return split-into's ``parts`` parameter, ``None`` when absent; raise when invalid."""
    if "parts" not in params:
        return None
    parts = params["parts"]
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise IterationSchedulerError(
            f"The split-into iteration scheduler parameter 'parts' must be a positive integer, got {parts!r}")
    return parts


def _check(name: str, params: Any, rng: CountRange) -> tuple[str, Optional[int]]:
    """Validate and return the canonical scheduler name and the split-into parts (or None)."""
    canonical = _canonical(name)
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise IterationSchedulerError(
            f"The {canonical} iteration scheduler parameters must be an object, got {params!r}")
    if rng.max is not None:
        # QCG-PilotJob rejects ``max`` for both schedulers: the scheduler decides the upper bound.
        raise IterationSchedulerError(f"max is not allowed with the {canonical} iteration scheduler")
    parts = _parts(params) if canonical == "split-into" else None
    return canonical, parts


def validate_scheduler(name: str, params: dict, rng: CountRange) -> None:
    """Check that a scheduler specification can be planned.

    Args:
        name: scheduler name (case-insensitive, as in QCG-PilotJob).
        params: scheduler parameters; ``None`` counts as empty. ``split-into`` reads
            ``parts`` (optional, a positive integer); other keys are ignored.
        rng: the per-iteration requirement; only ``min`` may be given.

    Raises:
        IterationSchedulerError: unknown name, ``max`` given, params not a mapping, or an
            invalid ``parts``.
    """
    _check(name, params, rng)


def plan_iterations(name: str, params: dict, rng: CountRange, total_available: int,
                    iterations: int) -> Callable[[int], CountRange]:
    """Return ``f(position) -> CountRange(n, n)``, the exact amount for iteration ``position``.

    Guarantees: ``n >= rng.min`` for every position. For ``maximum-iters`` with
    ``total_available >= rng.min``, the iterations of one step together use exactly
    ``total_available``; when ``total_available < rng.min`` every iteration gets ``rng.min``
    (such a job can never run; reporting that is the caller's business). ``f`` is O(1) in time
    and memory and raises ``IndexError`` for positions outside ``0..iterations-1``.

    Args:
        name: scheduler name, see :func:`validate_scheduler`.
        params: scheduler parameters, see :func:`validate_scheduler`.
        rng: per-iteration requirement (``min`` only).
        total_available: total cores (for numCores) or nodes (for numNodes) of the pool.
        iterations: number of iterations of the job.

    Raises:
        IterationSchedulerError: as :func:`validate_scheduler`.
        ValueError: ``total_available`` or ``iterations`` is negative (a caller bug).
    """
    canonical, parts = _check(name, params, rng)
    if total_available < 0 or iterations < 0:
        raise ValueError(
            f"total_available and iterations must be >= 0, got {total_available} and {iterations}")
    if canonical == "split-into":
        # Default partition count: one partition per iteration (QCG-PilotJob's default).
        share = total_available // (parts if parts is not None else max(iterations, 1))
        return _constant(max(share, rng.min), iterations)
    return _maximum_iters(rng.min, total_available, iterations)


def _constant(amount: int, iterations: int) -> Callable[[int], CountRange]:
    """A plan giving every iteration the same ``amount``."""
    result = CountRange(amount, amount)

    def plan(position: int) -> CountRange:
        _check_position(position, iterations)
        return result

    return plan


def _maximum_iters(minimum: int, total: int, iterations: int) -> Callable[[int], CountRange]:
    """The maximum-iters plan in closed form.

    With ``per_step = total // minimum`` iterations fitting at once, the number of steps is
    ``ceil(iterations / per_step)``. Spreading iterations over steps as evenly as possible
    with the bigger steps first gives ``big = ceil(iterations / steps)`` iterations to the
    first ``iterations % steps`` steps (all of them when it divides evenly) and ``big - 1``
    to the rest. Since ``big <= per_step``, every share ``total // size >= minimum``.
    """
    if total < minimum or iterations == 0:
        return _constant(minimum, iterations)
    per_step = total // minimum
    steps = -(-iterations // per_step)
    small, big_steps = divmod(iterations, steps)
    # Positions below ``boundary`` belong to the steps holding ``small + 1`` iterations.
    boundary = big_steps * (small + 1)

    def plan(position: int) -> CountRange:
        _check_position(position, iterations)
        if position < boundary:
            size, index = small + 1, position % (small + 1)
        else:
            size, index = small, (position - boundary) % small
        share, extra = divmod(total, size)
        # The last ``extra`` iterations of a step get one more, so the step uses all of total.
        amount = share + 1 if index >= size - extra else share
        return CountRange(amount, amount)

    return plan


def _check_position(position: int, iterations: int) -> None:
    if not 0 <= position < iterations:
        raise IndexError(f"iteration position {position} is outside 0..{iterations - 1}")
