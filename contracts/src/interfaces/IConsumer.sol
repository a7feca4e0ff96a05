// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice What the Coordinator and nodes call on a consumer (SDK-identical selectors).
interface IConsumer {
    /// @notice Delivery callback; only the Coordinator may call it. `redundancy` counts this delivery.
    function rawReceiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof,
        bytes32 containerId,
        uint256 index
    ) external;

    /// @notice On-chain inputs for an interval; nodes read it with eth_call before running containers.
    function getContainerInputs(uint32 subscriptionId, uint32 interval, uint32 timestamp, address caller)
        external
        view
        returns (bytes memory);
}

/// @notice Consumers that accept EIP-712 delegated subscriptions expose the signer they trust.
interface IDelegator {
    function getSigner() external view returns (address);
}
