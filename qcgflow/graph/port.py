"""The graph layer's door to the session layer above it (dependency inversion).

``f.remote(...)`` submits a ref to the current session, and a ref unpickled in a process
joins that process's session: both are ``qcgflow.session.dynamic``'s work, a layer above
``qcgflow.graph``, which never imports it (docs/architecture.md rule 6: no import cycle,
not even inside a function). The layer above plugs in here instead:

* ``install(submit=..., adopt=..., blocking=...)``: ``qcgflow.session.dynamic`` gives its
  functions when it loads, however it was loaded.
* ``set_loader(load)``: ``qcgflow/__init__.py``, the top of the package, which Python runs
  before any ``qcgflow.*`` module, gives a function that imports the session layer; it is
  called on the first ``submit`` / ``adopt`` that finds nothing installed, so that a
  program that never calls ``.remote`` never loads the session layer.

Guarantees: ``submit`` and ``adopt`` call the installed functions (loading them first when
needed) and return what they return; without an installed function and a loader that
installs it, they raise ``RuntimeError`` (only a program that replaced the package's
``__init__`` can get there). ``installed`` never loads anything.
"""

from __future__ import annotations  # typing is not imported: ``import qcgflow`` loads this

_functions: Dict[str, Callable[..., Any]] = {}
_loader: Optional[Callable[[], None]] = None


def set_loader(loader: Callable[[], None]) -> None:
    """``loader()`` installs the session layer's functions (called at most when missing)."""
    global _loader
    _loader = loader


def install(**functions: Callable[..., Any]) -> None:
    """The session layer's ``submit(target)``, ``adopt(name, iterations, stored, root,
    watch=None)``
    and ``blocking(futures)`` (a context around a wait: a task lends its cores)."""
    _functions.update(functions)


def _function(name: str) -> Callable[..., Any]:
    function = _functions.get(name)
    if function is None:
        if _loader is not None:
            _loader()
        function = _functions.get(name)
        if function is None:
            raise RuntimeError("qcgflow's session layer is not installed (qcgflow/__init__.py "
                               "installs it): cannot %s a task" % name)
    return function


def installed(name: str) -> Optional[Callable[..., Any]]:
    """The installed function ``name``, or None while the session layer is not loaded."""
    return _functions.get(name)


def submit(target: Any) -> Any:
    """Submit ``target`` (a ref, or refs) to the current session; what ``.remote`` returns."""
    return _function("submit")(target)


def adopt(name: str, iterations: Any, stored: bool, root: str,
          watch: Optional[str] = None) -> Any:
    """The ref of job ``name`` of the session at ``root``, tracked by this process's session
    (``watch``: the job that runs it, a bundle of several calls, when not its own)."""
    return _function("adopt")(name, iterations, stored, root, watch)
