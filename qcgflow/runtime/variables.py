"""The two variable substitution stages of job descriptions (as QCG-PilotJob's
``string.Template.safe_substitute`` at submit and again at execution).

``${name}`` (or ``$name``) is replaced by a known variable; ``$$`` becomes ``$`` in EACH
stage. Unknown variables are left as they are, so shell scripts keep ``${HOME}``. What a
placeholder is: THE grammar of ``runtime/placeholders.py`` (``string.Template``'s, as
upstream; ``${ it }`` with spaces is text, not the iteration).

* Submit stage (``SUBMIT_VARIABLES``): rcnt, uniq, sname, date, time, dateTime, jname.
* Execution stage (``EXECUTION_VARIABLES``): it, itval, root_wd, ncores, nnodes, nlist.

So ``$${it}`` is ``${it}`` after the submit stage and the iteration's index after the
execution stage (upstream's idiom for a per-iteration ``wd`` or ``stdout``), and a literal
``$`` that must reach the program in front of a name or ``{`` is written ``$$$$`` (a lone
``$`` not followed by a name, ``{`` or ``$`` stays as it is). ``escape`` gives that text.
"""

from typing import Mapping

from qcgflow.runtime import placeholders

SUBMIT_VARIABLES = frozenset(placeholders.SUBMIT_VARIABLES)
EXECUTION_VARIABLES = frozenset(placeholders.EXECUTION_VARIABLES)


def substitute(text: str, values: Mapping[str, str], *, unescape: bool) -> str:
    """Replace the variables of ``values`` in ``text``; others stay untouched.

    Args:
        text: the string to process.
        values: variable name -> value.
        unescape: turn ``$$`` into ``$`` (both stages of a job description do) or keep it.
    """
    if "$" not in text:
        return text
    parts = _TEMPLATES.get((text, unescape))
    if parts is None:
        # Most strings name none of the variables (a job's paths hold ${root_wd} at the
        # submit stage) and are unique (they name the job): nothing to replace, nothing to
        # parse or keep. A replacement needs its name in the text, unescaping needs "$$".
        if not (unescape and "$$" in text):
            for name in values:
                if name in text:
                    break
            else:
                return text
        parts = _parse(text, unescape)
    get = values.get
    return "".join([piece if name is None else get(name, piece) for piece, name in parts])


# The same strings come back for every iteration of a job: each is parsed once into
# (text, None) literals and (original reference, variable name) pieces.
_TEMPLATES: dict = {}
_MAX_TEMPLATES = 4096


def _parse(text: str, unescape: bool) -> tuple:
    parts = placeholders.parse(text, unescape)
    if len(_TEMPLATES) >= _MAX_TEMPLATES:
        _TEMPLATES.clear()
    _TEMPLATES[(text, unescape)] = parts
    return parts


def substitute_all(obj, values: Mapping[str, str], *, unescape: bool):
    """``substitute`` applied to every string inside nested lists and dicts (not to keys)."""
    if isinstance(obj, str):
        return substitute(obj, values, unescape=unescape)
    if isinstance(obj, list):
        return [substitute_all(item, values, unescape=unescape) for item in obj]
    if isinstance(obj, dict):
        return {key: substitute_all(item, values, unescape=unescape) for key, item in obj.items()}
    return obj


def escape(text: str) -> str:
    """``text`` written so that BOTH stages give it back unchanged (every ``$`` as ``$$$$``)."""
    return placeholders.literal(text, stages=2)


def escape_stage(obj):
    """Every string inside ``obj`` (nested lists and dicts, not keys) with each ``$``
    doubled: what one more stage turns back into ``obj`` (a substituted description sent
    to another service, whose submit stage runs again)."""
    if isinstance(obj, str):
        return obj.replace("$", "$$")
    if isinstance(obj, list):
        return [escape_stage(item) for item in obj]
    if isinstance(obj, dict):
        return {key: escape_stage(item) for key, item in obj.items()}
    return obj


def has_variables(text: str) -> bool:
    """True when ``text`` still contains a variable reference (not counting ``$$``)."""
    return placeholders.has_placeholders(text)
