"""The node's signing key: inline, from env/file (config SecretRef) or an encrypted keystore.

The key never leaves this object: no repr, no logging, only the address is shown.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from node_agent.config import WalletConfig
from node_agent.errors import ConfigError


class NodeKey:
    def __init__(self, account: LocalAccount) -> None:
        self._account = account
        self.address: str = account.address

    def __repr__(self) -> str:
        return f"NodeKey(address={self.address})"

    def sign(self, tx: dict[str, Any]) -> tuple[bytes, str]:
        """Signed raw transaction and its 0x-hash."""
        signed = self._account.sign_transaction(tx)
        return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()


def key_from_config(wallet: WalletConfig) -> NodeKey:
    if wallet.private_key is not None:
        secret = wallet.private_key.get_secret_value().strip()
        key = secret if secret.startswith("0x") else "0x" + secret
        try:
            return NodeKey(Account.from_key(key))
        except (ValueError, TypeError):
            raise ConfigError(
                "chain.wallet.private_key: not a valid private key",
                {"key": "chain.wallet.private_key"},
            ) from None
    if wallet.keystore is None:
        raise ConfigError("chain.wallet: no private_key or keystore", {"key": "chain.wallet"})
    try:
        keystore = json.loads(wallet.keystore.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"chain.wallet.keystore: cannot read {wallet.keystore}: {exc}",
            {"key": "chain.wallet.keystore"},
        ) from None
    password = wallet.keystore_password.get_secret_value() if wallet.keystore_password else ""
    try:
        return NodeKey(Account.from_key(Account.decrypt(keystore, password)))
    except (ValueError, TypeError):
        raise ConfigError(
            "chain.wallet.keystore: cannot decrypt (wrong password?)",
            {"key": "chain.wallet.keystore_password"},
        ) from None


async def load_key(wallet: WalletConfig) -> NodeKey:
    """Load the key off the event loop (keystore decryption is deliberately slow: scrypt)."""
    return await asyncio.get_running_loop().run_in_executor(None, key_from_config, wallet)
