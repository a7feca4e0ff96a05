// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {BaseConsumer} from "./BaseConsumer.sol";

/// @title CallbackConsumer
/// @notice One-shot requests: frequency 1, period 0 (deliverable at once), eager output. The request's
/// inputs are kept on-chain and served to nodes through `getContainerInputs`.
abstract contract CallbackConsumer is BaseConsumer {
    mapping(uint32 => bytes) internal subscriptionInputs;

    constructor(address registry) BaseConsumer(registry) {}

    /// @notice Request one computation by `redundancy` distinct nodes; returns the subscription id.
    function _requestCompute(
        string memory containerId,
        bytes memory inputs,
        uint16 redundancy,
        address paymentToken,
        uint256 paymentAmount,
        address wallet,
        address verifier
    ) internal returns (uint32 subscriptionId) {
        subscriptionId = _COORDINATOR.createSubscription(
            containerId, 1, 0, redundancy, false, paymentToken, paymentAmount, wallet, verifier
        );
        subscriptionInputs[subscriptionId] = inputs;
    }

    /// @notice Serves the inputs stored with the request.
    function getContainerInputs(uint32 subscriptionId, uint32, uint32, address)
        external
        view
        virtual
        override
        returns (bytes memory)
    {
        return subscriptionInputs[subscriptionId];
    }
}
