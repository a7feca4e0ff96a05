// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CallbackConsumer} from "../consumer/CallbackConsumer.sol";
import {Allowlist} from "../pattern/Allowlist.sol";
import {DeliveryRecorder} from "./DeliveryRecorder.sol";

/// @title ExampleAllowlistConsumer
/// @notice One-shot requests that only allowlisted nodes may fulfil (others revert `NodeNotAllowed`).
contract ExampleAllowlistConsumer is CallbackConsumer, Allowlist, DeliveryRecorder {
    constructor(address registry, address[] memory nodes) CallbackConsumer(registry) Allowlist(nodes) {}

    function requestCompute(string calldata containerId, bytes calldata inputs, uint16 redundancy)
        external
        returns (uint32)
    {
        return _requestCompute(containerId, inputs, redundancy, address(0), 0, address(0), address(0));
    }

    function updateAllowlist(address[] calldata nodes, bool[] calldata allowed) external onlyOwner {
        _updateAllowlist(nodes, allowed);
    }

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
        _requireAllowedNode(node);
        _record(subscriptionId, interval, Delivery(node, redundancy, input, output, proof, containerId, index));
    }
}
