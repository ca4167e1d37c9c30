"""Several calls in one runner process (issue 19): a session's bundle of short calls, a
chunk of a big map's elements. Each call is run as ``payload.run_call`` runs one: its own
result (a store record or a file) and its own error with its traceback.

::

    python -m qcgflow.runner bundle:<calls> RESULT      run_bundle (qcgflow/session/bundles.py)
    python -m qcgflow.runner CALL RESULT chunk:K:N:IT   run_chunk (qcgflow/session/fastpath.py)

Imported by the task process (runner.py) only where it runs such a job: os, pickle,
binascii, and payload and store.
"""

import os
import pickle

from qcgflow.build import store
from qcgflow.build.payload import run_call, write_value

CHUNK = "chunk:"  # a runner ITERATION argument naming several elements of a map


def chunk_argument(size: int, elements: int) -> str:
    """The runner's ITERATION argument of a map run as chunks of ``size`` of its
    ``elements`` (one service iteration per chunk: ``${it}`` is the chunk's index)."""
    return "%s%d:%d:${it}" % (CHUNK, size, elements)


def run_chunk(call_path: str, result_path: str, argument: str) -> int:
    """Run the elements of one chunk of a map, in order, each as ``run_call`` runs one
    iteration (its own result ``result.<element>.pkl`` beside ``result_path``, or its
    error); every element has its turn. Exit status 1 when one raised, else 0."""
    size, elements, index = (int(part) for part in argument[len(CHUNK):].split(":"))
    directory = os.path.dirname(result_path)
    failed = 0
    for element in range(index * size, min(elements, (index + 1) * size)):
        failed |= run_call(call_path, os.path.join(directory, "result.%d.pkl" % element),
                           element)
    return 1 if failed else 0


# --------------------------------------------------------------------------- bundles

BUNDLE = "bundle:"  # a runner CALL argument holding several calls (qcgflow/session/bundles.py)
RAISED, SKIPPED = 1, 2  # a call's outcome in a bundle's result (0: it returned a value)


def bundle_argument(members) -> str:
    """The runner's CALL argument for a bundle: ``members`` is a list of ``(job name,
    inline call argument, indices of the earlier members whose results it reads)``."""
    import binascii
    data = pickle.dumps(list(members), protocol=pickle.HIGHEST_PROTOCOL)
    return BUNDLE + binascii.b2a_base64(data, newline=False).decode("ascii")


def run_bundle(argument: str, result_path: str) -> int:
    """Run a bundle's calls in order, each as ``run_call`` runs one (its own result or
    error under ``<base>/<job>/``); a call whose predecessor in the bundle failed is
    skipped (no result: the session fails it with ``DependencyFailed``). The bundle's own
    result lists each call's outcome (0, ``RAISED``, ``SKIPPED``); exit status 0 once
    every call had its turn. A call that ends the process (``os._exit``, a crash, a
    signal) ends the bundle there: the session runs every call left without an outcome
    again, alone."""
    import binascii
    members = pickle.loads(binascii.a2b_base64(argument[len(BUNDLE):]))
    base = os.path.dirname(os.path.dirname(os.path.abspath(result_path)))
    outcomes = []
    store.keep({})  # a later call reads an earlier one's result from memory
    try:
        for name, call_argument, preds in members:
            if any(outcomes[index] for index in preds):
                outcomes.append(SKIPPED)
                continue
            outcomes.append(RAISED if run_call(call_argument, os.path.join(
                base, name, "result.pkl")) else 0)
    finally:
        store.keep(None)
    write_value(result_path, outcomes)
    return 0
