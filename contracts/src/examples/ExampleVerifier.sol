// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IVerifier} from "../interfaces/IVerifier.sol";
import {ICoordinator} from "../interfaces/ICoordinator.sol";
import {IRegistry} from "../interfaces/IRegistry.sol";

/// @title ExampleVerifier
/// @notice Shared plumbing of the example verifiers: an owner who sets per-token fees and the wallet
/// fees are paid to (initially the owner), the Coordinator-only request hook, and the call back to
/// `finalizeProofVerification`. Subclasses decide when and how a proof is judged.
abstract contract ExampleVerifier is IVerifier {
    error NotOwner();
    error NotCoordinator();

    event TokenFeeSet(address indexed token, bool supported, uint256 fee);

    address public immutable owner;
    ICoordinator internal immutable _COORDINATOR;
    address private _feeWallet;
    mapping(address => bool) private _supported;
    mapping(address => uint256) private _fees;

    constructor(address registry) {
        owner = msg.sender;
        _feeWallet = msg.sender;
        _COORDINATOR = ICoordinator(IRegistry(registry).COORDINATOR());
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @notice Accept (or stop accepting) `token` (address(0) = ETH) at `tokenFee` per proof.
    function setTokenFee(address token, bool supported, uint256 tokenFee) external onlyOwner {
        _supported[token] = supported;
        _fees[token] = tokenFee;
        emit TokenFeeSet(token, supported, tokenFee);
    }

    function setFeeWallet(address wallet) external onlyOwner {
        _feeWallet = wallet;
    }

    /// @inheritdoc IVerifier
    function getWallet() external view returns (address) {
        return _feeWallet;
    }

    /// @inheritdoc IVerifier
    function isSupportedToken(address token) external view returns (bool) {
        return _supported[token];
    }

    /// @inheritdoc IVerifier
    function fee(address token) external view returns (uint256) {
        return _fees[token];
    }

    /// @inheritdoc IVerifier
    function requestProofVerification(
        uint32 subscriptionId,
        uint32 interval,
        address node,
        bytes calldata proof
    ) external {
        if (msg.sender != address(_COORDINATOR)) revert NotCoordinator();
        _onRequest(subscriptionId, interval, node, proof);
    }

    receive() external payable {}

    function _onRequest(uint32 subscriptionId, uint32 interval, address node, bytes calldata proof)
        internal
        virtual;

    function _finalize(uint32 subscriptionId, uint32 interval, address node, bool valid) internal {
        _COORDINATOR.finalizeProofVerification(subscriptionId, interval, node, valid);
    }
}
