"""A container registry for tests: the Registry HTTP API v2 pull routes, served by aiohttp.

No registry image can be pulled here, so the tests serve one themselves: a small image is
built ``FROM scratch`` with a statically linked program every Debian has (``ldconfig``, so the
image really runs) and a payload layer, saved with ``docker save`` and served as a schema-2
manifest with gzip layers. The real Docker engine pulls from it (``127.0.0.0/8`` registries are
plain HTTP by default), optionally through Basic auth, at a chosen rate so progress can be
watched mid-pull.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SOURCE_TAG = "node-agent/registry-test:src"
# What the served image's entrypoint prints (``ldconfig --version``), proof that it ran.
RUN_COMMAND = ["/ldconfig", "--version"]
RUN_OUTPUT = "ldconfig"


@dataclass
class ServedImage:
    manifest: bytes
    blobs: dict[str, bytes]
    layer_bytes: int  # what Docker downloads for the layers (the config blob is not counted)

    @property
    def manifest_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_image(payload_bytes: int = 6 * 1024 * 1024) -> ServedImage:
    """Build the source image locally and turn ``docker save`` into registry blobs."""
    with tempfile.TemporaryDirectory() as workdir:
        context = Path(workdir)
        (context / "ldconfig").write_bytes(Path("/sbin/ldconfig").read_bytes())
        (context / "ldconfig").chmod(0o755)
        # Random bytes do not compress: the download is as big as the payload.
        (context / "payload.bin").write_bytes(os.urandom(payload_bytes))
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY ldconfig /ldconfig\nCOPY payload.bin /payload.bin\n"
            'ENTRYPOINT ["/ldconfig"]\n'
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", SOURCE_TAG, str(context)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        saved = subprocess.run(
            ["docker", "save", SOURCE_TAG], check=True, capture_output=True, timeout=120
        ).stdout
    subprocess.run(["docker", "rmi", "-f", SOURCE_TAG], capture_output=True, timeout=60)
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:

        def read(name: str) -> bytes:
            member = archive.extractfile(name)
            assert member is not None, name
            return member.read()

        (entry,) = json.loads(read("manifest.json"))
        config = read(entry["Config"])
        layers = [gzip.compress(read(name), compresslevel=1) for name in entry["Layers"]]
    blobs = {_sha(config): config, **{_sha(layer): layer for layer in layers}}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": _sha(config)},
            "layers": [
                {"mediaType": LAYER_TYPE, "size": len(layer), "digest": _sha(layer)}
                for layer in layers
            ],
        }
    ).encode()
    return ServedImage(manifest, blobs, sum(len(layer) for layer in layers))


@dataclass
class Registry:
    """Serves one image under any repository name and tag; counts what it was asked."""

    image: ServedImage
    username: str | None = None
    password: str | None = None
    bytes_per_second: float | None = None  # None: as fast as the socket takes it
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, authed
    port: int = 0

    def authorized(self, request: web.Request) -> bool:
        if self.username is None:
            return True
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def _challenge(self) -> web.Response:
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="node-agent-test"'},
        )

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        authed = self.authorized(request)
        self.requests.append((request.method, request.path, authed))
        if not authed:
            return self._challenge()
        return await handler(request)

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    async def manifest(self, request: web.Request) -> web.Response:
        body = self.image.manifest
        headers = {"Docker-Content-Digest": self.image.manifest_digest}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(status=200, headers=headers, content_type=MANIFEST_TYPE)
        return web.Response(body=body, headers=headers, content_type=MANIFEST_TYPE)

    async def blob(self, request: web.Request) -> web.StreamResponse:
        data = self.image.blobs.get(request.match_info["digest"])
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        response = web.StreamResponse(
            headers={
                "Content-Length": str(len(data)),
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": request.match_info["digest"],
            }
        )
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        chunk = 128 * 1024
        for offset in range(0, len(data), chunk):
            await response.write(data[offset : offset + chunk])
            if self.bytes_per_second:
                # A slow registry, so that a pull can be watched while it runs.
                await asyncio.sleep(chunk / self.bytes_per_second)
        await response.write_eof()
        return response

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        app.router.add_get("/v2/", self.ping)
        app.router.add_route("*", r"/v2/{name:.+}/manifests/{reference}", self.manifest)
        app.router.add_route("*", r"/v2/{name:.+}/blobs/{digest}", self.blob)
        return app

    def reference(self, repository: str = "acme/tiny", tag: str = "1") -> str:
        return f"127.0.0.1:{self.port}/{repository}:{tag}"


@asynccontextmanager
async def serving(registry: Registry) -> AsyncIterator[Registry]:
    server = TestServer(registry.app(), host="127.0.0.1")
    await server.start_server()
    registry.port = server.port or 0
    try:
        yield registry
    finally:
        await server.close()
