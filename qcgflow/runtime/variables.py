"""The two variable substitution stages of job descriptions.

``${name}`` (or ``$name``) is replaced by a known variable; ``$$`` is a literal dollar.
Unknown variables are left as they are, so shell scripts keep ``${HOME}``.

* Submit stage (``SUBMIT_VARIABLES``): rcnt, uniq, sname, date, time, dateTime, jname.
  ``$$`` is kept as ``$$`` so that the execution stage still sees the escape.
* Execution stage (``EXECUTION_VARIABLES``): it, itval, root_wd, ncores, nnodes, nlist.
  ``$$`` becomes ``$``.
"""

import re
from typing import Callable, Mapping

SUBMIT_VARIABLES = frozenset({"rcnt", "uniq", "sname", "date", "time", "dateTime", "jname"})
EXECUTION_VARIABLES = frozenset({"it", "itval", "root_wd", "ncores", "nnodes", "nlist"})

_PATTERN = re.compile(r"\$(?:(\$)|\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}|([A-Za-z_][A-Za-z0-9_]*))")


def _substituter(values: Mapping[str, str], unescape: bool) -> Callable[[re.Match], str]:
    def replace(match: re.Match) -> str:
        if match.group(1):
            return "$" if unescape else "$$"
        name = match.group(2) or match.group(3)
        value = values.get(name)
        return match.group(0) if value is None else value
    return replace


def substitute(text: str, values: Mapping[str, str], *, unescape: bool) -> str:
    """Replace the variables of ``values`` in ``text``; others stay untouched.

    Args:
        text: the string to process.
        values: variable name -> value.
        unescape: turn ``$$`` into ``$`` (the last stage) or keep it (earlier stages).
    """
    if "$" not in text:
        return text
    return _PATTERN.sub(_substituter(values, unescape), text)


def substitute_all(obj, values: Mapping[str, str], *, unescape: bool):
    """``substitute`` applied to every string inside nested lists and dicts (not to keys)."""
    if isinstance(obj, str):
        return substitute(obj, values, unescape=unescape)
    if isinstance(obj, list):
        return [substitute_all(item, values, unescape=unescape) for item in obj]
    if isinstance(obj, dict):
        return {key: substitute_all(item, values, unescape=unescape) for key, item in obj.items()}
    return obj


def has_variables(text: str) -> bool:
    """True when ``text`` still contains a variable reference (not counting ``$$``)."""
    return any(not m.group(1) for m in _PATTERN.finditer(text))
