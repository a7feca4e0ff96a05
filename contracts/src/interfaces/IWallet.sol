// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IOwnable} from "./IOwnable.sol";

/// @notice An Infernet payments Wallet (infernet-sdk v1.1 ABI, events spelled as the SDK spells them,
/// `Withdrawl` included). The owner deposits ETH or ERC-20, approves spenders (a consumer contract, a
/// node's key) per token, and withdraws what is not locked; only the Coordinator moves, locks and
/// unlocks funds on a spender's behalf. `address(0)` as token means ETH.
interface IWallet is IOwnable {
    event Withdrawl(address token, uint256 amount);
    event Approval(address indexed spender, address token, uint256 amount);
    event Escrow(address indexed spender, address token, uint256 amount, bool locked);
    event Transfer(address indexed spender, address token, address indexed to, uint256 amount);

    error InsufficientFunds();
    error InsufficientAllowance();
    error TransferFailed();
    error ETHTransferFailed();
    error NotCoordinator();
    error Reentrancy();

    /// @notice What `spender` may still spend or lock of `token`.
    function allowance(address spender, address token) external view returns (uint256);

    /// @notice Owner: withdraw `amount` of `token` (never more than the unlocked balance).
    function withdraw(address token, uint256 amount) external;

    /// @notice Owner: set (overwrite) what `spender` may spend of `token`.
    function approve(address spender, address token, uint256 amount) external;

    /// @notice Coordinator: pay `amount` of unlocked `token` to `to` from `spender`'s allowance.
    function cTransfer(address spender, address token, address to, uint256 amount) external;

    /// @notice Coordinator: lock `amount` of unlocked `token` in escrow from `spender`'s allowance.
    function cLock(address spender, address token, uint256 amount) external;

    /// @notice Coordinator: unlock `amount` of `token` and give it back to `spender`'s allowance.
    function cUnlock(address spender, address token, uint256 amount) external;

    /// @notice Locked (escrowed) amount of `token` — private in the SDK, public here for nodes.
    function lockedBalance(address token) external view returns (uint256);

    /// @notice Balance of `token` minus what is locked (0 if the balance fell below the locked amount).
    function unlockedBalance(address token) external view returns (uint256);
}
