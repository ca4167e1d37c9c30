"""The job-name rule, shared by the service (``submit``) and the graph side (``name=``
options, workflow task names).

A job name is 1 to ``MAX_NAME_BYTES`` bytes of UTF-8 and

* is not ``.`` or ``..`` (names become parts of paths: ``${jname}.out``, ``.qcgflow/NAME``);
* does not start with ``-`` (``${jname}`` on a command line would read as an option);
* holds no ``:`` (reserved: ``job:3`` is iteration 3 of ``job``), ``/``, ``$`` (after
  variable substitution), white space, control or format characters (newlines, bidi
  controls such as U+202E, zero-width characters), or lone surrogates.

Every name upstream QCG-PilotJob's own tests use (``job1``, ``j-1``, ``a_b``,
``maximum-iters``...) is valid. ``name_problem`` says what is wrong, in one line;
``shown`` renders any name printably, on one line, for messages.
"""

import re
import unicodedata
from typing import Optional

MAX_NAME_BYTES = 200  # with a suffix (.out, .result) a name still fits a 255-byte file name

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+,=@%#^~-]*\Z")  # the common case, fast
_FORBIDDEN = {":": "':' (reserved for iterations, as in job:3)", "/": "'/'", "$": "'$'"}
_BAD_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible format character "
                   "(bidi control, zero-width)", "Cs": "a lone surrogate",
                   "Zs": "white space", "Zl": "a line separator", "Zp": "a paragraph separator",
                   "Co": "a private-use character", "Cn": "an unassigned code point"}


def name_problem(name: str) -> Optional[str]:
    """None when ``name`` is a valid job name, else why not (one line, no name in it)."""
    if _PLAIN.match(name) and len(name) <= MAX_NAME_BYTES:
        return None if name not in (".", "..") else "'.' and '..' are path components"
    if not name:
        return "empty"
    if name in (".", ".."):
        return "'.' and '..' are path components"
    if name.startswith("-"):
        return "starts with '-' (it would read as a command-line option)"
    for char in name:
        if char in _FORBIDDEN:
            return "contains %s" % _FORBIDDEN[char]
        if char.isspace():
            return "contains white space"
        category = unicodedata.category(char)
        if category in _BAD_CATEGORIES:
            return "contains %s (U+%04X)" % (_BAD_CATEGORIES[category], ord(char))
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return "longer than %d bytes of UTF-8" % MAX_NAME_BYTES
    return None


def shown(name: str, limit: int = 60) -> str:
    """``name`` as is when it is short and printable, else escaped and cut: one line."""
    if len(name) <= limit and name.isprintable():
        return name
    # isprintable() is False for controls, format characters (bidi), separators other
    # than the space, surrogates and unassigned code points: those are escaped
    text = "".join(c if c.isprintable() else _escape(c) for c in name[:limit])
    return text + ("..." if len(name) > limit else "")


def _escape(char: str) -> str:
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 \
        else "\\U%08x" % code
