"""The node's signing key: inline, from env/file (config SecretRef) or an encrypted keystore.

The key never leaves this object: no repr, no logging, only the address is shown.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import rlp
from coincurve import PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak

from node_agent.config import WalletConfig
from node_agent.errors import ConfigError


class NodeKey:
    def __init__(self, account: LocalAccount) -> None:
        self._account = account
        self._signer = PrivateKey(bytes(account.key))
        self.address: str = account.address

    def __repr__(self) -> str:
        return f"NodeKey(address={self.address})"

    def sign(self, tx: dict[str, Any]) -> tuple[bytes, str]:
        """Signed raw transaction and its 0x-hash."""
        if set(tx) == _DYNAMIC_FEE_FIELDS and tx["type"] == 2:
            return self._sign_dynamic_fee(tx)
        signed = self._account.sign_transaction(tx)
        return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()

    def _sign_dynamic_fee(self, tx: dict[str, Any]) -> tuple[bytes, str]:
        """An EIP-1559 transaction without access list, RLP-encoded and signed directly.

        Why: ``sign_transaction`` spends ~1 ms on validating and formatting the dict, three
        times the signature itself; a burst signs a thousand deliveries on the event loop. The
        fields and their order are EIP-1559's; the tests check the bytes against eth-account.
        """
        fields = [
            tx["chainId"],
            tx["nonce"],
            tx["maxPriorityFeePerGas"],
            tx["maxFeePerGas"],
            tx["gas"],
            to_canonical_address(tx["to"]),
            tx["value"],
            bytes(tx["data"]),
            [],  # access list
        ]
        # r || s || recovery id, s low (libsecp256k1 normalises), as eth-keys does with it
        signature = self._signer.sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
        raw = b"\x02" + rlp.encode([*fields, signature[64], r, s])
        return raw, "0x" + keccak(raw).hex()


_DYNAMIC_FEE_FIELDS = frozenset(
    {
        "type",
        "chainId",
        "nonce",
        "to",
        "data",
        "value",
        "gas",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
    }
)


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
