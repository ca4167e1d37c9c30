"""EasyVVUQ on qcgflow: a warm ``Pool`` executor and the native ``execute`` path.

::

    from qcgflow import easyvvuq as qe

    campaign.execute(pool=qe.Pool(cores=1)).collate()     # any Actions chain
    qe.execute(campaign, cores=4, model="openmpi").collate()  # the standard chain, native

Importing this package does not import easyvvuq (it is imported where a campaign is used).
See docs/easyvvuq.md.
"""

from ._worker import RunFailed
from .native import Execution, RunsFailed, execute
from .pool import Pool

__all__ = ("Pool", "execute", "Execution", "RunFailed", "RunsFailed")
