"""qcgflow: Python workflows for HPC on a QCG-PilotJob-compatible pilot-job runtime.

::

    import qcgflow

    @qcgflow.task
    def square(x):
        return x * x

    @qcgflow.task
    def total(values):
        return sum(values)

    squares = square.map(range(10))            # one iterative job
    print(qcgflow.run(total.bind(squares)))    # 285

The names below are loaded on first use, so that ``import qcgflow`` stays cheap (task
processes import it too): ``task``, ``shell``, ``mpi``, ``compile``, ``run``, ``init``,
``shutdown``, ``get``, ``wait`` (the dynamic API: ``f.remote(...)``), ``any_outcome``
(partial results), ``errors``
and the exception classes of ``qcgflow.errors``. The runtime is ``qcgflow.runtime``.
"""

import copyreg as _copyreg
import sys as _sys
import types as _types

__version__ = "0.1.0"

_EXCEPTIONS = ("QcgflowError", "TaskOptionError", "GraphError", "CycleError",
               "NameClashError", "TaskError", "TaskFailed", "DependencyFailed", "RunError",
               "TaskCancelled", "TaskCancelledError", "GetTimeoutError")

_LAZY = dict({"task": "qcgflow.graph.task", "shell": "qcgflow.graph.commands", "mpi": "qcgflow.graph.commands",
              "compile": "qcgflow.build.compile", "run": "qcgflow.session.oneshot",
              "init": "qcgflow.session.dynamic", "shutdown": "qcgflow.session.dynamic",
              "get": "qcgflow.session.dynamic", "wait": "qcgflow.session.dynamic",
              "cancel": "qcgflow.session.dynamic", "put": "qcgflow.session.dynamic",
              "TaskRef": "qcgflow.graph.graph", "any_outcome": "qcgflow.graph.graph",
              "CommandResult": "qcgflow.build.payload"},
             **{name: "qcgflow.errors" for name in _EXCEPTIONS})

__all__ = ["__version__", "task", "shell", "mpi", "compile", "run", "init", "shutdown", "get",
           "wait", "cancel", "put", "errors", "TaskRef", "any_outcome",
           "CommandResult"] + list(_EXCEPTIONS)


def __getattr__(name):
    import importlib
    if name == "errors":
        return importlib.import_module("qcgflow.errors")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'qcgflow' has no attribute %r" % name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Package(_types.ModuleType):
    """``qcgflow.task`` and ``qcgflow.compile`` are functions, though modules of the same
    names exist: the import system would set the modules as attributes of the package when
    they load, so that is refused here (they stay in ``sys.modules``)."""

    def __setattr__(self, name, value):
        if name in ("task", "compile") and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def _import_package(name):
    import importlib
    return importlib.import_module(name)


# a task function that uses ``qcgflow`` (tasks submitting tasks) pickles it by reference
_copyreg.pickle(_Package, lambda module: (_import_package, (module.__name__,)))


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _load_session_layer():
    """``f.remote`` and unpickled refs reach the session layer through ``qcgflow.graph.port``
    (the graph layer never imports the layers above it): this top module plugs it in, on
    the first use, so that ``import qcgflow`` does not load it."""
    import qcgflow.session.dynamic  # noqa: F401 (it installs its functions in the port)


from qcgflow.graph import port as _port  # noqa: E402 (after _Package: it imports a submodule)

_port.set_loader(_load_session_layer)
