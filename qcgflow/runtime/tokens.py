"""Random identifiers (run tokens, the ``${uniq}`` variable) without the ``uuid`` module,
whose import also imports ``platform``: ~2 ms of every service start, for one call."""

import os


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``: 32 lower-case hex digits of a random version-4 UUID (122
    random bits from ``os.urandom``, the version and variant bits set as RFC 4122 says)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 4122
    return raw.hex()
