"""Source trees under test, compiled before they are timed.

A tree made with ``git archive`` has no ``.pyc`` files, and with ``PYTHONDONTWRITEBYTECODE=1``
(set on the development VM) every process started from it compiles every module it
imports, on every start: ~0.1-0.2 s more for a service or a session than an installed
package (``pip`` compiles at install) costs. Benchmarks that time starts compile the trees
first, so that both sides of a comparison load ``.pyc`` files.
"""

import compileall
import os
import subprocess

COMPILE_CODE = ("import compileall, os, qcgflow; "
                "compileall.compile_dir(os.path.dirname(qcgflow.__file__), quiet=1)")


def compile_tree(src: str) -> None:
    """Write the ``.pyc`` files of ``<src>/qcgflow`` (fresh ones where sources changed)."""
    compileall.compile_dir(os.path.join(src, "qcgflow"), quiet=1)


def compile_for(interpreter_argv, env=None) -> None:
    """The same for the ``qcgflow`` package that ``interpreter_argv`` (e.g. ``["env",
    "PYTHONPATH=SRC", "python"]``) imports."""
    subprocess.run(list(interpreter_argv) + ["-c", COMPILE_CODE], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
