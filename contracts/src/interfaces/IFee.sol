// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IOwnable} from "./IOwnable.sol";

/// @notice Protocol fee (infernet-sdk v1.1 ABI): `FEE` basis points, paid to the owner. The Coordinator
/// takes 2 x FEE of every payment and 1 x FEE of a verifier's fee.
interface IFee is IOwnable {
    error FeeTooHigh();
    error FeeRecipientRequired();

    function FEE() external view returns (uint16);
    function FEE_RECIPIENT() external view returns (address);
    function updateFee(uint16 newFee) external;

    /// @notice FEE and its recipient in one call (what the Coordinator reads per paid delivery).
    function feeAndRecipient() external view returns (uint16 fee, address recipient);
}
