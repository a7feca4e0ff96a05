"""TLS for the API (``server.tls``): the certificate and key are loaded again when the files
change or on SIGHUP, so a renewed certificate (certbot, an ACME client, a corporate CA) is served
without a restart and without dropping connections. Connections already open keep the
certificate they were made with.

The listening socket's ``SSLContext`` is never changed once it serves: OpenSSL does not allow an
``SSL_CTX`` to be modified while other threads use it (loading a pair into the live context from
a reload thread while the loop made handshakes with it, or from two reloads at once, crashed the
process). A reload builds a new context instead, and the live one's SNI callback (which OpenSSL
calls for every handshake, with or without a server name) moves each new connection to the
newest context."""

from __future__ import annotations

import asyncio
import ssl
import threading
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
        self._reloading = threading.Lock()  # one reload at a time: the stamp matches the pair
        self.context = self._loaded()  # at start an unreadable pair is a configuration error
        self.current = self.context  # the newest pair: what new connections are given
        self.context.sni_callback = self._to_current
        self._stamp: Stamp = self._current_stamp()

    def _current_stamp(self) -> Stamp:
        return _stamp(self.cert_file), _stamp(self.key_file)

    def _loaded(self) -> ssl.SSLContext:
        context = _new_context()
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"server.tls: cannot load {self.cert_file} / {self.key_file}: {exc}",
                {"key": "server.tls"},
            ) from None
        return context

    def _to_current(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """SNI callback of the live context (on the loop, in the handshake): the newest pair."""
        current = self.current
        if connection.context is not current:
            connection.context = current

    def reload(self, *, force: bool = False) -> bool:
        """Load the pair again if either file changed (or ``force``: SIGHUP). Blocking.

        A pair that does not load (a certificate renewed before its key, two writes; a broken
        file) keeps the old, working pair in service."""
        with self._reloading:
            stamp = self._current_stamp()
            if not force and stamp == self._stamp:
                return False
            try:
                fresh = self._loaded()
            except ConfigError as exc:
                log.error("tls.reload_failed", error=exc.error)
                return False
            self.current = fresh  # new handshakes take it; open connections keep theirs
            self._stamp = stamp
        log.info("tls.certificate_loaded", cert_file=str(self.cert_file))
        return True

    async def watch(self, interval: float) -> None:
        """Run as an owned task: picks up renewed files."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload)
