"""THE ``${...}`` grammar: what a placeholder of a job description is.

Every qcgflow module that writes or reads templates uses this one: the runtime's two
substitution stages (``runtime/variables.py``), command templates (``graph/commands.py``),
the helper that fills task results into them (``qcgflow/fill.py``) and workflow files
(``workflows/placeholders.py``). It is part of the job-description format, like
``runtime.protocol``, so the graph side may import it (docs/architecture.md rule 2).

It is Python's ``string.Template`` grammar, because QCG-PilotJob 0.14.2 fills job
descriptions with ``string.Template(...).safe_substitute`` (manager.py at submit,
executionjob.py at execution) and a job description must mean the same on both runtimes:

=================  ========================================================================
``$$``             an escaped ``$``: a substitution stage turns it into one ``$``
``${name}``        a placeholder; ``name`` is ASCII ``[A-Za-z_][A-Za-z0-9_]*``
``$name``          the same placeholder (the longest name: ``$itval`` is ``itval``)
``${ name }``      NOT a placeholder (spaces inside the braces): text, as upstream's
                   ``Template`` reads it; ``spaced`` finds them, so that the graph side
                   refuses them with a message (bash would stop on a bad substitution)
anything else      text: a ``$`` not followed by one of the above (``$1``, ``${}``,
                   ``${x``, ``${x:-d}``, ``${#a[@]}``, a lone ``$``) stays as it is
=================  ========================================================================

The text is read left to right, once: ``$$$x`` is ``$$`` then ``$x``; a value put in is not
read again. There is no backslash escape here (upstream has none); workflow files add
``\\${name}`` on top for shell variables (``workflows/placeholders.py``).

Imported per task by ``python -m qcgflow.fill``: ``re`` only (no ``typing``, whose import
costs milliseconds).
"""

from __future__ import annotations  # the annotations name typing's types without importing it

import re

NAME = r"[A-Za-z_][A-Za-z0-9_]*"

# The groups: 1 ``$$``, 2 ``${name}``, 3 ``$name``, 4 ``${ name }``. ``$$`` first, so that
# its second ``$`` never starts a placeholder; the spaced form holds no ``$``, so matching
# it never hides a placeholder (it only names what would otherwise be text).
PATTERN = re.compile(r"\$(?:(\$)|\{(%s)\}|(%s)|\{\s*(%s)\s*\})" % (NAME, NAME, NAME))

ESCAPE, BRACED, BARE, SPACED = "escape", "braced", "bare", "spaced"

# The variables the runtime fills (QCG-PilotJob's), in the order messages list them:
# the submit stage's, over the whole description, and the execution stage's, over
# ``execution`` (runtime/variables.py). Named here, once, for the graph side too.
SUBMIT_VARIABLES = ("rcnt", "uniq", "sname", "date", "time", "dateTime", "jname")
EXECUTION_VARIABLES = ("it", "itval", "root_wd", "ncores", "nnodes", "nlist")


class Token:
    """One ``$`` form of a text: ``text[start:end]`` is it, ``kind`` one of ``ESCAPE``
    (``$$``), ``BRACED`` (``${name}``), ``BARE`` (``$name``), ``SPACED`` (``${ name }``,
    text for the runtime); ``name`` is None for ``ESCAPE``. (A plain class: a namedtuple
    would cost this module's import, paid per filled task, twice over.)"""

    __slots__ = ("kind", "start", "end", "name")

    def __init__(self, kind: str, start: int, end: int, name: str | None):
        self.kind, self.start, self.end, self.name = kind, start, end, name

    def __eq__(self, other) -> bool:
        return isinstance(other, Token) and (self.kind, self.start, self.end, self.name) == \
            (other.kind, other.start, other.end, other.name)

    def __repr__(self) -> str:
        return "Token(%r, %d, %d, %r)" % (self.kind, self.start, self.end, self.name)


_KINDS = (None, ESCAPE, BRACED, BARE, SPACED)


def tokens(text: str) -> Iterator[Token]:
    """The ``$`` forms of ``text`` in order; what lies between them is text."""
    for match in PATTERN.finditer(text):
        group = match.lastindex
        yield Token(_KINDS[group], match.start(), match.end(),
                    None if group == 1 else match.group(group))


def names(text: str) -> set[str]:
    """The names of the placeholders of ``text`` (``${name}`` and ``$name``)."""
    return {match.group(2) or match.group(3) for match in PATTERN.finditer(text)
            if match.group(2) or match.group(3)}


def spaced(text: str) -> list[tuple[int, str, str]]:
    """``(offset, form, name)`` of every ``${ name }`` of ``text`` (``form`` as written):
    not a placeholder, though it looks like one (the graph side refuses them with
    ``spaced_message``)."""
    return [(match.start(), match.group(0), match.group(4))
            for match in PATTERN.finditer(text) if match.group(4)]


def spaced_message(form: str, name: str) -> str:
    """The one-line reason a spaced form is refused, with the fix."""
    return ("%s is not a placeholder (no spaces inside the braces: QCG-PilotJob reads it as "
            "text and bash as a bad substitution); write ${%s}" % (form, name))


def substitute(text: str, values: Mapping[str, str], *, unescape: bool) -> str:
    """One substitution stage: the placeholders named in ``values`` replaced by their
    values (not read again), the others kept as written; ``$$`` becomes ``$`` when
    ``unescape`` (what a runtime stage does) or stays ``$$``. With ``unescape`` it gives
    what ``string.Template(text).safe_substitute(values)`` gives."""
    if "$" not in text:
        return text

    def replace(match) -> str:
        if match.group(1):
            return "$" if unescape else "$$"
        value = values.get(match.group(2) or match.group(3) or "")
        return match.group(0) if value is None or match.group(4) else value
    return PATTERN.sub(replace, text)


def parse(text: str, unescape: bool) -> tuple[tuple[str, str | None], ...]:
    """``text`` as pieces for repeated stages: ``(literal, None)`` and ``(as written,
    name)`` for each placeholder; ``$$`` is a literal ``$`` (``unescape``) or ``$$``.
    ``"".join(value.get(name, piece) ...)`` over them is ``substitute``."""
    parts = []
    at = 0
    for match in PATTERN.finditer(text):
        name = match.group(2) or match.group(3)
        if match.group(4):
            continue  # text: stays in the literal around it
        if match.start() > at:
            parts.append((text[at:match.start()], None))
        if name is None:
            parts.append(("$" if unescape else "$$", None))
        else:
            parts.append((match.group(0), name))
        at = match.end()
    if at < len(text):
        parts.append((text[at:], None))
    return tuple(parts)


def has_placeholders(text: str) -> bool:
    """True when ``text`` holds a placeholder (``$$`` and ``${ name }`` are not)."""
    return any(match.group(2) or match.group(3) for match in PATTERN.finditer(text))


def literal(value: str, stages: int = 2) -> str:
    """``value`` written so that ``stages`` substitution stages give it back unchanged
    (each ``$`` doubled once per stage: ``$$$$`` for a job description's two stages)."""
    return value.replace("$", "$" * (2 ** stages))


__all__ = ["NAME", "PATTERN", "ESCAPE", "BRACED", "BARE", "SPACED", "SUBMIT_VARIABLES",
           "EXECUTION_VARIABLES", "Token", "tokens",
           "names", "spaced", "spaced_message", "substitute", "parse", "has_placeholders",
           "literal"]
