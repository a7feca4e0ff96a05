// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ExampleVerifier} from "./ExampleVerifier.sol";

/// @title ExampleOptimisticVerifier
/// @notice Records each proof and decides later: the owner calls `resolve` (a stand-in for a dispute
/// game or an off-chain prover). Until then the node's stake and the consumer's payment stay locked;
/// after the Coordinator's one-week window anyone may settle in the node's favour there instead.
contract ExampleOptimisticVerifier is ExampleVerifier {
    error NoPendingProof();

    event ProofSubmitted(
        uint32 indexed subscriptionId, uint32 indexed interval, address indexed node, bytes proof
    );

    /// @notice keccak256(abi.encode(subscriptionId, interval, node)) => keccak256(proof); 0 = none open.
    mapping(bytes32 => bytes32) public pendingProofs;

    constructor(address registry) ExampleVerifier(registry) {}

    /// @notice Owner: judge an open proof and settle it on the Coordinator.
    function resolve(uint32 subscriptionId, uint32 interval, address node, bool valid) external onlyOwner {
        bytes32 key = keccak256(abi.encode(subscriptionId, interval, node));
        if (pendingProofs[key] == bytes32(0)) revert NoPendingProof();
        delete pendingProofs[key];
        _finalize(subscriptionId, interval, node, valid);
    }

    function _onRequest(uint32 subscriptionId, uint32 interval, address node, bytes calldata proof)
        internal
        override
    {
        // keccak256 of any input is never 0 in practice, so 0 can mean "none".
        pendingProofs[keccak256(abi.encode(subscriptionId, interval, node))] = keccak256(proof);
        emit ProofSubmitted(subscriptionId, interval, node, proof);
    }
}
