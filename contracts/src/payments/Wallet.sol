// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IWallet} from "../interfaces/IWallet.sol";
import {IERC20} from "../interfaces/IERC20.sol";
import {Ownable} from "./Ownable.sol";

/// @title Wallet
/// @notice Holds a consumer's or a node's ETH and ERC-20 for Infernet payments (SDK v1.1 ABI). Beyond
/// the SDK: the Coordinator can only pay out *unlocked* funds (the SDK's `cTransfer` could spend money
/// escrowed for an open proof request, which then could never be paid or unlocked); unlocking gives
/// the allowance back saturating (an owner re-approving `type(uint256).max` while funds are locked
/// made the SDK's unlock overflow, freezing the escrow — and the other party's stake — for good);
/// transfers to address(0) are refused; withdrawals and payouts hold a re-entrancy lock; ERC-20s that
/// return nothing are accepted, ones that return false are not.
contract Wallet is IWallet, Ownable {
    uint256 private constant _UNLOCKED = 1;
    uint256 private constant _LOCKED = 2;

    address private immutable _COORDINATOR;

    /// @inheritdoc IWallet
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => uint256) private _locked;
    uint256 private _lock = _UNLOCKED;

    constructor(address coordinator, address initialOwner) Ownable(initialOwner) {
        _COORDINATOR = coordinator;
    }

    modifier onlyCoordinator() {
        if (msg.sender != _COORDINATOR) revert NotCoordinator();
        _;
    }

    modifier nonReentrant() {
        if (_lock != _UNLOCKED) revert Reentrancy();
        _lock = _LOCKED;
        _;
        _lock = _UNLOCKED;
    }

    /// @notice Deposits: anyone may send ETH.
    receive() external payable {}

    // ------------------------------------------------------------------ owner

    /// @inheritdoc IWallet
    function withdraw(address token, uint256 amount) external onlyOwner nonReentrant {
        if (amount > unlockedBalance(token)) revert InsufficientFunds();
        _send(token, msg.sender, amount);
        emit Withdrawl(token, amount);
    }

    /// @inheritdoc IWallet
    function approve(address spender, address token, uint256 amount) external onlyOwner {
        allowance[spender][token] = amount;
        emit Approval(spender, token, amount);
    }

    // ------------------------------------------------------------------ coordinator

    /// @inheritdoc IWallet
    function cTransfer(address spender, address token, address to, uint256 amount)
        external
        onlyCoordinator
        nonReentrant
    {
        _spend(spender, token, amount);
        _send(token, to, amount);
        emit Transfer(spender, token, to, amount);
    }

    /// @inheritdoc IWallet
    function cLock(address spender, address token, uint256 amount) external onlyCoordinator {
        _spend(spender, token, amount);
        _locked[token] += amount;
        emit Escrow(spender, token, amount, true);
    }

    /// @inheritdoc IWallet
    function cUnlock(address spender, address token, uint256 amount) external onlyCoordinator {
        uint256 locked = _locked[token];
        if (amount > locked) revert InsufficientFunds();
        unchecked {
            _locked[token] = locked - amount;
        }
        uint256 allowed = allowance[spender][token];
        allowance[spender][token] =
            amount > type(uint256).max - allowed ? type(uint256).max : allowed + amount;
        emit Escrow(spender, token, amount, false);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IWallet
    function lockedBalance(address token) external view returns (uint256) {
        return _locked[token];
    }

    /// @inheritdoc IWallet
    function unlockedBalance(address token) public view returns (uint256) {
        uint256 balance = token == address(0) ? address(this).balance : IERC20(token).balanceOf(address(this));
        uint256 locked = _locked[token];
        return balance > locked ? balance - locked : 0;
    }

    // ------------------------------------------------------------------ internals

    /// @dev Takes `amount` out of `spender`'s allowance, from funds that are not locked.
    function _spend(address spender, address token, uint256 amount) private {
        if (amount > unlockedBalance(token)) revert InsufficientFunds();
        uint256 allowed = allowance[spender][token];
        if (amount > allowed) revert InsufficientAllowance();
        unchecked {
            allowance[spender][token] = allowed - amount;
        }
    }

    function _send(address token, address to, uint256 amount) private {
        if (to == address(0)) revert TransferFailed();
        if (token == address(0)) {
            (bool sent,) = to.call{value: amount}("");
            if (!sent) revert ETHTransferFailed();
            return;
        }
        (bool ok, bytes memory data) = token.call(abi.encodeCall(IERC20.transfer, (to, amount)));
        // Accept tokens that return nothing (USDT-style), refuse a `false` and calls to non-contracts.
        if (!ok || (data.length == 0 ? token.code.length == 0 : !abi.decode(data, (bool)))) {
            revert TransferFailed();
        }
    }
}
