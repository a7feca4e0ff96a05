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

    // ---- errors (new: validation the SDK lacks) ----
    error ZeroFrequency();
    error ZeroRedundancy();
    error EmptyContainerId();
    error OneShotFrequencyNotOne();
    error PaymentsNotSupported();
    error DelegateNonceReused();

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
