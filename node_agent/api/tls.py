"""TLS for the API (``server.tls``): one ``SSLContext`` for the listening socket, whose
certificate and key are loaded again when the files change or on SIGHUP, so a renewed
certificate (certbot, an ACME client, a corporate CA) is served without a restart and without
dropping connections. Connections already open keep the certificate they were made with."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import structlog

from node_agent.errors import ConfigError

log = structlog.get_logger(__name__)

Stamp = tuple[tuple[int, int] | None, tuple[int, int] | None]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _new_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class TlsCertificate:
    """The server's ``SSLContext`` and the files it came from."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = _new_context()
        self._stamp: Stamp = (None, None)
        self._load(self.context)  # at start an unreadable pair is a configuration error
        self._stamp = self._current_stamp()

    def _current_stamp(self) -> Stamp:
        return _stamp(self.cert_file), _stamp(self.key_file)

    def _load(self, context: ssl.SSLContext) -> None:
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"server.tls: cannot load {self.cert_file} / {self.key_file}: {exc}",
                {"key": "server.tls"},
            ) from None

    def reload(self, *, force: bool = False) -> bool:
        """Load the pair again if either file changed (or ``force``: SIGHUP). Blocking.

        The pair is first loaded into a scratch context: a certificate renewed before its key
        (two writes) or a broken file keeps the old, working pair in service."""
        stamp = self._current_stamp()
        if not force and stamp == self._stamp:
            return False
        try:
            self._load(_new_context())
        except ConfigError as exc:
            log.error("tls.reload_failed", error=exc.error)
            return False
        self._load(self.context)  # new handshakes use it; open connections keep theirs
        self._stamp = stamp
        log.info("tls.certificate_loaded", cert_file=str(self.cert_file))
        return True

    async def watch(self, interval: float) -> None:
        """Run as an owned task: picks up renewed files."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload)
