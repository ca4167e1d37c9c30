"""Programs of workflow files found beside the file.

A task runs in the run directory, not in the workflow file's directory, so a relative
program that names a file beside the workflow file is made absolute when the file is
loaded (docs/workflow-files.md). Pure path logic: no file is read or written.
"""

import os
import re
import shlex
import shutil

# the first word of a script's line: a relative path there may name a file beside the
# workflow file (quotes, $ and redirections make it something else: left alone)
_COMMAND_WORD = re.compile(r"^([ \t]*)([A-Za-z0-9_.][A-Za-z0-9_./+-]*)(?=[ \t;&|)]|$)",
                           re.MULTILINE)


def beside(base_dir: str, program: str) -> str:
    """A relative program found beside the workflow file, as an absolute path there (a
    task runs in the run directory, where it is not); others as they are. ``./sim``,
    ``bin/sim``: when the file is there; a bare ``sim``: when it is an executable file
    there and not a command on PATH."""
    if os.path.isabs(program) or "$" in program or not program.strip():
        return program
    candidate = os.path.join(base_dir, program)
    if "/" in program:
        return os.path.normpath(candidate) if os.path.exists(candidate) else program
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and \
            shutil.which(program) is None:
        return candidate
    return program


def script_beside(base_dir: str, script: str) -> str:
    """``beside`` for the command word that starts each line of a script
    (``./prepare.sh ${itval} > in.txt``): only paths with a ``/``, only when the file is
    beside the workflow file."""
    def replace(match):
        word = match.group(2)
        found = beside(base_dir, word) if "/" in word else word
        return match.group(1) + (shlex.quote(found) if found != word else word)
    return _COMMAND_WORD.sub(replace, script)
