"""Secure defaults (issue 16 item 13): HTTPS with a certificate that is re-read when renewed,
the switch that puts /info, /resources and /metrics behind a key, and an installed config that
runs no image nobody here named."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_agent.api.tls import TlsCertificate
from node_agent.config import load_config
from node_agent.daemon import Daemon
from tests.conftest import unmanaged_config
from tests.support.agent import make_config, running_agent
from tests.support.service import ProtocolService
from tests.workloads.support import eventually, make_key

REPO = Path(__file__).resolve().parents[2]


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 (openssl CLI, as a provider would)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def served_certificate(port: int) -> bytes:
    """The DER certificate a new TLS connection to the node is given."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return der
    finally:
        writer.close()


def der_of(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


async def test_tls_serves_https_only_and_reloads_a_renewed_certificate(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path / "tls", "first")
    raw = unmanaged_config(
        services,
        server={"tls": {"cert_file": str(cert), "key_file": str(key), "reload_interval": 0.05}},
    )
    async with running_agent(raw, tmp_path / "state") as (daemon, url):
        port = daemon.port
        assert port is not None
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{port}/health", ssl=trusted) as resp:
                assert resp.status == 200
            # A key sent over plain HTTP never reaches a handler: the TLS socket drops it.
            with pytest.raises(aiohttp.ClientError):
                async with http.get(url + "/health") as resp:
                    await resp.read()

        # Renewed in place (as certbot does): picked up by the file watch.
        renewed, renewed_key = self_signed(tmp_path / "renewed", "second")
        renewed_der = der_of(renewed)
        renewed_key.replace(key)  # key first: a mismatched pair meanwhile is not loaded
        renewed.replace(cert)

        async def serves_renewed() -> bool:
            return await served_certificate(port) == renewed_der

        await eventually(serves_renewed, timeout=10, what="the renewed certificate")

        # A broken file keeps the working pair in service.
        cert.write_text("not a certificate")
        assert daemon.tls is not None and not daemon.tls.reload(force=True)
        assert await served_certificate(port) == renewed_der

        # SIGHUP (Daemon.reload) loads the pair again even when the config is unchanged.
        third, third_key = self_signed(tmp_path / "third", "third")
        daemon.tls.cert_file, daemon.tls.key_file = third, third_key
        await daemon.reload()
        assert await served_certificate(port) == der_of(third)


async def test_reloads_at_once_during_handshakes_leave_the_serving_context_alone(
    tmp_path: Path,
) -> None:
    """SIGHUP and the file watch may reload together while the loop makes handshakes. Loading
    a pair into the serving ``SSL_CTX`` from those threads crashed the process (OpenSSL does not
    allow it); now each reload builds a context of its own and new connections are moved to it.
    Every handshake gets one of the two valid pairs, and the serving context is the first."""
    first, first_key = self_signed(tmp_path / "first", "first")
    second, second_key = self_signed(tmp_path / "second", "second")
    tls = TlsCertificate(first, first_key)
    serving = tls.context

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    stop = threading.Event()

    def reload_again_and_again(pair: tuple[Path, Path]) -> None:
        while not stop.is_set():
            tls.cert_file, tls.key_file = pair
            tls.reload(force=True)

    threads = [
        threading.Thread(target=reload_again_and_again, args=(pair,))
        for pair in [(first, first_key), (second, second_key)]
    ]
    for thread in threads:
        thread.start()
    try:
        served = {await served_certificate(port) for _ in range(60)}
    finally:
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        server.close()
        await server.wait_closed()
    assert served <= {der_of(first), der_of(second)} and served
    assert tls.context is serving and tls.current is not serving


async def test_unreadable_certificate_stops_the_start(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    raw = unmanaged_config(services, server={"tls": {"cert_file": missing, "key_file": missing}})
    daemon = Daemon(make_config(raw), tmp_path / "state")
    with pytest.raises(Exception, match=r"server\.tls: cannot load"):
        await daemon.start()
    # What the start took before it failed is given back: its HTTP session, the job store's
    # threads (a caller that goes on, or a retry, leaks nothing).
    assert daemon._session.closed
    assert not daemon.store._writer.is_alive()


@pytest.mark.parametrize("protect", [False, True])
async def test_protect_info_puts_node_details_behind_a_key(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
    protect: bool,
) -> None:
    reader = make_key("jobs:read")
    raw = unmanaged_config(services, api_keys={"keys": [reader.entry()], "protect_info": protect})
    async with running_agent(raw, tmp_path / "state") as (_, url):
        for path in ("/info", "/resources", "/metrics"):
            async with http.get(url + path) as resp:
                if protect:
                    assert resp.status == 401, path
                    answer: dict[str, Any] = await resp.json()
                    assert answer["error"] == "API key required", answer
                else:
                    assert resp.status == 200, path
            async with http.get(url + path, headers=reader.headers) as resp:
                assert resp.status == 200, path
            bad = {"Authorization": "Bearer na_000000000000_nope"}
            async with http.get(url + path, headers=bad) as resp:
                assert resp.status == 401, path
        # Liveness stays open for load balancers and probes; Infernet's job routes unchanged.
        async with http.get(url + "/health") as resp:
            assert resp.status == 200
        async with http.get(url + "/api/jobs") as resp:
            assert resp.status == 200


def test_installed_config_runs_nothing_nobody_named() -> None:
    """What scripts/install.sh writes: no container image, no workload image allowed, the API
    on loopback until TLS or a proxy is set up, node details behind a key."""
    config = load_config(REPO / "systemd" / "config.minimal.yaml")
    assert config.containers == ()
    assert config.workloads.allowed_images == ()
    assert config.server.host == "127.0.0.1" and config.server.tls is None
    assert config.api_keys.protect_info
    assert "systemd/config.minimal.yaml" in (REPO / "scripts" / "install.sh").read_text()
