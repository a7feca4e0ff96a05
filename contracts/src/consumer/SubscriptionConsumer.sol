// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {BaseConsumer} from "./BaseConsumer.sol";

/// @title SubscriptionConsumer
/// @notice Recurring subscriptions: `frequency` intervals of `period` seconds, the first opening one
/// period after creation. Implement `getContainerInputs` to give nodes fresh inputs per interval.
abstract contract SubscriptionConsumer is BaseConsumer {
    constructor(address registry) BaseConsumer(registry) {}

    function _createComputeSubscription(
        string memory containerId,
        uint32 frequency,
        uint32 period,
        uint16 redundancy,
        bool lazy,
        address paymentToken,
        uint256 paymentAmount,
        address wallet,
        address verifier
    ) internal returns (uint32) {
        return _COORDINATOR.createSubscription(
            containerId, frequency, period, redundancy, lazy, paymentToken, paymentAmount, wallet, verifier
        );
    }

    function _cancelComputeSubscription(uint32 subscriptionId) internal {
        _COORDINATOR.cancelSubscription(subscriptionId);
    }
}
