// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ExampleSubscriptionBase} from "./ExampleSubscriptionBase.sol";

/// @title ExampleLeanConsumer
/// @notice Recurring consumer that stores nothing per delivery: it only emits `OutputHashed` with
/// `keccak256(output)`, as a consumer that acts on results off-chain (or keeps just a hash) would.
/// It exists so that the cost of a delivery measures the Coordinator and the node, not the example:
/// `ExampleSubscriptionConsumer` writes every input, output and proof to fresh storage slots (about
/// 250,000 gas a delivery), which makes a burst of deliveries chain-bound at a 30M block gas limit
/// (bench/chain_burst.py, `--consumer lean`). Same creation API as `ExampleSubscriptionConsumer`.
contract ExampleLeanConsumer is ExampleSubscriptionBase {
    event OutputHashed(
        uint32 indexed subscriptionId, uint32 indexed interval, address indexed node, bytes32 outputHash
    );

    constructor(address registry, bytes memory inputs) ExampleSubscriptionBase(registry, inputs) {}

    function _receiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16,
        address node,
        bytes calldata,
        bytes calldata output,
        bytes calldata,
        bytes32,
        uint256
    ) internal override {
        emit OutputHashed(subscriptionId, interval, node, keccak256(output));
    }
}
