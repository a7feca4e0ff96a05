// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ExampleOwned
/// @notice Example-consumer helper: the deployer is the owner, fixed for good (demos need no
/// handover), and `onlyOwner` guards the settings.
abstract contract ExampleOwned {
    error NotOwner();

    address public immutable owner;

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }
}
