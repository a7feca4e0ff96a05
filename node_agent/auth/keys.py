"""API keys: creation, hashed storage, and the pure authorisation decision.

A key looks like ``na_<12 hex id>_<43 url-safe chars>`` (256 random bits). Only
``sha256(key)`` is stored: with that much entropy a fast hash cannot be brute-forced, and a slow
KDF (scrypt) on every request would hand attackers a cheap way to burn CPU. Hashes are compared
in constant time; the id part only selects which hash to compare against.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from node_agent.auth.config import SCOPES, ApiKeyEntry, ApiKeysConfig, Scope
from node_agent.errors import ConfigError, Forbidden, Unauthorized
from node_agent.files import write_private_json

log = structlog.get_logger(__name__)

KEY_PREFIX = "na_"
KEY_FILE_NAME = "api-keys.json"
# Compared against when the key id is unknown, so timing does not reveal which ids exist.
_DUMMY_HASH = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (with its scopes) or an anonymous Infernet-style client."""

    key_id: str | None
    name: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        return self.key_id is None


ANONYMOUS = Principal(key_id=None)


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (key id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def _key_id(token: str) -> str | None:
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, rest = token[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and rest and len(key_id) == 12 else None


READ_OR_WRITE: tuple[Scope, ...] = ("jobs:read", "jobs:write")


def is_workload_path(path: str) -> bool:
    """Orchestrator routes: jobs there belong to a key's principal, so a key is always needed."""
    return path == "/v1/jobs" or path.startswith("/v1/jobs/")


# What ``api_keys.protect_info`` closes to callers without a key (/health stays open; so do
# the status page's static files, /ui and its assets: its data comes from /ui/state).
INFO_PATHS = frozenset({"/info", "/resources", "/metrics", "/openapi.json", "/ui/state"})


def route_scope(method: str, path: str) -> Scope | tuple[Scope, ...] | None:
    """The scope a route needs (a tuple: any one of them); ``None`` for public routes
    (/health, /info, /metrics, ...). Workload routes follow the orchestrator's documented
    scopes: a ``jobs:write`` key submits and cancels but cannot list."""
    if is_workload_path(path):
        get = method.upper() in ("GET", "HEAD")
        if path == "/v1/jobs":
            return "jobs:read" if get else "jobs:write"
        if path.endswith("/cancel") and not get:
            return "jobs:write"
        return READ_OR_WRITE
    if path == "/api/jobs" or path.startswith("/api/jobs/"):
        return "jobs:read" if method.upper() in ("GET", "HEAD") else "jobs:write"
    if path == "/api/status":
        return "jobs:write"
    return None


def authorize(
    headers: Mapping[str, str],
    route_scope: Scope | tuple[Scope, ...] | None,
    now: datetime,
    *,
    keys: Mapping[str, ApiKeyEntry],
    required: bool,
) -> Principal:
    """Decide from the request headers alone; raises Unauthorized (401) or Forbidden (403).

    No key: anonymous, unless keys are required for this route. A key that is present but
    unknown, malformed, revoked or expired is always 401, even where keys are optional, so a
    misconfigured client finds out instead of silently falling back to IP-based access.
    """
    header = headers.get("Authorization")
    if header is None:
        if required and route_scope is not None:
            raise Unauthorized("API key required", {"scope": route_scope})
        return ANONYMOUS
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'")
    key_id = _key_id(token)
    entry = keys.get(key_id) if key_id is not None else None
    matches = hmac.compare_digest(hash_key(token), entry.hash if entry else _DUMMY_HASH)
    if entry is None or not matches:
        raise Unauthorized("Invalid API key")
    if entry.revoked:
        raise Unauthorized("API key revoked", {"key_id": entry.id})
    if entry.expires_at is not None and _aware(entry.expires_at) <= _aware(now):
        raise Unauthorized("API key expired", {"key_id": entry.id})
    wanted = (route_scope,) if isinstance(route_scope, str) else route_scope
    if wanted is not None and not any(scope in entry.scopes for scope in wanted):
        raise Forbidden(
            "API key lacks the scope for this route",
            {"key_id": entry.id, "scope": route_scope},
        )
    return Principal(key_id=entry.id, name=entry.name or None, scopes=frozenset(entry.scopes))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- key file ---------------------------------------------------------------------------------


def default_key_file(config: ApiKeysConfig, state_dir: Path) -> Path:
    return config.key_file or state_dir / KEY_FILE_NAME


def load_key_file(path: Path) -> list[ApiKeyEntry]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read API key file {path}: {exc}", {"path": str(path)}) from None
    try:
        return [ApiKeyEntry.model_validate(item) for item in raw.get("keys", [])]
    except (AttributeError, ValueError) as exc:
        raise ConfigError(f"API key file {path} is invalid: {exc}", {"path": str(path)}) from None


def _write_key_file(path: Path, entries: Iterable[ApiKeyEntry]) -> None:
    write_private_json(path, {"keys": [e.model_dump(mode="json") for e in entries]})


def create_key(
    path: Path,
    *,
    scopes: Iterable[Scope] = SCOPES,
    name: str = "",
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> tuple[str, ApiKeyEntry]:
    """Append a new key to the key file; returns the key (shown once) and what was stored."""
    key_id, key = new_key()
    entry = ApiKeyEntry(
        id=key_id,
        hash=hash_key(key),
        scopes=tuple(dict.fromkeys(scopes)),
        name=name,
        created_at=now or datetime.now(UTC),
        expires_at=expires_at,
    )
    _write_key_file(path, [*load_key_file(path), entry])
    return key, entry


def revoke_key(path: Path, key_id: str) -> bool:
    entries = load_key_file(path)
    if not any(e.id == key_id for e in entries):
        return False
    _write_key_file(
        path, [e.model_copy(update={"revoked": True}) if e.id == key_id else e for e in entries]
    )
    return True


# --- the authority the API dispatcher holds -------------------------------------------------------


class ApiKeyAuthority:
    """Keys from the config plus the key file; the file is re-read when it changes."""

    def __init__(self, config: ApiKeysConfig, key_file: Path | None) -> None:
        self.required = config.required
        self.protect_info = config.protect_info
        self._config_keys = {e.id: e for e in config.keys}
        self._key_file = key_file
        self._file_stamp: tuple[int, int] | None = None
        # The key file is read by ``reload()``, in a thread (the daemon does it before serving).
        self._keys: dict[str, ApiKeyEntry] = dict(self._config_keys)

    def authorize(
        self,
        headers: Mapping[str, str],
        route_scope: Scope | tuple[Scope, ...] | None,
        now: datetime,
        *,
        require: bool = False,
    ) -> Principal:
        return authorize(
            headers, route_scope, now, keys=self._keys, required=self.required or require
        )

    def reload(self) -> bool:
        """Re-read the key file if it changed (blocking: a stat, sometimes a read)."""
        if self._key_file is None:
            return False
        try:
            stat = self._key_file.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._file_stamp:
            return False
        file_keys = load_key_file(self._key_file) if stamp is not None else []
        # On an id clash the config's entry wins: the config is what the operator reviewed.
        self._keys = {**{e.id: e for e in file_keys}, **self._config_keys}
        self._file_stamp = stamp
        log.info("auth.keys_loaded", count=len(self._keys))
        return True

    def reconfigure(self, config: ApiKeysConfig, key_file: Path | None) -> None:
        """Apply a reloaded ``api_keys`` section at once; the key file is read again by the
        next :meth:`reload` (the caller runs it, in a thread)."""
        file_keys = {k: e for k, e in self._keys.items() if k not in self._config_keys}
        self.required = config.required
        self._config_keys = {e.id: e for e in config.keys}
        self._keys = {**file_keys, **self._config_keys}
        self._key_file = key_file
        self._file_stamp = (-1, -1)  # matches no file, present or not: reload() reads it

    async def watch(self, interval: float = 5.0) -> None:
        """Run as an owned task: picks up keys created or revoked while the agent runs."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.reload)
            except ConfigError as exc:
                log.error("auth.key_file_invalid", error=exc.error)


def describe(entry: ApiKeyEntry) -> dict[str, Any]:
    """What `api-key list` shows: everything but the hash."""
    data = entry.model_dump(mode="json")
    data.pop("hash", None)
    return data
