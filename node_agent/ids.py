"""Cheap unguessable ids: UUID4s cut from a buffer of OS randomness.

``uuid.uuid4()`` makes one ``getrandom`` system call per id, which showed up at ~5 % of the
agent's CPU under load; reading 4 KiB at a time keeps the same quality for a 256th of the calls.
"""

from __future__ import annotations

import itertools
import os

_BUFFER_BYTES = 4096


class IdSource:
    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def uuid4(self) -> str:
        if self._offset + 16 > len(self._buffer):
            self._buffer = os.urandom(_BUFFER_BYTES)
            self._offset = 0
        raw = bytearray(self._buffer[self._offset : self._offset + 16])
        self._offset += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ids = IdSource()
new_job_id = _ids.uuid4

_request_prefix = os.urandom(4).hex()
_request_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run; only for correlating log lines, so it need not be secret."""
    return f"{_request_prefix}-{next(_request_counter):x}"
