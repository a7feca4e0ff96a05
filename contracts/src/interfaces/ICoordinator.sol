// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Subscription} from "../Types.sol";

/// @notice External ABI of the Coordinator. Everything consumers and nodes call is identical to
/// infernet-sdk v1.x (signatures, selectors, events, error names); consumers import this interface,
/// never the implementation, so they compile on the default (non-via-IR) pipeline.
interface ICoordinator {
    // ---- events (SDK) ----
    event SubscriptionCreated(uint32 indexed id);
    event SubscriptionCancelled(uint32 indexed id);
    event SubscriptionFulfilled(uint32 indexed id, address indexed node);
    /// @notice A proof request was settled. `active`: settled before its expiry (by the verifier);
    /// `verifier`: who finalized; `valid`: the outcome applied (true = paid to the node, false = the
    /// node's stake slashed to the consumer; always true once expired).
    event ProofVerified(
        uint32 indexed id,
        uint32 indexed interval,
        address indexed node,
        bool active,
        address verifier,
        bool valid
    );

    // ---- errors (SDK names and selectors) ----
    error SubscriptionNotFound();
    error SubscriptionNotActive();
    error IntervalMismatch();
    error SubscriptionCompleted();
    error IntervalCompleted();
    error NodeRespondedAlready();
    error NotSubscriptionOwner();
    error SignatureExpired();
    error SignerMismatch();
    error InvalidSignature();
    error Reentrancy();
    error InvalidWallet();
    error UnsupportedVerifierToken();
    error UnauthorizedVerifier();
    error ProofRequestNotFound();

    // ---- errors (new: validation the SDK lacks) ----
    error ZeroFrequency();
    error ZeroRedundancy();
    error EmptyContainerId();
    error OneShotFrequencyNotOne();
    error DelegateNonceReused();
    /// @notice A verifier on a free subscription (the SDK silently ignores it: no proof is checked).
    error VerifierRequiresPayment();
    /// @notice The verifier's fee exceeds what is left of the payment after the protocol fee (SDK: panic).
    error VerifierFeeTooHigh();

    // ---- subscriptions ----
    function id() external view returns (uint32);
    function getSubscription(uint32 subscriptionId) external view returns (Subscription memory);
    function getSubscriptionInterval(uint32 activeAt, uint32 period) external view returns (uint32);
    function createSubscription(
        string memory containerId,
        uint32 frequency,
        uint32 period,
        uint16 redundancy,
        bool lazy,
        address paymentToken,
        uint256 paymentAmount,
        address wallet,
        address verifier
    ) external returns (uint32);
    function cancelSubscription(uint32 subscriptionId) external;

    // ---- delivery bookkeeping ----
    function redundancyCount(bytes32 key) external view returns (uint16);
    function nodeResponded(bytes32 key) external view returns (bool);
    function deliverCompute(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        address nodeWallet
    ) external;

    // ---- payments and proofs ----
    /// @notice Open proof request per keccak256(abi.encode(subscriptionId, interval, node)).
    function proofRequests(bytes32 key)
        external
        view
        returns (uint32 expiry, address nodeWallet, uint256 consumerEscrowed);
    /// @notice Settles a proof request: the subscription's verifier before `expiry` (valid: the
    /// consumer's escrow goes to the node's Wallet and the node's stake is unlocked; invalid: the node's
    /// stake goes to the consumer's Wallet and the consumer's escrow is unlocked), anyone after it (always
    /// in the node's favour).
    function finalizeProofVerification(uint32 subscriptionId, uint32 interval, address node, bool valid)
        external;
    /// @notice The protocol Fee contract (created by the Coordinator; its owner is the fee recipient).
    function fee() external view returns (address);
    /// @notice The WalletFactory whose Wallets paid subscriptions and nodes must use.
    function walletFactory() external view returns (address);

    // ---- EIP-712 delegation ----
    function delegateCreatedIds(bytes32 key) external view returns (uint32);
    function maxSubscriberNonce(address subscriber) external view returns (uint32);
    function createSubscriptionDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription memory sub,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint32);
    function deliverComputeDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription memory sub,
        uint8 v,
        bytes32 r,
        bytes32 s,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        address nodeWallet
    ) external;
    function hashDelegateSubscription(uint32 nonce, uint32 expiry, Subscription memory sub)
        external
        view
        returns (bytes32);
    function domainSeparator() external view returns (bytes32);
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        );

    /// @notice The Inbox this coordinator writes lazy outputs to.
    function inbox() external view returns (address);
}
