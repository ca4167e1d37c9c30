"""The file interface: a JSON list of requests read once, in order, at start.

Replies go to service.log. Reading problems (missing file, malformed JSON, a top level
that is not a list) are reported as one line naming the file, and the service stops
before doing anything.
"""

import json
import logging
from typing import Any, List

from ..errors import InvalidRequest
from ..inputfile import REQUESTS_LIMIT, InputFileError, read_text

_log = logging.getLogger(__name__)


class RequestsFileError(InvalidRequest):
    """The requests file cannot be used."""


def read_requests(path: str) -> List[Any]:
    """Load the requests of ``path``.

    Raises:
        RequestsFileError: the file is missing, unreadable, not a regular file or FIFO
            (``/dev/zero``: endless), larger than ``REQUESTS_LIMIT``, not UTF-8, not JSON (or
            nested deeper than the interpreter's recursion limit) or not a list.
    """
    try:
        text = read_text(path, REQUESTS_LIMIT)
    except InputFileError as exc:
        raise RequestsFileError("%s: %s" % (path, exc)) from None
    except FileNotFoundError:
        raise RequestsFileError("%s: no such requests file" % path) from None
    except OSError as exc:
        raise RequestsFileError("%s: cannot read the requests file: %s"
                                % (path, exc.strerror or exc)) from None
    except UnicodeDecodeError as exc:
        raise RequestsFileError("%s: not UTF-8 text (invalid byte at offset %d)"
                                % (path, exc.start)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestsFileError("%s:%d:%d: malformed JSON: %s"
                                % (path, exc.lineno, exc.colno, exc.msg)) from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise RequestsFileError("%s: malformed JSON: nested too deeply" % path) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise RequestsFileError("%s: malformed JSON: %s" % (path, exc)) from None
    if not isinstance(data, list):
        raise RequestsFileError("%s: the requests file must hold a JSON list of requests, "
                                "found %s" % (path, type(data).__name__))
    return data
