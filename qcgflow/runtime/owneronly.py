"""Owner-only places: the default ``ipc://`` endpoints and the service's working files.

Other users on a shared node must not submit, query, subscribe or read (issue 17, class
1). The kernel enforces it, with no race and no protocol change:

* **Endpoints.** By default the request and publisher sockets are ``ipc://`` (Unix
  domain) sockets in a fresh directory made by ``tempfile.mkdtemp`` (mode 0700, under
  ``$TMPDIR`` or /tmp, ``qcgflow-ipc-<pid>-<id>-*``): connecting needs search permission
  on that directory, which only the owner (and root) has. ZeroMQ clients connect to an ``ipc://`` address like to any
  other, so the owner's clients -- upstream's QCG-PilotJob client too -- work unchanged.
  The socket names end in ``:<digits>`` because upstream's ``Manager`` appends ``:5555``
  to an address that does not match ``.*:\\d+``.
* **Files.** The service directory (``.qcgpjm-service-<id>``: journal.jsonl with the
  jobs' ``env``, service.log, the address file, jobs.report, keys, ...) is mode 0700
  and the files in it 0600: created so while the service sets up (``private_umask``),
  written so later (``private_open``), and made so once more when it closes
  (``tighten``) for anything a helper created with the default mode in between.

Tasks keep the user's umask: only the service's own files are restricted.
"""

import contextlib
import os
import shutil
import stat
from typing import Iterator, Optional

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: str) -> str:
    """Create ``path`` (and parents) if needed and make it mode 0700; returns it.

    An existing directory owned by somebody else is left as it is (chmod would fail);
    the caller's later writes then fail with a plain permission error.
    """
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    st = os.stat(path)
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created inside are owner-only (umask 077), then the
    previous umask is back (tasks started later inherit the user's own)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def private_open(path: str, mode: str = "w", encoding: Optional[str] = "utf-8"):
    """``open(path, mode)`` for writing, creating the file 0600 (truncates for ``w``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def tighten(directory: str) -> None:
    """Make ``directory`` 0700 and every file and directory under it owner-only.

    Sockets, FIFOs and links are skipped; entries that vanish meanwhile are ignored.
    """
    try:
        make_private_dir(directory)
    except OSError:
        return
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            wanted = (DIR_MODE if stat.S_ISDIR(st.st_mode)
                      else FILE_MODE if stat.S_ISREG(st.st_mode) else None)
            if wanted is not None and st.st_uid == os.geteuid() \
                    and stat.S_IMODE(st.st_mode) & ~wanted:
                with contextlib.suppress(OSError):
                    os.chmod(path, stat.S_IMODE(st.st_mode) & wanted)


_IPC_PREFIX = "qcgflow-ipc-"
_MAX_SOCKET_PATH = 107  # bytes of sockaddr_un.sun_path, less its terminating NUL
_SOCKET_NAME_ROOM = 24  # "/" + mkdtemp's 8 random characters + "/request:NNN" + margin


class IpcEndpoints:
    """A private directory holding the service's ``ipc://`` sockets, removed on close.

    Its name carries the service's pid (``qcgflow-ipc-<pid>-<random>``): a service that
    was killed (SIGKILL) cannot remove its directory, so each new one removes the
    directories of this user whose service is gone.
    """

    def __init__(self, service_tag: str):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in service_tag)[:40]
        prefix = "%s%d-%s-" % (_IPC_PREFIX, os.getpid(), safe)
        import tempfile  # noqa: PLC0415 - only with a ZeroMQ interface: not in every start
        parent = tempfile.gettempdir()
        # a socket path has at most 107 bytes (sockaddr_un.sun_path): a deep $TMPDIR (HPC
        # scratch, pytest's tmp_path) falls back to /tmp, as private there (0700 below)
        if len(os.fsencode(parent)) + len(prefix) + _SOCKET_NAME_ROOM > _MAX_SOCKET_PATH:
            parent = "/tmp"
        sweep_stale_ipc_dirs(parent)
        self.directory = tempfile.mkdtemp(prefix=prefix, dir=parent)  # 0700, O_EXCL
        self._serial = 0

    def endpoint(self, name: str) -> str:
        """A new ``ipc://`` endpoint in the directory (``<name>:<n>``, see above)."""
        self._serial += 1
        return "ipc://%s/%s:%d" % (self.directory, name, self._serial)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def sweep_stale_ipc_dirs(parent: str) -> int:
    """Remove ``qcgflow-ipc-<pid>-*`` directories of this user in ``parent`` whose pid
    is not running (a pid reused by another process keeps its directory: harmless).
    Returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(_IPC_PREFIX):
            continue
        pid_text = name[len(_IPC_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        path = os.path.join(parent, name)
        try:
            if os.lstat(path).st_uid != os.geteuid() or not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            os.kill(int(pid_text), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue  # gone meanwhile, or a process of another user: leave it
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed
