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

Still, every task would create two unnamed files (an inode each: ~30-50 us of CPU on
this VM's ext4, a metadata server's round trip on a parallel file system). A persistent
worker (taskworker.py) and the service's local launcher (local.py) keep the empty ones
instead (``Spares``) and give the next task on the same file system a new open file
description of one (``task_copy``), never their own: a file is kept only when the kernel
grants a write lease on it (``sole_writer``), which it does only when no other open file
description can write to it, so a process the last task left running with its stdout can
never write into the next task's. Where leases are not available, nothing is kept.

Only outputs qcgflow names itself are lazy (a job's ``attributes.qcgflow.when_written``,
set by the compiler for its default names): a path a user gives is created at start, even
when the task prints nothing, as on upstream QCG-PilotJob.
"""

import contextlib
import errno
import fcntl
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

    __slots__ = ("fd", "path", "named", "shared")

    def __init__(self, fd: int, path: str, named: bool):
        self.fd, self.path, self.named = fd, path, named
        self.shared = True  # the task got a copy of fd's description (False: task_copy)


_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)  # Linux's value (Python < 3.9 lacks it)


class Spares:
    """Empty unnamed output files kept for the next tasks (at most ``limit``). ``lock``:
    where several threads use it (the service's spawner threads take, its event loop
    keeps); a worker runs one task at a time and needs none."""

    def __init__(self, limit: int = 4, lock=None):
        self.limit = limit
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._files: List[Tuple[int, int]] = []  # (st_dev of the file system, fd)

    def take(self, directory: str) -> Optional[int]:
        """A kept file on ``directory``'s file system (None: none, or ``directory`` is
        not there: then opening fails as it would without spares, naming the path)."""
        if not self._files:
            return None
        try:
            device = os.stat(directory).st_dev
        except OSError:
            return None
        with self._lock:
            for index, (dev, fd) in enumerate(self._files):
                if dev == device:
                    del self._files[index]
                    return fd
        return None

    def keep(self, pending: Pending) -> bool:
        """After its task ended (and the caller closed its copies of the task's fds): keep
        ``pending``'s file if it is unnamed, empty and nobody else can write to it. True:
        kept, the caller must not ``finish`` it; False: ``finish`` it as always."""
        if pending.named or pending.shared or not sole_writer(pending.fd):
            return False
        try:
            stat = os.fstat(pending.fd)
        except OSError:
            return False
        if stat.st_size:
            return False
        with self._lock:
            self._files.append((stat.st_dev, pending.fd))
            dropped = self._files.pop(0)[1] if len(self._files) > self.limit else None
        if dropped is not None:
            os.close(dropped)  # unnamed and empty: nothing is left behind
        return True

    def close(self) -> None:
        while self._files:
            os.close(self._files.pop()[1])


def sole_writer(fd: int) -> bool:
    """True when no open file description other than ``fd``'s can write to its file: the
    kernel grants a write lease only then (forked copies and dups of a description count
    as that description). False where leases are not available (NFS, some file systems)."""
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_WRLCK)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
    except OSError:  # a lease held would make our own reopen wait for its break: drop it
        return False
    return True


def task_copy(pending: Pending) -> int:
    """A descriptor of ``pending``'s file for a task: a new open file description of it
    (write-only, append, close-on-exec), so that what the task and the processes it
    starts hold is not the caller's (``Spares.keep`` can then tell); a copy of the
    caller's own (``dup``, never kept) where /proc cannot reopen it."""
    try:
        fd = os.open("/proc/self/fd/%d" % pending.fd, APPEND)
    except OSError:
        return os.dup(pending.fd)
    pending.shared = False
    return fd


def open_output(path: str, lazy: bool,
                spares: Optional[Spares] = None) -> Tuple[int, Optional[Pending]]:
    """Open ``path`` for a task's output: ``(fd, None)`` when it is at its name already,
    ``(fd, Pending)`` when ``finish`` must name or remove it. ``fd`` is close-on-exec.
    ``spares``: a worker's kept files, used before a new unnamed one is made.

    Raises:
        OSError: naming ``path`` (a missing directory, no permission), as ``open`` would.
    """
    if not lazy:
        return os.open(path, APPEND | os.O_CREAT, 0o666), None
    try:
        return os.open(path, APPEND), None  # it exists (a re-run, an earlier attempt)
    except FileNotFoundError:
        pass
    if spares is not None:
        fd = spares.take(os.path.dirname(path) or ".")
        if fd is not None:
            return fd, Pending(fd, path, False)
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
              pendings: List[Pending],
              spares: Optional[Spares] = None) -> Tuple[Optional[int], Optional[int]]:
    """The fds of a task's stdout and stderr (None: no file; the same fd when both name
    the same file); each lazy one's ``Pending`` is appended to ``pendings``. ``lazy`` is
    the streams created only when written (``("stdout", "stderr")``, or a subset);
    ``spares``: see ``open_output``.
    A failure closes what was opened and raises (the OSError names the path)."""
    fds: List[Optional[int]] = []
    try:
        for stream, path in (("stdout", stdout), ("stderr", stderr)):
            if not path:
                fds.append(None)
            elif stream == "stderr" and path == stdout:
                fds.append(fds[0])
            else:
                fd, pending = open_output(path, stream in lazy, spares)
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
