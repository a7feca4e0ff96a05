"""API keys: every route by (no key, bad key, revoked, expired, wrong scope, right scope)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_agent.auth.cli import (
    create_api_key_command,
    list_api_keys_command,
    revoke_api_key_command,
)
from node_agent.auth.config import ApiKeyEntry, ApiKeysConfig
from node_agent.auth.keys import (
    ApiKeyAuthority,
    authorize,
    create_key,
    hash_key,
    revoke_key,
    route_scope,
)
from node_agent.errors import Forbidden, Unauthorized

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# Infernet's routes (method, path) and the scope each needs.
ROUTES = [
    ("GET", "/health", None),
    ("GET", "/info", None),
    ("GET", "/resources", None),
    ("GET", "/metrics", None),
    ("POST", "/api/jobs", "jobs:write"),
    ("POST", "/api/jobs/batch", "jobs:write"),
    ("POST", "/api/jobs/stream", "jobs:write"),
    ("GET", "/api/jobs", "jobs:read"),
    ("PUT", "/api/status", "jobs:write"),
]


@pytest.fixture
def keyring(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "api-keys.json"
    reader, reader_entry = create_key(path, scopes=["jobs:read"], name="dashboard", now=NOW)
    writer, writer_entry = create_key(path, scopes=["jobs:read", "jobs:write"], now=NOW)
    revoked, revoked_entry = create_key(path, now=NOW)
    revoke_key(path, revoked_entry.id)
    expired, _ = create_key(path, expires_at=NOW - timedelta(seconds=1), now=NOW)
    keys = {e.id: e for e in json_entries(path)}
    return {
        "keys": keys,
        "reader": reader,
        "writer": writer,
        "revoked": revoked,
        "expired": expired,
        "reader_id": reader_entry.id,
        "writer_id": writer_entry.id,
    }


def json_entries(path: Path) -> list[ApiKeyEntry]:
    return [ApiKeyEntry.model_validate(e) for e in json.loads(path.read_text())["keys"]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_route_scopes(method: str, path: str, scope: str | None) -> None:
    assert route_scope(method, path) == scope


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_every_route_by_every_kind_of_caller(
    keyring: dict[str, object], required: bool, method: str, path: str, scope: str | None
) -> None:
    keys = keyring["keys"]
    needed = route_scope(method, path)

    def check(headers: dict[str, str]) -> object:
        return authorize(headers, needed, NOW, keys=keys, required=required)  # type: ignore[arg-type]

    # no key: open unless required on a scoped route
    if required and scope is not None:
        with pytest.raises(Unauthorized) as no_key:
            check({})
        assert no_key.value.status == 401 and no_key.value.params == {"scope": scope}
    else:
        assert check({}).anonymous  # type: ignore[attr-defined]
    # bad, revoked, expired keys: 401 everywhere, even where keys are optional
    for bad, message in (
        ("na_000000000000_nope", "Invalid API key"),
        (str(keyring["writer"])[:-1] + "x", "Invalid API key"),
        ("jg_not_ours", "Invalid API key"),
        (str(keyring["revoked"]), "API key revoked"),
        (str(keyring["expired"]), "API key expired"),
    ):
        with pytest.raises(Unauthorized) as info:
            check(bearer(bad))
        assert info.value.error == message
    # wrong scope: 403 only where the route needs jobs:write
    if scope == "jobs:write":
        with pytest.raises(Forbidden) as forbidden:
            check(bearer(str(keyring["reader"])))
        assert forbidden.value.status == 403
        assert forbidden.value.params == {"key_id": keyring["reader_id"], "scope": "jobs:write"}
    else:
        assert check(bearer(str(keyring["reader"]))).key_id == keyring["reader_id"]  # type: ignore[attr-defined]
    # right scope
    principal = check(bearer(str(keyring["writer"])))
    assert principal.key_id == keyring["writer_id"]  # type: ignore[attr-defined]


def test_malformed_header_is_401_and_errors_never_echo_the_key() -> None:
    with pytest.raises(Unauthorized, match="Malformed"):
        authorize({"Authorization": "Basic dXNlcjpwYXNz"}, None, NOW, keys={}, required=False)
    with pytest.raises(Unauthorized, match="Malformed"):
        authorize({"Authorization": "Bearer "}, "jobs:read", NOW, keys={}, required=False)
    secret = "na_0123456789ab_secretsecretsecret"
    with pytest.raises(Unauthorized) as info:
        authorize(bearer(secret), "jobs:read", NOW, keys={}, required=True)
    assert secret not in json.dumps(info.value.to_wire())


def test_key_file_stores_only_hashes_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "api-keys.json"
    key, entry = create_key(path, now=NOW)
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert key.startswith(f"na_{entry.id}_") and len(key) >= 50


def test_authority_merges_config_keys_and_reloads_revocations(tmp_path: Path) -> None:
    path = tmp_path / "api-keys.json"
    config_key = "na_aaaaaaaaaaaa_" + "k" * 43
    config = ApiKeysConfig(
        required=True,
        keys=(ApiKeyEntry(id="aaaaaaaaaaaa", hash=hash_key(config_key), scopes=("jobs:read",)),),
    )
    authority = ApiKeyAuthority(config, path)
    assert authority.authorize(bearer(config_key), "jobs:read", NOW).key_id == "aaaaaaaaaaaa"
    key, entry = create_key(path, now=NOW)
    assert authority.reload() is True
    assert authority.authorize(bearer(key), "jobs:write", NOW).key_id == entry.id
    revoke_key(path, entry.id)
    authority.reload()
    with pytest.raises(Unauthorized, match="revoked"):
        authority.authorize(bearer(key), "jobs:write", NOW)
    assert authority.reload() is False  # unchanged file: no re-read


def test_cli_prints_the_key_once_and_lists_without_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    out = io.StringIO()
    assert (
        create_api_key_command(path, scopes=["jobs:read"], name="ops", expires_days=30, out=out)
        == 0
    )
    key = out.getvalue().splitlines()[0]
    assert key.startswith("na_") and "only time" in out.getvalue()
    listing = io.StringIO()
    assert list_api_keys_command(path, json_output=True, out=listing) == 0
    (described,) = json.loads(listing.getvalue())
    assert described["name"] == "ops" and "hash" not in described
    assert key not in listing.getvalue()
    assert revoke_api_key_command(path, described["id"], out=io.StringIO()) == 0
    assert revoke_api_key_command(path, "ffffffffffff", out=io.StringIO()) == 1
    assert create_api_key_command(path, scopes=["admin"], out=io.StringIO()) == 2
    table = io.StringIO()
    list_api_keys_command(path, out=table)
    assert "yes" in table.getvalue() and described["id"] in table.getvalue()
