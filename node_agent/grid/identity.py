"""Stable node identity in the state directory, so registration is idempotent.

The identity is created once and never changes; the orchestrator keys registration on it and
returns the same ``node_id`` for it, so retries and restarts never create duplicate nodes.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from node_agent.errors import ConfigError
from node_agent.files import write_private_json

FILE_NAME = "grid-identity.json"


@dataclass(frozen=True)
class NodeIdentity:
    identity: str
    node_id: str | None = None


class IdentityStore:
    """Reads and writes ``grid-identity.json`` (blocking: call through a thread)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def load_or_create(self) -> NodeIdentity:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            identity = NodeIdentity(identity="node_" + secrets.token_hex(16))
            self._write(identity)
            return identity
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the node identity {self.path}: {exc}", {"path": str(self.path)}
            ) from None
        return NodeIdentity(identity=str(data["identity"]), node_id=data.get("node_id"))

    def save_node_id(self, node_id: str) -> NodeIdentity:
        current = self.load_or_create()
        updated = NodeIdentity(identity=current.identity, node_id=node_id)
        if updated != current:
            self._write(updated)
        return updated

    def _write(self, identity: NodeIdentity) -> None:
        write_private_json(self.path, {"identity": identity.identity, "node_id": identity.node_id})
