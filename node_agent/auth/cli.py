"""Command-line helpers for API keys (``node-agent api-key create|revoke|list``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO, cast

from node_agent.auth.config import SCOPES, Scope
from node_agent.auth.keys import create_key, describe, load_key_file, revoke_key


def create_api_key_command(
    key_file: Path,
    *,
    scopes: Sequence[str] = SCOPES,
    name: str = "",
    expires_days: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Create a key and print it once; only its hash is written to ``key_file``."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        print(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}", file=out)
        return 2
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    key, entry = create_key(
        key_file, scopes=cast(Sequence[Scope], scopes), name=name, expires_at=expires_at, now=now
    )
    print(key, file=out)
    print(
        f"# key id {entry.id}, scopes {','.join(entry.scopes)}"
        + (f", expires {expires_at.isoformat()}" if expires_at else "")
        + f". Stored hashed in {key_file}; this is the only time the key is shown.",
        file=out,
    )
    return 0


def revoke_api_key_command(key_file: Path, key_id: str, *, out: TextIO = sys.stdout) -> int:
    if revoke_key(key_file, key_id):
        print(f"revoked {key_id}", file=out)
        return 0
    print(f"no key with id {key_id} in {key_file}", file=out)
    return 1


def list_api_keys_command(
    key_file: Path, *, json_output: bool = False, out: TextIO = sys.stdout
) -> int:
    entries = [describe(e) for e in load_key_file(key_file)]
    if json_output:
        print(json.dumps(entries, indent=2), file=out)
        return 0
    print(f"{'ID':<14}{'NAME':<20}{'SCOPES':<24}{'EXPIRES':<27}REVOKED", file=out)
    for e in entries:
        print(
            f"{e['id']:<14}{(e['name'] or '-'):<20}{','.join(e['scopes']):<24}"
            f"{(e['expires_at'] or '-'):<27}{'yes' if e['revoked'] else 'no'}",
            file=out,
        )
    return 0
