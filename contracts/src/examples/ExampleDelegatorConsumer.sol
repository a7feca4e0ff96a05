// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SubscriptionConsumer} from "../consumer/SubscriptionConsumer.sol";
import {Delegator} from "../pattern/Delegator.sol";
import {DeliveryRecorder} from "./DeliveryRecorder.sol";

/// @title ExampleDelegatorConsumer
/// @notice Accepts EIP-712 delegated subscriptions signed by a settable signer (e.g. a key the demo
/// or infernet-client holds). Inputs of delegated subscriptions travel off-chain, so
/// `getContainerInputs` is empty.
contract ExampleDelegatorConsumer is SubscriptionConsumer, Delegator, DeliveryRecorder {
    constructor(address registry, address signer) SubscriptionConsumer(registry) Delegator(signer) {}

    function setSigner(address signer) external onlyOwner {
        _updateSigner(signer);
    }

    function cancelSubscription(uint32 subscriptionId) external onlyOwner {
        _cancelComputeSubscription(subscriptionId);
    }

    function getContainerInputs(uint32, uint32, uint32, address) external pure override returns (bytes memory) {
        return "";
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
        _record(subscriptionId, interval, Delivery(node, redundancy, input, output, proof, containerId, index));
    }
}
