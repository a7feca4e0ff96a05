// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IFee} from "../interfaces/IFee.sol";
import {IOwnable} from "../interfaces/IOwnable.sol";
import {Ownable} from "./Ownable.sol";

/// @title Fee
/// @notice The protocol fee: `FEE` basis points, paid to the owner (`FEE_RECIPIENT`). The Coordinator
/// creates it with its deployer as owner. Unlike the SDK, FEE is capped at 5000 (the Coordinator takes
/// 2 x FEE: above 5000 the SDK underflows and above 32767 its uint16 overflows, breaking every paid
/// delivery) and ownership cannot be renounced (a zero recipient would burn ETH fees and make ERC-20
/// fee transfers revert).
contract Fee is IFee, Ownable {
    uint16 public constant MAX_FEE = 5000;

    /// @inheritdoc IFee
    uint16 public FEE; // packed with the owner: one slot read per paid delivery

    constructor(address feeRecipient, uint16 fee) Ownable(feeRecipient) {
        if (fee > MAX_FEE) revert FeeTooHigh();
        FEE = fee;
    }

    /// @inheritdoc IFee
    function FEE_RECIPIENT() external view returns (address) {
        return owner();
    }

    /// @inheritdoc IFee
    function feeAndRecipient() external view returns (uint16, address) {
        return (FEE, owner());
    }

    /// @inheritdoc IFee
    function updateFee(uint16 newFee) external onlyOwner {
        if (newFee > MAX_FEE) revert FeeTooHigh();
        FEE = newFee;
    }

    /// @notice Disabled: the fee always has a recipient (transfer ownership instead).
    function renounceOwnership() external view override(IOwnable, Ownable) onlyOwner {
        revert FeeRecipientRequired();
    }
}
