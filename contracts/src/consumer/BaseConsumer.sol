// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IConsumer} from "../interfaces/IConsumer.sol";
import {ICoordinator} from "../interfaces/ICoordinator.sol";
import {IRegistry} from "../interfaces/IRegistry.sol";

/// @title BaseConsumer
/// @notice Shared consumer plumbing: finds the Coordinator and Inbox through the Registry, guards the
/// delivery callback, hands deliveries to `_receiveCompute`. Imports interfaces only, so consumers
/// compile on the default (non-via-IR) pipeline.
abstract contract BaseConsumer is IConsumer {
    error NotCoordinator();

    ICoordinator internal immutable _COORDINATOR;
    address internal immutable _INBOX;

    constructor(address registry) {
        _COORDINATOR = ICoordinator(IRegistry(registry).COORDINATOR());
        _INBOX = IRegistry(registry).INBOX();
    }

    /// @inheritdoc IConsumer
    function rawReceiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof,
        bytes32 containerId,
        uint256 index
    ) external {
        if (msg.sender != address(_COORDINATOR)) revert NotCoordinator();
        _receiveCompute(subscriptionId, interval, redundancy, node, input, output, proof, containerId, index);
    }

    /// @notice Override to handle a delivery. For lazy subscriptions input/output/proof are empty and
    /// (containerId, index) point at the Inbox item written by `node`.
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
    ) internal virtual {}
}
