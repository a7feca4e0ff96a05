// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice A compute subscription. Field order and types are those of infernet-sdk v1.x: they are
/// part of the EIP-712 `Subscription` type that infernet-client signs, so they must never change.
struct Subscription {
    address owner;
    uint32 activeAt;
    uint32 period;
    uint32 frequency;
    uint16 redundancy;
    bytes32 containerId;
    bool lazy;
    address verifier;
    uint256 paymentAmount;
    address paymentToken;
    address wallet;
}

/// @notice An output stored in the Inbox (lazy subscriptions or direct writes); SDK layout.
struct InboxItem {
    uint32 timestamp;
    uint32 subscriptionId;
    uint32 interval;
    bytes input;
    bytes output;
    bytes proof;
}

/// @notice An open proof verification (SDK layout, 2 slots): the node's Wallet holds the node's stake
/// (`paymentAmount`) locked, the consumer's Wallet holds `consumerEscrowed` locked for the node. Stored
/// under keccak256(abi.encode(subscriptionId, interval, node)); `expiry == 0` means none.
struct ProofRequest {
    uint32 expiry;
    address nodeWallet;
    uint256 consumerEscrowed;
}

/// @notice One row of `Reader.readStatusBatch`: everything a node needs to decide what it can deliver.
/// `currentInterval` is 0 when the subscription is missing, cancelled or not yet active.
struct SubscriptionStatus {
    uint32 subscriptionId;
    Subscription sub;
    uint32 currentInterval;
    uint16 redundancyCount;
    bool nodeResponded;
}
