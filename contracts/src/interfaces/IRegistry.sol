// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Registry ABI (SDK-identical getters): the Coordinator, its Inbox, the Reader, the protocol
/// Fee and the WalletFactory.
interface IRegistry {
    function COORDINATOR() external view returns (address);
    function INBOX() external view returns (address);
    function READER() external view returns (address);
    function FEE() external view returns (address);
    function WALLET_FACTORY() external view returns (address);
}
