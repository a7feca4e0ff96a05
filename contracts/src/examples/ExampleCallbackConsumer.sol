// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CallbackConsumer} from "../consumer/CallbackConsumer.sol";
import {DeliveryRecorder} from "./DeliveryRecorder.sol";

/// @title ExampleCallbackConsumer
/// @notice One-shot requests for demos: `requestCompute` stores the inputs on-chain; deliveries are
/// recorded (interval is always 1).
contract ExampleCallbackConsumer is CallbackConsumer, DeliveryRecorder {
    constructor(address registry) CallbackConsumer(registry) {}

    function requestCompute(string calldata containerId, bytes calldata inputs, uint16 redundancy)
        external
        returns (uint32)
    {
        return _requestCompute(containerId, inputs, redundancy, address(0), 0, address(0), address(0));
    }

    /// @notice A paid one-shot request: `wallet` (a factory Wallet) must let this contract spend
    /// `paymentToken`; `verifier` (optional) checks the proof.
    function requestPaidCompute(
        string calldata containerId,
        bytes calldata inputs,
        uint16 redundancy,
        address paymentToken,
        uint256 paymentAmount,
        address wallet,
        address verifier
    ) external returns (uint32) {
        return _requestCompute(containerId, inputs, redundancy, paymentToken, paymentAmount, wallet, verifier);
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
