// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ExampleSubscriptionBase} from "./ExampleSubscriptionBase.sol";
import {DeliveryRecorder} from "./DeliveryRecorder.sol";

/// @title ExampleSubscriptionConsumer
/// @notice Recurring consumer for demos (see `ExampleSubscriptionBase`): every delivery is recorded
/// per interval — node, input, output and proof in storage, so tests can read them back (~250,000
/// gas a delivery; `ExampleLeanConsumer` is the cheap kind).
contract ExampleSubscriptionConsumer is ExampleSubscriptionBase, DeliveryRecorder {
    constructor(address registry, bytes memory inputs) ExampleSubscriptionBase(registry, inputs) {}

    function _receiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof,
        bytes32 containerId,
        uint256 index
    ) internal override {
        _record(subscriptionId, interval, Delivery(node, redundancy, input, output, proof, containerId, index));
    }
}
