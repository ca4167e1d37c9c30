"""Where a manager started with ``--parent ADDRESS`` alone finds its governor's secrets.

Upstream's managers join a governor with ``--parent <the governor's client address>`` and
nothing else. qcgflow's managers authenticate (docs/governor.md, "Security model"), so
every running governor also leaves an entry in a directory only its user can read::

    ~/.qcgflow/governors/<id>.<host>.<pid>.json         directory 0700, file 0600
    {"id", "host", "pid", "addresses": [client addresses], "governor_address", "secrets"}

A manager given ``--parent`` without ``--parent-secrets`` takes the newest entry that names
ADDRESS (a client address or the governor's manager endpoint) and registers at its
``governor_address`` with the token of its ``secrets`` directory. So the same user (whose
home the nodes normally share) finds the credentials by itself, and nobody else can: the
directory and the entries must be that user's and closed to others, or they are refused.
``$QCGFLOW_GOVERNORS_DIR`` replaces the directory. The governor removes its entry when it
stops; an entry of a dead governor on this host is removed by the next lookup.
"""

import json
import os
import socket
import stat
from typing import List, Optional, Tuple

from ..errors import RuntimeLayerError

ENV_DIR = "QCGFLOW_GOVERNORS_DIR"


def directory() -> str:
    """The per-user directory of governor entries."""
    return os.environ.get(ENV_DIR) or os.path.join(os.path.expanduser("~"), ".qcgflow",
                                                   "governors")


def publish(governor_id: str, addresses: List[str], governor_address: str,
            secrets_dir: str) -> Optional[str]:
    """Write this governor's entry; returns its path (None when it cannot be written: the
    managers then need ``--parent-secrets``, which the caller logs)."""
    where = directory()
    host = socket.gethostname()
    path = os.path.join(where, "%s.%s.%d.json" % (governor_id, host, os.getpid()))
    entry = {"id": governor_id, "host": host, "pid": os.getpid(),
             "addresses": [a for a in addresses if a], "governor_address": governor_address,
             "secrets": os.path.abspath(secrets_dir)}
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        _check_private(where)
        temporary = path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entry, handle)
        os.replace(temporary, path)
    except (OSError, RuntimeLayerError):
        return None
    return path


def withdraw(path: Optional[str]) -> None:
    """Remove an entry written by :func:`publish` (gone already: nothing to do)."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def resolve(address: str, secrets_dir: Optional[str]) -> Tuple[str, str]:
    """The governor endpoint and secrets directory a ``--parent ADDRESS`` manager uses.

    An entry naming ADDRESS gives both (its secrets directory unless ``secrets_dir`` is
    given); without one, ADDRESS is taken as the endpoint itself and ``secrets_dir`` is
    required.

    Raises:
        RuntimeLayerError: no secrets directory can be found (one line saying what to do),
            or the entries' directory is open to other users.
    """
    entry = _lookup(address)
    if entry is not None:
        return entry["governor_address"], secrets_dir or entry["secrets"]
    if secrets_dir:
        return address, secrets_dir
    raise RuntimeLayerError(
        "--parent %s: no governor with that address in %s (a governor started by this user "
        "writes one there) and no --parent-secrets DIR (the governor's <aux dir>/"
        "governor-secrets) was given" % (address, directory()))


def _lookup(address: str) -> Optional[dict]:
    where = directory()
    if not os.path.isdir(where):
        return None
    _check_private(where)
    wanted = _key(address)
    best, best_time = None, -1.0
    for name in os.listdir(where):
        if not name.endswith(".json"):
            continue
        path = os.path.join(where, name)
        try:
            info = os.stat(path)
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                continue  # not this user's alone: never trusted
            with open(path, encoding="utf-8") as handle:
                entry = json.load(handle)
            names = list(entry["addresses"]) + [entry["governor_address"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if wanted not in {_key(a) for a in names if isinstance(a, str)}:
            continue
        if entry.get("host") == socket.gethostname() and not _alive(entry.get("pid")):
            withdraw(path)  # that governor is gone (killed before it could remove it)
            continue
        if info.st_mtime > best_time:
            best, best_time = entry, info.st_mtime
    return best


def _check_private(where: str) -> None:
    info = os.stat(where)
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise RuntimeLayerError("%s must belong to this user and be closed to others "
                                "(chmod 700 %s)" % (where, where))


def _key(address: str) -> Tuple[str, str]:
    """``tcp://HOST:PORT`` with HOST resolved, so ``localhost`` matches ``127.0.0.1``."""
    scheme, _, rest = address.strip().partition("://")
    host, _, port = rest.rpartition(":")
    try:
        host = socket.gethostbyname(host.strip("[]")) if host else host
    except OSError:
        pass
    return ("%s://%s" % (scheme, host), port)


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
