"""What the graph side tells every service it starts: Python tasks (``python -m
qcgflow.runner``) may run in the service's warm workers.

Light on purpose: ``qcgflow service`` reads it before the runtime starts, and importing
``localservice`` (the client, ZeroMQ) there cost a service run ~60 ms of its start.
"""

from typing import List, Sequence

from qcgflow.runner import MODULE as RUNNER_MODULE

WARM_OPTION = "--warm-modules"
# the graph API's Python tasks run one after another in the service's warm workers
SERVICE_ARGS = (WARM_OPTION, RUNNER_MODULE)


def with_warm_modules(args: Sequence[str]) -> List[str]:
    """``SERVICE_ARGS`` then ``args``, unless ``args`` name warm modules already."""
    args = [str(a) for a in args]
    if any(a == WARM_OPTION or a.startswith(WARM_OPTION + "=") for a in args):
        return args
    return list(SERVICE_ARGS) + args
