// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IOwnable} from "../interfaces/IOwnable.sol";

/// @title Ownable
/// @notice One owner, transferable in one step (Solady's selectors and event, so SDK tooling reading
/// `owner()` works). The owner lives in slot 0 so a derived contract can pack small fields beside it.
abstract contract Ownable is IOwnable {
    address private _owner;

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert NewOwnerIsZeroAddress();
        _owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }

    modifier onlyOwner() {
        if (msg.sender != _owner) revert Unauthorized();
        _;
    }

    /// @inheritdoc IOwnable
    function owner() public view returns (address) {
        return _owner;
    }

    /// @inheritdoc IOwnable
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert NewOwnerIsZeroAddress();
        _setOwner(newOwner);
    }

    /// @inheritdoc IOwnable
    function renounceOwnership() external virtual onlyOwner {
        _setOwner(address(0));
    }

    function _setOwner(address newOwner) internal {
        emit OwnershipTransferred(_owner, newOwner);
        _owner = newOwner;
    }
}
