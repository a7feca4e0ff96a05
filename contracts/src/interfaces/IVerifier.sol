// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice A proof verifier a subscription may name (infernet-sdk v1.1 ABI). The Coordinator pays its
/// fee, locks the node's stake and the consumer's payment, then calls `requestProofVerification`; the
/// verifier answers with `ICoordinator.finalizeProofVerification` — in the same call (atomic) or later
/// (optimistic, within a week; after that anyone may finalize in the node's favour).
interface IVerifier {
    /// @notice Where the verifier's fee is paid (any address that can receive the token).
    function getWallet() external view returns (address);

    /// @notice Whether the verifier takes its fee in `token` (address(0) = ETH).
    function isSupportedToken(address token) external view returns (bool);

    /// @notice The verifier's fee per delivery in `token`, read at delivery time.
    function fee(address token) external view returns (uint256);

    /// @notice Called by the Coordinator once the fee is paid and the escrow locked.
    function requestProofVerification(
        uint32 subscriptionId,
        uint32 interval,
        address node,
        bytes calldata proof
    ) external;

    /// @notice Verifiers accept ETH (their fee may be paid in ETH).
    receive() external payable;
}
