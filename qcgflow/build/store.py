"""Per-worker result stores: many small task results in one append-only file per process.

::

    session ── job env QCGFLOW_STORE=<host>:<base>/stores/<session id> ──> task
    task (runner, payload.write_value): a small "ok" result, on <host> only
        ── one os.write (O_APPEND) of a record ──> <dir>/<host>.<pid>
           record = key length (4 bytes) + data length (4 bytes) + key + data,
           key = "<job>/result[.<it>].pkl" (the result file's path under .qcgflow)
    anyone loading a result (the session, a dependant task, a filled command):
        the store of that run (``register`` in the session, the env variable in a task)
        ── index of the complete records read so far; a miss reads what was appended
           since (listdir + one read per store) ── still missing: the result file

Guarantees: a record is read only when complete (a writer killed mid-record leaves a tail
that is never indexed; its process's later records cannot follow it: the process is gone;
a write cut short by a full disk leaves the same tail, and the process appends its later
records to a new file).
A later record of a key replaces an earlier one (a retry). Each session writes to a
directory of its own, so a re-run in the same directory never reads an earlier run's
records (those are reused through ``qcgflow.session.cache``, which names the directory).
Errors, big results (> ``LIMIT``) and tasks on another host than the session's write a
result file as before. A store is appended by one process, and a session sets
``QCGFLOW_STORE`` only where its tasks run on its own host (not inside a Slurm allocation:
qcgflow/session/fastpath.py), so no file system has to make data appended by one host
visible to another before the writer closes the file.

Imported by every task process: only os.
"""

import os

ENV = "QCGFLOW_STORE"
DIR = "stores"  # under the run's .qcgflow directory
LIMIT = 1 << 16  # bigger results go to their own file
TIME = "time"  # ``<job>/time``: the run time put with a result
_HEADER = 8

_host = None


def host() -> str:
    global _host
    if _host is None:
        _host = os.uname().nodename
    return _host


def env_value(directory: str) -> str:
    """The value of ``QCGFLOW_STORE`` for tasks of a session whose store is ``directory``
    (on this host)."""
    return "%s:%s" % (host(), directory)


def key_of(path: str) -> str:
    """A result file's key: ``<job>/<file name>``."""
    head, name = os.path.split(path)
    return "%s/%s" % (os.path.basename(head), name)


# --------------------------------------------------------------------------- writing

_writer = None  # (directory, pid, fd) of this process
_torn = 0  # stores this process left with a torn record: its next store is a new file


def _env_directory(writing: bool = True):
    """The store directory of this task (``QCGFLOW_STORE``); for ``writing``, only on the
    session's host."""
    value = os.environ.get(ENV)
    if not value:
        return None
    where, _, directory = value.partition(":")
    return directory if directory and (not writing or where == host()) else None


def time_key(path: str) -> str:
    """The key of the run time recorded with the result ``path`` (``put(seconds=...)``)."""
    return "%s/%s" % (os.path.basename(os.path.dirname(path)), TIME)


def seconds_of(data) -> "float | None":
    """The run time in a time record's ``data`` (None: no record, or not a number)."""
    try:
        return float(data) if data is not None else None
    except ValueError:
        return None


