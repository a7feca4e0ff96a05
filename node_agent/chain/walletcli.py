"""``node-agent wallet create | approve | withdraw | show``: the node's Infernet payment Wallet.

``create`` makes a Wallet through the Registry's WalletFactory, owned by the node's key, approves
that key as its spender for ETH and every accepted token, and prints the address to put in
``chain.wallet.payment_address``; ``approve`` adds tokens later; ``withdraw`` moves earnings (what
is not locked for open proof requests) to the Wallet's owner, the node key; ``show`` prints
balances (locked and unlocked) and the proof requests the node's journal follows. The work is in
:mod:`node_agent.chain.walletops`, imported only when the command runs (it pulls in web3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from node_agent.config import find_config_path, load_config, resolve_state_dir
from node_agent.errors import ConfigError

ETH = "0x0000000000000000000000000000000000000000"


def add_wallet_parser(sub: Any) -> None:
    wallet = sub.add_parser("wallet", help="the node's Infernet payment Wallet")
    wallet.add_argument("action", choices=("create", "approve", "withdraw", "show"))
    wallet.add_argument("--config", type=Path, help="config file (default: $INFERNET_CONFIG_PATH)")
    wallet.add_argument("--state-dir", type=Path, help="the node's state (show: proof requests)")
    wallet.add_argument(
        "--token",
        action="append",
        default=[],
        help="also approve / show this ERC-20 (repeatable; ETH and accepted_payments always);"
        " withdraw: the one token to withdraw (default ETH)",
    )
    wallet.add_argument(
        "--amount", help="withdraw: how much, in the token's smallest unit (wei), or 'all'"
    )
    wallet.add_argument(
        "--force", action="store_true", help="create: even when payment_address is a Wallet"
    )
    wallet.add_argument("--json", action="store_true", help="machine-readable output")


def wallet_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(find_config_path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc.error}", file=sys.stderr)
        return 2
    from node_agent.logging import configure_logging

    # stdout carries the result; warnings (an RPC endpoint failing over) go to stderr.
    configure_logging(config.log.model_copy(update={"level": "WARNING"}), stream=sys.stderr)
    from node_agent.chain import walletops as ops
    from node_agent.chain.errors import ChainUnavailable
    from node_agent.chain.service import STATE_FILE
    from node_agent.chain.wallet import key_from_config

    try:
        tokens = ops.tokens(config, args.token)
        key = key_from_config(ops.wallet_settings(config))
    except ConfigError as exc:
        print(f"config error: {exc.error}", file=sys.stderr)
        return 2
    if args.action == "withdraw":
        try:
            token, amount = withdrawal(args.token, args.amount)
        except ValueError as exc:
            print(f"wallet withdraw: {exc}", file=sys.stderr)
            return 2
    elif args.amount is not None:
        print("--amount is for withdraw", file=sys.stderr)
        return 2
    try:
        if args.action == "withdraw":
            result = asyncio.run(ops.withdraw(config, key, token, amount))
            print(json.dumps(result, indent=2) if args.json else render_withdrawal(result))
            return 0
        if args.action == "show":
            state = resolve_state_dir(config, args.state_dir) / STATE_FILE
            report = asyncio.run(ops.show(config, key, tokens, state))
            print(json.dumps(report, indent=2) if args.json else render_show(report))
            return 0
        if args.action == "create":
            result = asyncio.run(ops.create(config, key, tokens, force=args.force))
        else:
            result = asyncio.run(ops.approve(config, key, tokens))
    except (ops.WalletError, ChainUnavailable) as exc:
        print(f"wallet {args.action}: {exc.error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render_change(result))
    return 0


def withdrawal(tokens: list[str], amount: str | None) -> tuple[str, int | None]:
    """The token (ETH unless one --token) and amount (None: all unlocked) of a withdrawal."""
    if len(tokens) > 1:
        raise ValueError("one --token at a time")
    token = tokens[0] if tokens else ETH
    if amount is None:
        raise ValueError("--amount is required (in wei, or 'all')")
    if amount.strip().lower() == "all":
        return token, None
    try:
        value = int(amount)
    except ValueError:
        raise ValueError(f"--amount {amount!r} is not a whole number of wei or 'all'") from None
    if value <= 0:
        raise ValueError("--amount must be positive")
    return token, value


def render_withdrawal(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Withdrew {result['amount']} {_token_name(result['token'])} from"
            f" {result['payment_address']} to the node key {result['to']}",
            f"  transaction {result['tx']} (block {result['block']})",
            f"  left in the Wallet: {result['unlocked_after']} unlocked,"
            f" {result['locked_after']} locked",
        ]
    )


def render_change(result: dict[str, Any]) -> str:
    verb = "Created" if result["created"] else "Using"
    tokens = ", ".join(_token_name(t) for t in result["approved"])
    lines = [
        f"{verb} Wallet {result['payment_address']} (owner: the node key {result['owner']})",
        f"The node key may lock proof stakes in: {tokens}",
    ]
    if result["created"]:
        lines += [
            "Put this in the node's config and restart it:",
            "  chain:",
            "    wallet:",
            f'      payment_address: "{result["payment_address"]}"',
        ]
    return "\n".join(lines)


def render_show(report: dict[str, Any]) -> str:
    lines = [f"node key:        {report['node']} ({_eth(report['node_eth_balance'])} for gas)"]
    wallet = report["payment_address"]
    if wallet is None:
        lines.append("payment wallet:  none (chain.wallet.payment_address; wallet create)")
    elif not report.get("valid"):
        lines.append(f"payment wallet:  {wallet} — NOT a Wallet from the Registry's WalletFactory")
    else:
        lines.append(f"payment wallet:  {wallet} (owner {report['owner']})")
        lines.append(f"  {'token':<44} {'unlocked':>24} {'locked':>24}  node key allowance")
        for b in report["balances"]:
            lines.append(
                f"  {b['token']:<44} {b['unlocked']:>24} {b['locked']:>24}  "
                f"{b['node_key_allowance']}"
            )
    proofs = report["proofs"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(proofs["counts"].items())) or "none"
    lines.append(f"proof requests:  {counts}")
    now = time.time()
    for row in proofs["open_requests"]:
        expiry = row["expiry"]
        left = f", expires in {(expiry - now) / 3600:.1f} h" if expiry else ""
        lines.append(
            f"  {row['state']:<8} {row['subscription']} interval {row['interval']}: stake "
            f"{row['stake']} {_token_name(row['token'])}{left}"
        )
    for row in proofs["recent"]:
        lines.append(
            f"  {row['state']:<8} {row['subscription']} interval {row['interval']}: stake "
            f"{row['stake']} (finalized by {row['finalized_by']})"
        )
    return "\n".join(lines)


def _eth(wei: str) -> str:
    return f"{int(wei) / 10**18:.6g} ETH"


def _token_name(token: str) -> str:
    return "ETH" if token.lower() == ETH else token
