// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InboxItem} from "../Types.sol";

/// @notice Inbox ABI (SDK-identical): outputs stored on-chain for lazy subscriptions.
interface IInbox {
    event NewInboxItem(bytes32 indexed containerId, address indexed node, uint256 index);

    error NotCoordinator();

    function write(bytes32 containerId, bytes memory input, bytes memory output, bytes memory proof)
        external
        returns (uint256);
    function writeViaCoordinator(
        bytes32 containerId,
        address node,
        uint32 subscriptionId,
        uint32 interval,
        bytes memory input,
        bytes memory output,
        bytes memory proof
    ) external returns (uint256);
    function read(bytes32 containerId, address node, uint256 index) external view returns (InboxItem memory);
    function items(bytes32 containerId, address node, uint256 index)
        external
        view
        returns (
            uint32 timestamp,
            uint32 subscriptionId,
            uint32 interval,
            bytes memory input,
            bytes memory output,
            bytes memory proof
        );
}