def put(path: str, data: bytes, seconds=None) -> bool:
    """Append ``data`` as the result ``path`` to this process's store; False when there is
    no store for this task here (no ``QCGFLOW_STORE``, another host) or ``data`` is big:
    then the caller writes the file. ``seconds``: how long the call ran, recorded in the
    same write as ``<job>/time`` (a session learns which functions are short from it:
    qcgflow/session/bundles.py)."""
    global _writer, _torn
    if len(data) > LIMIT:
        return False
    directory = _env_directory()
    if directory is None:
        return False
    pid = os.getpid()
    if _writer is None or _writer[0] != directory or _writer[1] != pid:
        if _writer is not None and _writer[1] == pid:
            os.close(_writer[2])
        _writer = None
        os.makedirs(directory, exist_ok=True)
        name = "%s.%d" % (host(), pid) + (".%d" % _torn if _torn else "")
        fd = os.open(os.path.join(directory, name),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        _writer = (directory, pid, fd)
    key = key_of(path).encode("utf-8")
    record = _record(key, data)
    if seconds is not None:
        record += _record(time_key(path).encode("utf-8"), b"%.9f" % seconds)
    view = memoryview(record)
    written = 0
    try:
        while written < len(record):  # a full disk may take part of it
            written += os.write(_writer[2], view[written:])
    except OSError:
        if written:
            # A torn record: never indexed while nothing follows it, so this file takes
            # no more records (a later one would be read as the rest of this one).
            os.close(_writer[2])
            _writer = None
            _torn += 1
        return False  # the caller writes the result file
    if _kept is not None:
        _kept[key.decode("utf-8")] = data
    return True


def _record(key: bytes, data: bytes) -> bytes:
    return b"".join((len(key).to_bytes(4, "little"), len(data).to_bytes(4, "little"),
                     key, data))


_kept = None  # results this process put while a bundle runs: its later calls read them


def keep(kept) -> None:
    """``keep({})``: remember the results this process puts from now on (a bundle's calls
    read their predecessors' results in the same process, without reading its store
    back); ``keep(None)``: stop."""
    global _kept
    _kept = kept


# --------------------------------------------------------------------------- reading

class Reader:
    """The records of one store directory read so far (bytes by key)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.offsets = {}  # file name -> bytes parsed
        self.index = {}  # key -> data

    def get(self, key: str):
        data = self.index.get(key)
        if data is None:
            self.refresh()
            data = self.index.get(key)
        return data

    def refresh(self) -> None:
        """Index what the stores got since the last refresh."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            done = self.offsets.get(name, 0)
            try:
                fd = os.open(os.path.join(self.directory, name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                chunks = []
                while True:
                    chunk = os.pread(fd, 1 << 20, done + sum(map(len, chunks)))
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(fd)
            if chunks:
                self.offsets[name] = done + self._parse(b"".join(chunks))

    def _parse(self, data: bytes) -> int:
        """Index the complete records at the start of ``data``; the bytes they take."""
        at, size = 0, len(data)
        index = self.index
        while at + _HEADER <= size:
            klen = int.from_bytes(data[at:at + 4], "little")
            dlen = int.from_bytes(data[at + 4:at + 8], "little")
            end = at + _HEADER + klen + dlen
            if end > size:
                break
            start = at + _HEADER + klen
            index[data[at + _HEADER:start].decode("utf-8", "replace")] = data[start:end]
            at = end
        return at


_BY_BASE = {}  # the .qcgflow directory of sessions in this process -> their Readers
_BY_DIR = {}  # store directory (a task's QCGFLOW_STORE) -> Reader


def register(base: str, directory: str) -> Reader:
    """Results under ``base`` (a session's ``.qcgflow`` directory, as it spells it) are
    looked up in the store ``directory`` first (the session, until ``unregister``; two
    sessions of one process in one directory: both stores, the newer first)."""
    reader = Reader(directory)
    _BY_BASE[base] = [reader] + _BY_BASE.get(base, [])
    return reader


def unregister(base: str, directory: str) -> None:
    left = [r for r in _BY_BASE.get(base, ()) if r.directory != directory]
    if left:
        _BY_BASE[base] = left
    else:
        _BY_BASE.pop(base, None)


def held(base: str, path: str):
    """``(data, store name)`` of the result ``path`` in a store registered for ``base``
    (the session's), or ``(None, None)``."""
    key = key_of(path)
    for reader in _BY_BASE.get(base, ()):
        data = reader.get(key)
        if data is not None:
            return data, os.path.basename(reader.directory)
    return None, None


def peek(base: str, path: str):
    """The data of ``path`` if a store registered for ``base`` has indexed it already
    (None: not read so far; nothing is read here)."""
    key = key_of(path)
    for reader in _BY_BASE.get(base, ()):
        data = reader.index.get(key)
        if data is not None:
            return data
    return None


def read_from(base: str, name: str, path: str):
    """The result ``path`` in the store ``name`` of ``base`` (any session's), or None."""
    return Reader(os.path.join(base, DIR, name)).get(key_of(path))


def lookup(path: str):
    """The stored data of the result file ``path``, or None (then read the file)."""
    if _kept:
        data = _kept.get(key_of(path))
        if data is not None:
            return data
    if _BY_BASE:  # a session's process
        readers = _BY_BASE.get(os.path.dirname(os.path.dirname(path)))
        if readers:
            return held(os.path.dirname(os.path.dirname(path)), path)[0]
    directory = _env_directory(writing=False) if ENV in os.environ else None
    if directory is None:
        return None
    reader = _BY_DIR.get(directory)
    if reader is None:
        if len(_BY_DIR) >= 8:
            _BY_DIR.clear()
        reader = _BY_DIR[directory] = Reader(directory)
    return reader.get(key_of(path))



