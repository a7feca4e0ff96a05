"""The chain side of ``node-agent wallet``: create the node's Wallet through the WalletFactory,
approve the node key as its spender, withdraw its earnings, read balances and the journal's
proof requests.

The node key is approved for the maximum, once per token: a verifier's stake is locked with
``cLock(node key, ...)``, the Coordinator gives the allowance back when a stake is unlocked, and
the Infernet node's re-approval per delivery raced with itself. Transactions are signed with the
node's key, at its pending nonce. Beside a running node a command may take a nonce the node had
signed a delivery for: the node then signs that delivery again under a fresh nonce
(``Outbox.resign``), and a command whose nonce the node used first says so instead of waiting.
``create``/``approve`` are set-up steps (the node needs a restart to use a new Wallet anyway);
``withdraw`` is meant to run beside the node. The key is never printed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import decode
from eth_utils.address import is_address, to_checksum_address

from node_agent.chain import abi
from node_agent.chain import journal as jr
from node_agent.chain.delivery import GWEI, FeePolicy
from node_agent.chain.errors import Reverted
from node_agent.chain.payments import accepted_tokens
from node_agent.chain.proofs import describe
from node_agent.chain.rpc import Rpc
from node_agent.chain.subscription import ZERO_ADDRESS
from node_agent.chain.wallet import NodeKey
from node_agent.config import Config, WalletConfig
from node_agent.errors import ConfigError, NodeAgentError

MAX_UINT256 = 2**256 - 1
RECEIPT_TIMEOUT = 120.0
NONCE_USED_POLLS = 3  # polls (0.2 s apart) that see our nonce used without our receipt


class WalletError(NodeAgentError):
    """A wallet command cannot go on (shown as one line, exit 1)."""

    status = 400


def wallet_settings(config: Config) -> WalletConfig:
    chain = config.chain
    if not chain.all_rpc_urls() or not chain.registry_address or chain.wallet is None:
        raise ConfigError(
            "wallet commands need chain.rpc_url, chain.registry_address and chain.wallet",
            {"key": "chain"},
        )
    return chain.wallet


def tokens(config: Config, extra: list[str]) -> list[str]:
    """ETH, every token some container accepts, and ``extra`` (checksummed, in that order)."""
    for token in extra:
        if not is_address(token):
            raise ConfigError(f"--token {token!r} is not an address", {"token": token})
    accepted = accepted_tokens(config.containers)
    return list(dict.fromkeys(accepted + [to_checksum_address(t) for t in extra]))


def _token_name(token: str) -> str:
    return "ETH" if token == ZERO_ADDRESS else token


class _Chain:
    """The few reads and signed transactions the wallet commands need."""

    def __init__(self, config: Config, key: NodeKey) -> None:
        self.config = config
        self.key = key
        self.rpc = Rpc(config.chain.all_rpc_urls(), timeout=config.chain.rpc_timeout)
        assert config.chain.registry_address is not None
        self.registry = to_checksum_address(config.chain.registry_address)

    async def close(self) -> None:
        await self.rpc.close()

    async def factory(self) -> str:
        (factory,) = await self.rpc.eth_call(self.registry, abi.REGISTRY_WALLET_FACTORY)
        if int(factory, 16) == 0:
            raise WalletError("the Registry has no WalletFactory (a deployment without payments)")
        return to_checksum_address(factory)

    async def is_wallet(self, address: str) -> bool:
        (valid,) = await self.rpc.eth_call(await self.factory(), abi.IS_VALID_WALLET, address)
        return bool(valid)

    async def transact(self, to: str, data: bytes) -> dict[str, Any]:
        """Sign, send and wait for one transaction from the node's key; its receipt."""
        wallet = self.config.chain.wallet
        assert wallet is not None
        cap = wallet.max_fee_per_gas_gwei
        policy = FeePolicy(
            max_fee_cap=int(cap * GWEI) if cap is not None else None,
            priority_fee=int(wallet.max_priority_fee_per_gas_gwei * GWEI),
            bump_percent=0,
            stuck_after=0,
            gas_margin_percent=20,
            max_gas_limit=wallet.max_gas_limit,
            confirmations=1,
        )
        try:
            estimate = await self.rpc.estimate_gas(
                {"from": self.key.address, "to": to, "data": data}
            )
        except Reverted as exc:
            raise WalletError(f"the transaction would revert: {exc}") from None
        _, _, base_fee = await self.rpc.head()
        max_fee, priority = policy.fees(base_fee)
        nonce = await self.rpc.nonce(self.key.address)
        raw, tx_hash = self.key.sign(
            {
                "type": 2,
                "chainId": await self.rpc.chain_id(),
                "nonce": nonce,
                "to": to,
                "data": data,
                "value": 0,
                "gas": min(estimate * 12 // 10, wallet.max_gas_limit),
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": priority,
            }
        )
        await self.rpc.send_raw(raw)
        deadline = time.monotonic() + RECEIPT_TIMEOUT
        passed = 0  # polls that found the nonce used and still no receipt of ours
        while time.monotonic() < deadline:
            receipt = await self.rpc.receipt(tx_hash)
            if receipt is not None and receipt.get("blockNumber") is not None:
                if int(receipt["status"]) != 1:
                    raise WalletError(f"transaction {tx_hash} reverted")
                return receipt
            if await self.rpc.nonce(self.key.address, "latest") > nonce:
                # Mined at our nonce but not ours (a lagging endpoint gets a few polls): the
                # running node used it first, with higher fees.
                passed += 1
                if passed >= NONCE_USED_POLLS:
                    raise WalletError(
                        f"nonce {nonce} of the node key was used by another transaction (the"
                        " running node's); nothing was sent from the Wallet: run it again"
                    )
            await asyncio.sleep(0.2)
        raise WalletError(f"transaction {tx_hash} not mined within {RECEIPT_TIMEOUT:.0f} s")

    async def approve_all(self, wallet: str, tokens: list[str]) -> list[str]:
        """Let the node key lock stakes in each token (only where its allowance is short)."""
        done = []
        for token in tokens:
            (allowed,) = await self.rpc.eth_call(
                wallet, abi.WALLET_ALLOWANCE, self.key.address, token
            )
            if int(allowed) < MAX_UINT256 // 2:
                data = abi.WALLET_APPROVE.encode_call(self.key.address, token, MAX_UINT256)
                await self.transact(wallet, data)
            done.append(token)
        return done


async def create(config: Config, key: NodeKey, tokens: list[str], *, force: bool) -> dict[str, Any]:
    chain = _Chain(config, key)
    try:
        configured = _configured(config)
        if configured is not None and not force and await chain.is_wallet(configured):
            raise WalletError(
                f"chain.wallet.payment_address {configured} is already a Wallet "
                "(wallet approve adds tokens; --force makes another)"
            )
        factory = await chain.factory()
        receipt = await chain.transact(factory, abi.CREATE_WALLET.encode_call(key.address))
        wallet = _created_wallet(receipt, factory)
        approved = await chain.approve_all(wallet, tokens)
    finally:
        await chain.close()
    return {
        "payment_address": wallet,
        "owner": key.address,
        "wallet_factory": factory,
        "approved": approved,
        "created": True,
    }


async def approve(config: Config, key: NodeKey, tokens: list[str]) -> dict[str, Any]:
    wallet = _configured(config)
    if wallet is None:
        raise WalletError("no chain.wallet.payment_address (wallet create makes one)")
    chain = _Chain(config, key)
    try:
        await _owned_wallet(chain, wallet)
        approved = await chain.approve_all(wallet, tokens)
    finally:
        await chain.close()
    return {"payment_address": wallet, "owner": key.address, "approved": approved, "created": False}


async def withdraw(config: Config, key: NodeKey, token: str, amount: int | None) -> dict[str, Any]:
    """Move ``amount`` (None: all that is unlocked) of ``token`` from the node's Wallet to its
    owner, the node key (the SDK's ``Wallet.withdraw`` pays ``msg.sender``). Checked first, so a
    withdrawal that cannot succeed sends nothing: stakes locked for open proof requests stay."""
    wallet, token = _configured(config), to_checksum_address(token)
    if wallet is None:
        raise WalletError("no chain.wallet.payment_address (wallet create makes one)")
    chain = _Chain(config, key)
    try:
        await _owned_wallet(chain, wallet)
        before = await _balance(chain, wallet, token)
        unlocked, name = int(before["unlocked"]), before["token"]
        wanted = unlocked if amount is None else amount
        if wanted <= 0 or wanted > unlocked:
            raise WalletError(
                f"cannot withdraw {wanted} {name}: {unlocked} unlocked in {wallet}"
                f" ({before['locked']} locked for open proof requests)"
            )
        receipt = await chain.transact(wallet, abi.WALLET_WITHDRAW.encode_call(token, wanted))
        after = await _balance(chain, wallet, token)
    finally:
        await chain.close()
    return {
        "payment_address": wallet,
        "token": name,
        "amount": str(wanted),
        "to": key.address,
        "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
        "block": int(receipt["blockNumber"]),
        "unlocked_after": after["unlocked"],
        "locked_after": after["locked"],
    }


async def _owned_wallet(chain: _Chain, wallet: str) -> None:
    """``wallet`` is a Wallet of the Registry's factory owned by the node key, or WalletError."""
    if not await chain.is_wallet(wallet):
        raise WalletError(f"{wallet} is not a Wallet from the Registry's WalletFactory")
    (owner,) = await chain.rpc.eth_call(wallet, abi.WALLET_OWNER)
    if to_checksum_address(owner) != chain.key.address:
        raise WalletError(
            f"{wallet} is owned by {to_checksum_address(owner)}, not the node key "
            f"{chain.key.address}: only its owner may approve or withdraw"
        )


def _configured(config: Config) -> str | None:
    wallet = config.chain.wallet
    return (
        to_checksum_address(wallet.payment_address) if wallet and wallet.payment_address else None
    )


def _created_wallet(receipt: dict[str, Any], factory: str) -> str:
    for entry in receipt.get("logs", []):
        topics = entry.get("topics") or []
        if (
            to_checksum_address(entry["address"]) == factory
            and topics
            and bytes(topics[0]) == abi.WALLET_CREATED_TOPIC
        ):
            (wallet,) = decode(["address"], bytes(entry["data"]))
            return to_checksum_address(wallet)
    raise WalletError("the WalletFactory did not report a WalletCreated event")


async def show(config: Config, key: NodeKey, tokens: list[str], state: Path) -> dict[str, Any]:
    wallet = _configured(config)
    chain = _Chain(config, key)
    report: dict[str, Any] = {"node": key.address, "payment_address": wallet}
    try:
        gas = await chain.rpc.call(
            lambda w3: w3.eth.get_balance(cast(Any, key.address)), what="balance"
        )
        report["node_eth_balance"] = str(int(gas))
        proofs = await _proofs(state)
        report["proofs"] = proofs
        for row in proofs["open_requests"]:
            if to_checksum_address(row["token"]) not in tokens:
                tokens.append(to_checksum_address(row["token"]))
        if wallet is not None:
            report["valid"] = await chain.is_wallet(wallet)
            if report["valid"]:
                (owner,) = await chain.rpc.eth_call(wallet, abi.WALLET_OWNER)
                report["owner"] = to_checksum_address(owner)
                report["balances"] = [await _balance(chain, wallet, t) for t in tokens]
    finally:
        await chain.close()
    return report


async def _balance(chain: _Chain, wallet: str, token: str) -> dict[str, Any]:
    (unlocked,) = await chain.rpc.eth_call(wallet, abi.UNLOCKED_BALANCE, token)
    (locked,) = await chain.rpc.eth_call(wallet, abi.LOCKED_BALANCE, token)
    (allowed,) = await chain.rpc.eth_call(wallet, abi.WALLET_ALLOWANCE, chain.key.address, token)
    return {
        "token": _token_name(token),
        "unlocked": str(int(unlocked)),
        "locked": str(int(locked)),
        "node_key_allowance": "max" if int(allowed) == MAX_UINT256 else str(int(allowed)),
    }


async def _proofs(state: Path) -> dict[str, Any]:
    """Proof requests from the node's journal (read alongside a running node: WAL)."""
    empty: dict[str, Any] = {"counts": {}, "open_requests": [], "recent": []}
    if not await asyncio.to_thread(state.is_file):
        return empty
    journal = jr.Journal(state)
    await journal.open()
    try:
        live = await journal.proof_requests((jr.PROOF_PENDING, jr.PROOF_OPEN))
        final = await journal.proof_requests((jr.PROOF_RELEASED, jr.PROOF_SLASHED), limit=10)
        counts = await journal.proof_counts()
    finally:
        await journal.close()
    return {
        "counts": counts,
        "open_requests": [describe(r) for r in live],
        "recent": [describe(r) for r in final],
    }
