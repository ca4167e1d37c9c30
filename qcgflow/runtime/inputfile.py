"""Bounded reading of the files a user names: requests files and workflow files.

``read_text(path, limit)`` guarantees that reading ends, in bounded memory, whatever
``path`` is:

* a regular file is read only when it holds at most ``limit`` bytes (checked before
  reading, and again while reading: a file that grows is cut at ``limit`` + 1 and refused);
* a FIFO or pipe (``<(command)``, ``/dev/stdin`` from a pipe) is opened without blocking
  (no writer: refused at once instead of waiting forever) and read with the same limit and
  an idle timeout of ``PIPE_IDLE`` seconds;
* anything else (``/dev/zero`` and other character devices, directories, sockets) is
  refused: such files can be endless.

Every refusal is ``InputFileError`` with a one-line reason (the caller adds the file name).
"""

import os
import select
import stat
import time

MiB = 1024 * 1024
REQUESTS_LIMIT = 256 * MiB  # a requests file: 100,000 jobs in one submit are ~30 MiB
WORKFLOW_LIMIT = 64 * MiB  # a workflow file
PIPE_IDLE = 30.0  # s without a byte from a FIFO / pipe before giving up
_CHUNK = 1 * MiB


class InputFileError(ValueError):
    """The file cannot be read safely; ``str()`` is a one-line reason without the name."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _too_big(limit: int) -> InputFileError:
    return InputFileError("larger than the limit of %d MiB for this kind of file"
                          % (limit // MiB) if limit >= MiB else
                          "larger than the limit of %d bytes for this kind of file" % limit)


def read_bytes(path: str, limit: int, pipe_idle: float = PIPE_IDLE) -> bytes:
    """The bytes of ``path`` (see the module's guarantees).

    Raises:
        OSError: it cannot be opened (missing, no permission).
        InputFileError: not a regular file or a FIFO, more than ``limit`` bytes, or a FIFO
            without a writer / silent for ``pipe_idle`` seconds.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if info.st_size > limit:
                raise _too_big(limit)
            os.set_blocking(fd, True)
            return _read_regular(fd, limit)
        if stat.S_ISFIFO(info.st_mode):
            return _read_pipe(fd, limit, pipe_idle)
        raise InputFileError("%s, not a regular file: refused (it may never end)"
                             % _kind(info.st_mode))
    finally:
        os.close(fd)


def read_text(path: str, limit: int, pipe_idle: float = PIPE_IDLE) -> str:
    """``read_bytes`` decoded as UTF-8 (UnicodeDecodeError as ``bytes.decode`` raises it)."""
    return read_bytes(path, limit, pipe_idle).decode("utf-8")


def _read_regular(fd: int, limit: int) -> bytes:
    parts = []
    size = 0
    while True:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
        if size > limit:  # it grew while being read
            raise _too_big(limit)


def _read_pipe(fd: int, limit: int, idle: float) -> bytes:
    parts = []
    size = 0
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    last = time.monotonic()
    while True:
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        except BlockingIOError:
            left = last + idle - time.monotonic()
            if left <= 0:
                raise InputFileError("a FIFO or pipe that sent nothing for %.0f s: refused"
                                     % idle) from None
            poller.poll(int(left * 1000) + 1)
            continue
        if not chunk:  # end of file; at once when nobody has it open for writing
            if size == 0:
                raise InputFileError("a FIFO or pipe with no writer (nothing to read)")
            return b"".join(parts)
        last = time.monotonic()
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_big(limit)
