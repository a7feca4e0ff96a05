// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IDelegator} from "../interfaces/IConsumer.sol";

/// @title Delegator
/// @notice Lets a consumer accept EIP-712 delegated subscriptions signed off-chain by `getSigner()`.
abstract contract Delegator is IDelegator {
    address private _signer;

    constructor(address signer) {
        _signer = signer;
    }

    /// @inheritdoc IDelegator
    function getSigner() external view returns (address) {
        return _signer;
    }

    /// @notice Rotating the signer invalidates not-yet-created signed subscriptions of the old one.
    function _updateSigner(address signer) internal {
        _signer = signer;
    }
}
