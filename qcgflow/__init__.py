"""qcgflow: Python workflows for HPC on a QCG-PilotJob-compatible pilot-job runtime.

The graph API (``task``, ``shell``, ``mpi``, ``run``, ``compile``, ...) is being built;
today the package provides the runtime (``qcgflow.runtime``) and the ``qcgflow`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
