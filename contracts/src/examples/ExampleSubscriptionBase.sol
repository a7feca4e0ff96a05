// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SubscriptionConsumer} from "../consumer/SubscriptionConsumer.sol";
import {ExampleOwned} from "./ExampleOwned.sol";

/// @title ExampleSubscriptionBase
/// @notice What the example subscription consumers share, so they differ only in what a delivery
/// does: anyone may open a subscription (free or paid) through them; the owner sets the on-chain
/// inputs nodes read via `getContainerInputs` and may cancel subscriptions.
abstract contract ExampleSubscriptionBase is SubscriptionConsumer, ExampleOwned {
    bytes public containerInputs;

    constructor(address registry, bytes memory inputs) SubscriptionConsumer(registry) {
        containerInputs = inputs;
    }

    function createSubscription(
        string calldata containerId,
        uint32 frequency,
        uint32 period,
        uint16 redundancy,
        bool lazy
    ) external returns (uint32) {
        return _createComputeSubscription(
            containerId, frequency, period, redundancy, lazy, address(0), 0, address(0), address(0)
        );
    }

    /// @notice A paid subscription: `wallet` (a factory Wallet) must let this contract spend
    /// `paymentToken`; `verifier` (optional) checks each delivery's proof.
    function createPaidSubscription(
        string calldata containerId,
        uint32 frequency,
        uint32 period,
        uint16 redundancy,
        bool lazy,
        address paymentToken,
        uint256 paymentAmount,
        address wallet,
        address verifier
    ) external returns (uint32) {
        return _createComputeSubscription(
            containerId, frequency, period, redundancy, lazy, paymentToken, paymentAmount, wallet, verifier
        );
    }

    function cancelSubscription(uint32 subscriptionId) external onlyOwner {
        _cancelComputeSubscription(subscriptionId);
    }

    function setContainerInputs(bytes calldata inputs) external onlyOwner {
        containerInputs = inputs;
    }

    function getContainerInputs(uint32, uint32, uint32, address)
        external
        view
        override
        returns (bytes memory)
    {
        return containerInputs;
    }
}
