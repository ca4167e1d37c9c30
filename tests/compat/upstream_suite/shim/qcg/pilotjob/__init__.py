"""``qcg.pilotjob`` for upstream's unmodified tests: qcgflow's modules under upstream's names.

- ``api``, ``api.*``: ``sys.modules`` aliases of ``qcgflow.runtime.api`` and its modules, so a
  test's ``from qcg.pilotjob.api.manager import LocalManager`` gets qcgflow's class itself;
- ``executor_api``, ``executor_api.qcgpj_executor``, ``executor_api.templates[.basic_template
  | .qcgpj_template]``: aliases of the one module ``qcgflow.runtime.executor_api``;
- ``service``, ``slurmres``, ``parseres``, ``executionjob``: small modules here that start
  ``qcgflow service`` or answer from qcgflow's Slurm discovery;
- everything else (``joblist``, ``request``, ``resources``, ``errors``, ``allocation``,
  ``utils.auxdir``, ``tests``) is found, in place, in the upstream suite's ``helpers/`` and
  ``core/`` directories, appended to this package's ``__path__``: test-side code that only
  builds inputs or finds files, never copied into the project.

The suite's root is ``$QCGFLOW_UPSTREAM_SUITE`` or ``<repo>/../shared/upstream-suite``.
"""

import importlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# shim/qcg/pilotjob -> shim/qcg -> shim -> upstream_suite -> compat -> tests -> repo
_REPO = os.path.normpath(os.path.join(_HERE, *[os.pardir] * 6))


def suite_root() -> str:
    """The upstream suite's directory (it may not exist; the runner checks)."""
    return os.environ.get("QCGFLOW_UPSTREAM_SUITE") or os.path.normpath(
        os.path.join(_REPO, os.pardir, "shared", "upstream-suite"))


_ROOT = suite_root()
__path__.extend(os.path.join(_ROOT, part, "qcg", "pilotjob")  # noqa: F821 - package __path__
                for part in ("helpers", "core", "executor_api"))

_API = ("", ".errors", ".job", ".jobinfo", ".manager", ".local")
_EXECUTOR = ("", ".qcgpj_executor", ".templates", ".templates.basic_template",
             ".templates.qcgpj_template")


def _alias(name: str, target: str) -> None:
    module = importlib.import_module(target)
    sys.modules[__name__ + "." + name] = module
    if "." not in name:  # `import qcg.pilotjob.api` then `qcg.pilotjob.api.x` needs the attribute
        setattr(sys.modules[__name__], name, module)


for _suffix in _API:
    _alias("api" + _suffix, "qcgflow.runtime.api" + _suffix)
for _suffix in _EXECUTOR:
    _alias("executor_api" + _suffix, "qcgflow.runtime.executor_api")
