"""``python -m qcgflow.runner CALL RESULT [IT]``: how a Python task runs as a plain job.

Loads the call file, replaces argument refs by the results of the predecessors (their
result files), runs the function and writes the result file. Exit status: 0 success, 1 the
function raised (the result file holds the exception and its traceback), 2 bad usage.
With ``QCGFLOW_RETRIES`` in the environment, each attempt is a child runner
(qcgflow/build/attempts.py).
``CALL`` may be a bundle of several small calls (``bundle:...``, a session's, run one after
the other: ``groups.run_bundle``, qcgflow/session/bundles.py), ``IT`` a chunk of a map's
elements (``chunk:SIZE:ELEMENTS:INDEX``: ``groups.run_chunk``, qcgflow/session/fastpath.py).
Imports only os, sys, time, cloudpickle and traceback (via payload). Our service calls ``main``
in a persistent worker, once per task (runtime/launch/taskworker.py; the graph side names
this module to the service: ``--warm-modules``, session/localservice.py): it keeps no state
between calls but the loaded call file (``payload._cached_call``; each task still
unpickles its own arguments); elsewhere it is started once per task.
"""

import os
import sys

MODULE = "qcgflow.runner"
USAGE = "usage: python -m qcgflow.runner CALL_FILE RESULT_FILE [ITERATION]\n"


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) not in (2, 3):
        sys.stderr.write(USAGE)
        return 2
    if "QCGFLOW_RETRIES" in os.environ:  # a workflow file's retries: qcgflow/build/attempts.py
        from qcgflow.build.attempts import from_environment, run_attempts
        asked = from_environment()
        if asked is not None:
            return run_attempts(args, *asked)
    if args[0].startswith("bundle:"):  # several calls (qcgflow/session/bundles.py)
        from qcgflow.build.groups import run_bundle
        return run_bundle(args[0], args[1])
    if len(args) == 3 and args[2].startswith("chunk:"):  # several elements of a map
        from qcgflow.build.groups import run_chunk
        return run_chunk(args[0], args[1], args[2])
    from qcgflow.build.payload import run_call
    return run_call(args[0], args[1], args[2] if len(args) == 3 else None)


if __name__ == "__main__":
    sys.exit(main())
