// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ExampleOwned} from "./ExampleOwned.sol";

/// @title DeliveryRecorder
/// @notice Example-consumer helper: keeps the last delivery per (subscription, interval) and (through
/// `ExampleOwned`) an owner, so demos and tests can read back what a node delivered.
abstract contract DeliveryRecorder is ExampleOwned {
    struct Delivery {
        address node;
        uint16 redundancy;
        bytes input;
        bytes output;
        bytes proof;
        bytes32 containerId;
        uint256 index;
    }

    event OutputReceived(
        uint32 indexed subscriptionId, uint32 indexed interval, address indexed node, uint16 redundancy
    );

    /// @notice Total deliveries received (all subscriptions, all intervals).
    uint256 public deliveryCount;
    /// @notice Highest interval delivered per subscription.
    mapping(uint32 => uint32) public lastInterval;
    mapping(uint32 => mapping(uint32 => Delivery)) private _deliveries;

    /// @notice Last delivery for (subscriptionId, interval); node is 0 if none.
    function getDelivery(uint32 subscriptionId, uint32 interval) external view returns (Delivery memory) {
        return _deliveries[subscriptionId][interval];
    }

    function _record(uint32 subscriptionId, uint32 interval, Delivery memory delivery) internal {
        _deliveries[subscriptionId][interval] = delivery;
        if (interval > lastInterval[subscriptionId]) lastInterval[subscriptionId] = interval;
        deliveryCount += 1;
        emit OutputReceived(subscriptionId, interval, delivery.node, delivery.redundancy);
    }
}
