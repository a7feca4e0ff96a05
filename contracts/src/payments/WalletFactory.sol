// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IWalletFactory} from "../interfaces/IWalletFactory.sol";
import {Wallet} from "./Wallet.sol";

/// @title WalletFactory
/// @notice Creates Wallets bound to one Coordinator (which creates this factory) and remembers them:
/// paid subscriptions and nodes must use Wallets from here (SDK v1.1 ABI).
contract WalletFactory is IWalletFactory {
    address private immutable _COORDINATOR;
    mapping(address => bool) private _wallets;

    constructor(address coordinator) {
        _COORDINATOR = coordinator;
    }

    /// @inheritdoc IWalletFactory
    function createWallet(address initialOwner) external returns (address wallet) {
        wallet = address(new Wallet(_COORDINATOR, initialOwner));
        _wallets[wallet] = true;
        emit WalletCreated(msg.sender, initialOwner, wallet);
    }

    /// @inheritdoc IWalletFactory
    function isValidWallet(address wallet) external view returns (bool) {
        return _wallets[wallet];
    }
}
