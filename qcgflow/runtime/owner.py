"""``--owner-fd``: a service started by a client stops when that client dies.

::

    client (LocalManager, qcgflow.run's session, `qcgflow run`)
      owner_pipe() -> (r, w); the child gets r as `--owner-fd r`; the client keeps w,
      close-on-exec, and never writes to it
    service
      watch_owner(loop, r, on_gone): r becomes readable with end-of-file once every copy
      of w is closed -- the kernel closes them when the client exits for any reason,
      SIGKILL included -- and on_gone() then stops the service as SIGTERM does

A pipe rather than ``PR_SET_PDEATHSIG``: the death signal follows the *thread* that
forked (a client starting the service from a worker thread would lose it when that thread
ends), and it cannot tell an exit from an exec. Limit: a process the client forked without
exec (``multiprocessing`` with the fork method) holds a copy of w, so the service stops
only when that process ends too. ``detach`` (LocalManager cfg) starts a service without
an owner: it runs until ``finish``.
"""

import logging
import os
from typing import Callable, Tuple

from .errors import RuntimeLayerError

_log = logging.getLogger(__name__)


def owner_pipe() -> Tuple[int, int]:
    """(read end for the service, write end the client keeps); both close-on-exec."""
    return os.pipe2(os.O_CLOEXEC)


def watch_owner(loop, fd: int, on_gone: Callable[[], None]) -> None:
    """Call ``on_gone`` from ``loop`` once ``fd`` reports end-of-file (or an error).

    Raises:
        RuntimeLayerError: ``fd`` is not an open descriptor.
    """
    try:
        os.fstat(fd)
    except OSError as exc:
        raise RuntimeLayerError("--owner-fd %d: %s" % (fd, exc.strerror or exc)) from None
    os.set_inheritable(fd, False)  # tasks must not hold it (nor anything else of ours)
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            if os.read(fd, 512):
                return  # the owner never writes; bytes are ignored
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(fd)
        _log.warning("the process that started this service has ended (--owner-fd %d): "
                     "stopping", fd)
        on_gone()

    loop.add_reader(fd, readable)
