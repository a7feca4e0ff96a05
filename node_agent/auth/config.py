"""Settings for API keys (``api_keys:`` section)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

Scope = Literal["jobs:read", "jobs:write"]
SCOPES: tuple[Scope, ...] = ("jobs:read", "jobs:write")

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


class ApiKeyEntry(BaseModel):
    """A stored key: only its hash is kept, never the key itself."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    hash: str
    scopes: tuple[Scope, ...] = SCOPES
    name: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            raise ValueError("must be the 12 hex digits after 'na_' in the key")
        return value

    @field_validator("hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _HASH.match(value):
            raise ValueError("must be 'sha256:' followed by 64 lower-case hex digits")
        return value


class ApiKeysConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # False: clients without a key keep Infernet's IP-based access (a bad key is still 401).
    required: bool = False
    keys: tuple[ApiKeyEntry, ...] = ()
    # Keys created with `node-agent api-key create`; default <state_dir>/api-keys.json.
    key_file: Path | None = None
    # True: /info, /resources and /metrics need a key too (any scope); they describe the
    # node's containers, GPUs and load, which a provider may not want to show to anyone.
    protect_info: bool = False
