"""The node's payment rules (pure): which paid subscriptions it serves, and whether the wallets
involved can settle one delivery now.

Infernet's meanings: ``chain.wallet.payment_address`` is the node's Wallet (paid into, and where a
verifier's stake is locked); a container's ``accepted_payments`` maps a token (the zero address is
ETH) to a minimum in raw base units, a container with requirements must list the subscription's
token, and the floor is the sum over the subscription's containers. Unlike the Infernet node, the
same rules apply to delegated subscriptions, tokens match case-insensitively, and the wallets are
checked the way the Coordinator will use them (SDK v1.1 flow, ``Coordinator._settlePayment``):
the consumer's Wallet pays ``paymentAmount`` from its *unlocked* funds on the subscription owner's
allowance; with a verifier the node's Wallet locks ``paymentAmount`` as stake on the node key's
allowance, and the verifier's fee must fit in what the protocol fee (2 x FEE) leaves.

Two stages: :func:`terms_refusal` (the subscription alone: at discovery and before a delegated
subscription's reply) and :func:`funds_refusal` (the wallets as read just before computing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from node_agent.chain.subscription import ZERO_ADDRESS, Subscription
from node_agent.config import ContainerConfig

BPS = 10_000  # the Fee contract's basis points


# Refusals that can pass later with the subscription unchanged: they are about balances,
# allowances and fees, which move. The consumer tops up or approves its Wallet, the provider
# deposits into the node's Wallet or runs ``node-agent wallet approve``, the stake promised to
# the node's own proof deliveries in flight is free again once they settle, a verifier lowers
# its fee. Such a delivery is checked again (with backoff) while its interval is open. Every
# other code is a rule (terms, Wallets not from the factory, a verifier that does not take the
# token) that no waiting changes: the interval is skipped at once.
TRANSIENT = frozenset(
    {"consumer_underfunded", "consumer_allowance", "node_stake", "node_allowance", "verifier_fee"}
)


@dataclass(frozen=True)
class Refusal:
    """Why the node does not serve a paid subscription: a stable ``code`` and a sentence."""

    code: str
    message: str

    @property
    def transient(self) -> bool:
        """Funds or fees may change while the interval is open (see TRANSIENT)."""
        return self.code in TRANSIENT


def _token_name(token: str) -> str:
    return "ETH" if int(token, 16) == 0 else token


def accepted_tokens(configs: Iterable[ContainerConfig]) -> list[str]:
    """ETH, then every token some container accepts (checksummed, each once)."""
    tokens = [ZERO_ADDRESS]
    for config in configs:
        tokens += config.accepted_payments
    return list(dict.fromkeys(to_checksum_address(t) for t in tokens))


def floor(sub: Subscription, configs: Sequence[ContainerConfig]) -> int:
    """The least this node takes for one delivery of ``sub`` in its token."""
    token = sub.payment_token.lower()
    return sum(config.accepted_payments.get(token, 0) for config in configs)


def terms_refusal(
    sub: Subscription, configs: Sequence[ContainerConfig], payment_address: str | None
) -> Refusal | None:
    """The subscription's own payment terms against the node's rules (None = acceptable)."""
    requiring = [config.id for config in configs if config.accepted_payments]
    if not sub.pays:
        if sub.requires_proof:
            return Refusal(
                "verifier_without_payment",
                "a verifier needs a payment (the Coordinator reverts VerifierRequiresPayment)",
            )
        if requiring:  # a container that asks for payment is not served for free
            return Refusal("payment_required", "container requires payment: " + ",".join(requiring))
        return None
    if payment_address is None:
        return Refusal(
            "no_payment_address", "this node takes no payments (no chain.wallet.payment_address)"
        )
    token = sub.payment_token.lower()
    for config in configs:
        if config.accepted_payments and token not in config.accepted_payments:
            return Refusal(
                "token_not_accepted",
                f"token {_token_name(sub.payment_token)} not accepted by container {config.id}",
            )
    least = floor(sub, configs)
    if sub.payment_amount < least:
        return Refusal(
            "below_floor",
            f"payment {sub.payment_amount} below this node's floor {least} "
            f"({_token_name(sub.payment_token)})",
        )
    return None


@dataclass(frozen=True)
class WalletView:
    """One Wallet in the subscription's token, read at one block."""

    valid: bool  # created by the Coordinator's WalletFactory
    unlocked: int  # balance minus what is locked for open proof requests
    allowance: int  # of the spender the Coordinator will use (consumer: sub owner; node: node key)


@dataclass(frozen=True)
class Settlement:
    """What one delivery's payment depends on, read just before computing."""

    consumer: WalletView
    node: WalletView
    fee_bps: int
    verifier_supported: bool = False  # the verifier takes its fee in the token (proofs only)
    verifier_fee: int = 0


def protocol_cut(amount: int, fee_bps: int) -> int:
    """The Coordinator's protocol fee on a payment: 2 x FEE basis points, rounded down."""
    return amount * 2 * fee_bps // BPS


def funds_refusal(sub: Subscription, view: Settlement, reserved: int = 0) -> Refusal | None:
    """Whether the wallets can settle one delivery of ``sub`` now (None = yes).

    ``reserved`` is stake the node already promised in the token to its own proof deliveries
    in flight (not yet locked on-chain), so two of them cannot count the same funds.
    """
    amount, token = sub.payment_amount, _token_name(sub.payment_token)
    if not view.consumer.valid:
        return Refusal(
            "consumer_wallet_invalid", f"consumer wallet {sub.wallet} is not from the WalletFactory"
        )
    if view.consumer.unlocked < amount:
        return Refusal(
            "consumer_underfunded",
            f"consumer wallet {sub.wallet} holds {view.consumer.unlocked} unlocked {token}, "
            f"the payment is {amount}",
        )
    if view.consumer.allowance < amount:
        return Refusal(
            "consumer_allowance",
            f"consumer wallet {sub.wallet} lets {sub.owner} spend {view.consumer.allowance} "
            f"{token}, the payment is {amount}",
        )
    if not view.node.valid:
        return Refusal(
            "node_wallet_invalid", "chain.wallet.payment_address is not from the WalletFactory"
        )
    if not sub.requires_proof:
        return None
    if not view.verifier_supported:
        return Refusal("verifier_token", f"verifier {sub.verifier} does not take {token}")
    available = amount - protocol_cut(amount, view.fee_bps)
    if view.verifier_fee > available:
        return Refusal(
            "verifier_fee",
            f"verifier fee {view.verifier_fee} above the {available} left after the protocol fee",
        )
    stake = amount + reserved
    if view.node.unlocked < stake:
        return Refusal(
            "node_stake",
            f"node wallet holds {view.node.unlocked} unlocked {token}, the proof stake is "
            f"{amount}" + (f" (+{reserved} promised to deliveries in flight)" if reserved else ""),
        )
    if view.node.allowance < stake:
        return Refusal(
            "node_allowance",
            f"node wallet lets the node key lock {view.node.allowance} {token}, the proof stake "
            f"is {amount} (run: node-agent wallet approve)",
        )
    return None
