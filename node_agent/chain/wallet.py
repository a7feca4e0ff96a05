"""The node's signing key: inline, from env/file (config SecretRef) or an encrypted keystore.

The key never leaves this object: no repr, no logging, only the address is shown.
"""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from typing import Any

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
            _rlp_int(tx["chainId"]),
            _rlp_int(tx["nonce"]),
            _rlp_int(tx["maxPriorityFeePerGas"]),
            _rlp_int(tx["maxFeePerGas"]),
            _rlp_int(tx["gas"]),
            _rlp_address(tx["to"]),
            _rlp_int(tx["value"]),
            _rlp_bytes(bytes(tx["data"])),
            b"\xc0",  # the empty access list
        ]
        # r || s || recovery id, s low (libsecp256k1 normalises), as eth-keys does with it
        signature = self._signer.sign_recoverable(keccak(b"\x02" + _rlp_list(fields)), hasher=None)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
        raw = b"\x02" + _rlp_list([*fields, _rlp_int(signature[64]), _rlp_int(r), _rlp_int(s)])
        return raw, "0x" + keccak(raw).hex()


# RLP of the few shapes a transaction has (pyrlp's generic encoder was a third of signing).


def _rlp_length(length: int, short: int) -> bytes:
    if length < 56:
        return bytes([short + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([short + 55 + len(size)]) + size


def _rlp_bytes(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _rlp_length(len(value), 0x80) + value


def _rlp_int(value: int) -> bytes:
    if value < 0:
        raise ValueError("RLP integers are unsigned")
    return _rlp_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _rlp_list(encoded_items: list[bytes]) -> bytes:
    payload = b"".join(encoded_items)
    return _rlp_length(len(payload), 0xC0) + payload


@lru_cache(maxsize=256)
def _rlp_address(address: str) -> bytes:
    # the coordinator nearly always: its checks (checksum included) once
    return _rlp_bytes(to_canonical_address(address))


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
