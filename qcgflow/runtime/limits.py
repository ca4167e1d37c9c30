"""Structural limits on decoded requests, checked before anything walks them recursively.

A request is a JSON value; job descriptions are substituted (``variables.substitute_all``),
copied, logged and serialized again by recursive code. A value nested about 1000 levels
deep raised ``RecursionError`` there -- and again while the failure was being logged --
and no reply was sent (issue 17, class 2b). ``check_depth`` walks the value without
recursion and refuses anything deeper than ``MAX_DEPTH`` containers, so every recursive
walk afterwards has a bound far below Python's recursion limit.

The size of a request is bounded where it is read (``protocol.MAX_REQUEST_BYTES`` on the
network interface); its depth is bounded here, for every interface; so is the size of the
biggest reply (``MAX_LISTED_CHILDREN``).
"""

from typing import Any

from .errors import InvalidRequest

# Real descriptions nest 5-6 levels (submit > jobs > job > execution > env > value);
# user attributes add a few. 100 leaves room for any sane use and stays far below the
# recursion limit (1000 frames) of the code that walks a description.
MAX_DEPTH = 100

# ``jobInfo`` with ``withChilds`` lists every iteration: 1,000,000 took 5 s and a 42 MB
# reply, during which nobody else was served (100,000,000 would take minutes and GBs).
# Beyond this many per request the reply is a one-line error naming the way out.
MAX_LISTED_CHILDREN = 100_000


class RequestTooDeep(InvalidRequest):
    """A request nests lists/dictionaries deeper than ``MAX_DEPTH``."""


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ``RequestTooDeep`` when ``value`` nests containers more than ``limit`` deep.

    Iterative (an explicit stack), so it cannot itself overflow the recursion limit; the
    message names where the limit was crossed (the first keys/indices of that path).
    Every request of every interface passes here, so the walk keeps no path (a tuple per
    container cost ~10 ms for a 600-job submit); only a refused value is walked again for it.
    """
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise RequestTooDeep("Invalid request: nested deeper than %d levels (at %s)"
                                 % (limit, _path_text(_path_below(value, limit))))
        depth += 1
        for child in children:
            if isinstance(child, (dict, list)):
                push((child, depth))


def _path_below(value: Any, limit: int) -> tuple:
    """The keys/indices (at most 6) of a path to a container deeper than ``limit``."""
    stack = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if depth > limit:
            return path
        for key, child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1, path + (key,) if len(path) < 6 else path))
    return ()


def _path_text(path) -> str:
    parts = []
    for key in path:
        parts.append("[%d]" % key if isinstance(key, int) else ".%.40s" % key)
    text = "".join(parts).lstrip(".") or "the top level"
    return text + ("..." if len(path) >= 6 else "")
