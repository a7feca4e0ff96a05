// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ExampleVerifier} from "./ExampleVerifier.sol";

/// @title ExampleAtomicVerifier
/// @notice Decides inside `requestProofVerification`, so the delivery that asks is also settled: a
/// proof is valid iff the owner accepted its keccak256 hash (a stand-in for an on-chain proof check).
/// Valid: the node is paid in the same transaction; invalid: the node's stake goes to the consumer.
contract ExampleAtomicVerifier is ExampleVerifier {
    event ProofChecked(
        uint32 indexed subscriptionId, uint32 indexed interval, address indexed node, bool valid
    );

    mapping(bytes32 => bool) public acceptedProofs;

    constructor(address registry) ExampleVerifier(registry) {}

    function setProofAccepted(bytes32 proofHash, bool accepted) external onlyOwner {
        acceptedProofs[proofHash] = accepted;
    }

    function _onRequest(uint32 subscriptionId, uint32 interval, address node, bytes calldata proof)
        internal
        override
    {
        bool valid = acceptedProofs[keccak256(proof)];
        emit ProofChecked(subscriptionId, interval, node, valid);
        _finalize(subscriptionId, interval, node, valid);
    }
}
