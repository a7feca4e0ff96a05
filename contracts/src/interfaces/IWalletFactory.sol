// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Creates Wallets bound to the Coordinator and vouches for them (infernet-sdk v1.1 ABI).
interface IWalletFactory {
    event WalletCreated(address indexed caller, address indexed owner, address wallet);

    /// @notice A new Wallet owned by `initialOwner` (anyone may create one for anyone; the event names
    /// the caller).
    function createWallet(address initialOwner) external returns (address);

    /// @notice Whether `wallet` was created by this factory.
    function isValidWallet(address wallet) external view returns (bool);
}
