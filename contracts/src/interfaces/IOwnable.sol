// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Single-owner access as the SDK's Wallet and Fee expose it (Solady `Ownable` names and
/// selectors for the one-step part; the two-step handover functions are not provided).
interface IOwnable {
    event OwnershipTransferred(address indexed oldOwner, address indexed newOwner);

    error Unauthorized();
    error NewOwnerIsZeroAddress();

    function owner() external view returns (address);
    function transferOwnership(address newOwner) external;
    function renounceOwnership() external;
}
