// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SubscriptionConsumer} from "../../src/consumer/SubscriptionConsumer.sol";
import {ICoordinator} from "../../src/interfaces/ICoordinator.sol";
import {Delegator} from "../../src/pattern/Delegator.sol";

/// @notice Base for consumers that misbehave in their callback; opens callback subscriptions.
abstract contract HostileConsumer is SubscriptionConsumer {
    constructor(address registry) SubscriptionConsumer(registry) {}

    function request(uint16 redundancy) external returns (uint32) {
        return _createComputeSubscription("hostile", 1, 0, redundancy, false, address(0), 0, address(0), address(0));
    }

    function getContainerInputs(uint32, uint32, uint32, address) external pure override returns (bytes memory) {
        return "";
    }
}

/// @notice Always reverts in its callback.
contract RevertingConsumer is HostileConsumer {
    error ConsumerFailed();

    constructor(address registry) HostileConsumer(registry) {}

    function _receiveCompute(uint32, uint32, uint16, address, bytes calldata, bytes calldata, bytes calldata, bytes32, uint256)
        internal
        pure
        override
    {
        revert ConsumerFailed();
    }
}

/// @notice Burns all gas it is given.
contract GasHogConsumer is HostileConsumer {
    uint256 public sink;

    constructor(address registry) HostileConsumer(registry) {}

    function _receiveCompute(uint32, uint32, uint16, address, bytes calldata, bytes calldata, bytes calldata, bytes32, uint256)
        internal
        override
    {
        while (true) {
            sink += 1;
        }
    }
}

/// @notice Re-enters deliverCompute from its callback and records what the Coordinator answered.
contract ReentrantConsumer is HostileConsumer {
    bytes public reentryError;
    uint16 public lastRedundancy;

    constructor(address registry) HostileConsumer(registry) {}

    function _receiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address,
        bytes calldata,
        bytes calldata,
        bytes calldata,
        bytes32,
        uint256
    ) internal override {
        lastRedundancy = redundancy;
        try ICoordinator(msg.sender).deliverCompute(subscriptionId, interval, "", "again", "", address(0)) {
            reentryError = "no error";
        } catch (bytes memory reason) {
            reentryError = reason;
        }
    }
}

/// @notice Does nothing with a delivery: measures the Coordinator's own delivery cost.
contract NoopConsumer is HostileConsumer {
    constructor(address registry) HostileConsumer(registry) {}

    function recurring(uint32 frequency, uint32 period, bool lazy) external returns (uint32) {
        return _createComputeSubscription("noop", frequency, period, 1, lazy, address(0), 0, address(0), address(0));
    }

    /// @notice A paid one-shot subscription (measures the Coordinator's own paid-delivery cost).
    function paidRequest(address token, uint256 amount, address wallet, address verifier) external returns (uint32) {
        return _createComputeSubscription("noop", 1, 0, 1, false, token, amount, wallet, verifier);
    }
}

/// @notice A Delegator that does nothing with deliveries: Coordinator-only cost of delegated delivery.
contract NoopDelegatorConsumer is HostileConsumer, Delegator {
    constructor(address registry, address signer) HostileConsumer(registry) Delegator(signer) {}
}
