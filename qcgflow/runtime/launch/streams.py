"""A task's stdout/stderr file created only when the task writes to it (issue 19).

::

    open_output(path, lazy=True)                    the task runs, writing to fd
      path exists?   yes: opened for append (as always), nothing pending
                     no:  an unnamed file in path's directory (O_TMPFILE): no directory
                          entry, no name to create on a parallel file system's metadata server
    finish(pending)  after the process ended (before its end is reported):
      written (size > 0): linked to path (linkat through /proc/self/fd), or, should path
                          have appeared meanwhile or the link fail, its bytes appended there
      empty:              closed, nothing left behind

Where the directory's file system has no O_TMPFILE (NFS, some kernels), the file is
created at ``path`` at once and removed by ``finish`` when it is still empty: the same
files are left, at the cost of a create and an unlink per task.

Guarantees: the output is never held in memory (the task writes to a real file, gigabytes
included); once ``finish`` has returned, a non-empty output is at ``path``; an output
that already existed before the task is appended to, as an eagerly opened one is. The
caller must keep the pending file until the process and everything it started that kept
the descriptor are done, and call ``finish`` exactly once (or ``discard``).

Only outputs qcgflow names itself are lazy (a job's ``attributes.qcgflow.when_written``,
set by the compiler for its default names): a path a user gives is created at start, even
when the task prints nothing, as on upstream QCG-PilotJob.
"""

import errno
import logging
import os
from typing import List, Optional, Tuple

_log = logging.getLogger(__name__)

APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_TMPFILE = getattr(os, "O_TMPFILE", 0)
# errors that mean "this file system or kernel has no O_TMPFILE" (EISDIR: a kernel that
# does not know the flag sees O_DIRECTORY, which O_TMPFILE includes)
_NO_TMPFILE = frozenset((errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL))

STREAMS = ("stdout", "stderr")


class Pending:
    """An open output not yet at its name: ``fd`` (the caller's copy to close via
    ``finish``), ``path``, and ``named`` (the fallback: created at ``path`` already)."""

    __slots__ = ("fd", "path", "named")

    def __init__(self, fd: int, path: str, named: bool):
        self.fd, self.path, self.named = fd, path, named


def open_output(path: str, lazy: bool) -> Tuple[int, Optional[Pending]]:
    """Open ``path`` for a task's output: ``(fd, None)`` when it is at its name already,
    ``(fd, Pending)`` when ``finish`` must name or remove it. ``fd`` is close-on-exec.

    Raises:
        OSError: naming ``path`` (a missing directory, no permission), as ``open`` would.
    """
    if not lazy:
        return os.open(path, APPEND | os.O_CREAT, 0o666), None
    try:
        return os.open(path, APPEND), None  # it exists (a re-run, an earlier attempt)
    except FileNotFoundError:
        pass
    if _TMPFILE:
        try:
            # read-write: finish may have to copy it (sendfile reads it)
            fd = os.open(os.path.dirname(path) or ".",
                         _TMPFILE | os.O_RDWR | os.O_APPEND | os.O_CLOEXEC, 0o666)
            return fd, Pending(fd, path, False)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise OSError(exc.errno, exc.strerror, path) from None
    fd = os.open(path, APPEND | os.O_CREAT, 0o666)
    return fd, Pending(fd, path, True)


def finish(pending: Pending) -> None:
    """Name ``pending``'s file if it was written to, else leave no file; close it. Never
    raises (a failure is logged: the task's outcome does not depend on its output)."""
    fd, path = pending.fd, pending.path
    try:
        size = os.fstat(fd).st_size
        if pending.named:
            if size == 0 and os.path.samestat(os.stat(path), os.fstat(fd)):
                os.unlink(path)
        elif size:
            _name(fd, path)
    except OSError as exc:
        _log.warning("the output %s could not be kept: %s", path, exc)
    finally:
        os.close(fd)


def discard(pending: Pending) -> None:
    """Close a pending output whose process never started (nothing was written)."""
    if pending.named:
        try:
            os.unlink(pending.path)
        except OSError:
            pass
    os.close(pending.fd)


def finish_all(pendings: List[Pending]) -> None:
    for pending in pendings:
        finish(pending)


def _name(fd: int, path: str) -> None:
    try:
        # linkat(AT_SYMLINK_FOLLOW) on the /proc link gives the unnamed inode a name
        # without privileges; os.link only uses linkat (rather than link(2), which would
        # link the /proc symlink itself: EXDEV) when given a directory fd
        proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(str(fd), path, src_dir_fd=proc, follow_symlinks=True)
        finally:
            os.close(proc)
        return
    except FileExistsError:
        pass  # created meanwhile (another writer, a user): appended to, as an open would
    except OSError as exc:
        _log.debug("linking %s failed (%s): copying instead", path, exc)
    target = os.open(path, APPEND | os.O_CREAT, 0o666)
    try:
        offset = 0  # chunks, never the whole output in memory (sendfile refuses O_APPEND)
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            if not chunk:
                break
            os.write(target, chunk)
            offset += len(chunk)
    finally:
        os.close(target)


def open_pair(stdout: Optional[str], stderr: Optional[str], lazy,
              pendings: List[Pending]) -> Tuple[Optional[int], Optional[int]]:
    """The fds of a task's stdout and stderr (None: no file; the same fd when both name
    the same file); each lazy one's ``Pending`` is appended to ``pendings``. ``lazy`` is
    the streams created only when written (``("stdout", "stderr")``, or a subset).
    A failure closes what was opened and raises (the OSError names the path)."""
    fds: List[Optional[int]] = []
    try:
        for stream, path in (("stdout", stdout), ("stderr", stderr)):
            if not path:
                fds.append(None)
            elif stream == "stderr" and path == stdout:
                fds.append(fds[0])
            else:
                fd, pending = open_output(path, stream in lazy)
                fds.append(fd)
                if pending is not None:
                    pendings.append(pending)
    except OSError:
        owned = {pending.fd for pending in pendings}
        for fd in set(fds) - {None} - owned:
            os.close(fd)
        for pending in pendings:
            discard(pending)
        pendings.clear()
        raise
    return fds[0], fds[1]
