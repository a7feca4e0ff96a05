// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InboxItem} from "./Types.sol";
import {IInbox} from "./interfaces/IInbox.sol";

/// @title Inbox
/// @notice On-chain store of outputs, keyed by container hash and node. The Coordinator writes lazy
/// deliveries here (with subscription id and interval); anyone may write directly (id/interval 0),
/// so readers must check the node and subscription of what they read.
contract Inbox is IInbox {
    address public immutable COORDINATOR;

    /// @inheritdoc IInbox
    mapping(bytes32 => mapping(address => InboxItem[])) public items;

    constructor(address coordinator) {
        COORDINATOR = coordinator;
    }

    /// @inheritdoc IInbox
    function write(bytes32 containerId, bytes memory input, bytes memory output, bytes memory proof)
        external
        returns (uint256)
    {
        return _write(containerId, msg.sender, 0, 0, input, output, proof);
    }

    /// @inheritdoc IInbox
    function writeViaCoordinator(
        bytes32 containerId,
        address node,
        uint32 subscriptionId,
        uint32 interval,
        bytes memory input,
        bytes memory output,
        bytes memory proof
    ) external returns (uint256) {
        if (msg.sender != COORDINATOR) revert NotCoordinator();
        return _write(containerId, node, subscriptionId, interval, input, output, proof);
    }

    /// @inheritdoc IInbox
    function read(bytes32 containerId, address node, uint256 index) external view returns (InboxItem memory) {
        return items[containerId][node][index];
    }

    function _write(
        bytes32 containerId,
        address node,
        uint32 subscriptionId,
        uint32 interval,
        bytes memory input,
        bytes memory output,
        bytes memory proof
    ) private returns (uint256 index) {
        InboxItem[] storage list = items[containerId][node];
        index = list.length;
        list.push(InboxItem(uint32(block.timestamp), subscriptionId, interval, input, output, proof));
        emit NewInboxItem(containerId, node, index);
    }
}
