// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {Subscription} from "../../src/Types.sol";
import {Coordinator} from "../../src/Coordinator.sol";
import {Inbox} from "../../src/Inbox.sol";
import {Reader} from "../../src/Reader.sol";
import {Registry} from "../../src/Registry.sol";
import {ExampleSubscriptionConsumer} from "../../src/examples/ExampleSubscriptionConsumer.sol";
import {ExampleCallbackConsumer} from "../../src/examples/ExampleCallbackConsumer.sol";
import {ExampleDelegatorConsumer} from "../../src/examples/ExampleDelegatorConsumer.sol";

/// @notice Deploys the whole set the way deploy.py does, plus example consumers and node addresses.
abstract contract Fixture is Test {
    Coordinator internal coordinator;
    Inbox internal inbox;
    Reader internal reader;
    Registry internal registry;
    ExampleSubscriptionConsumer internal recurring;
    ExampleCallbackConsumer internal callback;
    ExampleDelegatorConsumer internal delegator;

    uint256 internal constant SIGNER_KEY = 0xA11CE;
    uint256 internal constant OTHER_KEY = 0xB0B;
    address internal signer;
    address internal constant NODE_1 = address(0x1001);
    address internal constant NODE_2 = address(0x1002);
    address internal constant NODE_3 = address(0x1003);
    bytes internal constant INPUTS = hex"c0ffee";
    uint32 internal constant T0 = 1_700_000_000;

    function setUp() public virtual {
        vm.warp(T0);
        signer = vm.addr(SIGNER_KEY);
        coordinator = new Coordinator();
        inbox = Inbox(coordinator.inbox());
        reader = new Reader(address(coordinator));
        registry = new Registry(address(coordinator), address(inbox), address(reader), address(0), address(0));
        recurring = new ExampleSubscriptionConsumer(address(registry), INPUTS);
        callback = new ExampleCallbackConsumer(address(registry));
        delegator = new ExampleDelegatorConsumer(address(registry), signer);
    }

    function containerHash(string memory containers) internal pure returns (bytes32) {
        return keccak256(abi.encode(containers));
    }

    function countKey(uint32 subscriptionId, uint32 interval) internal pure returns (bytes32) {
        return keccak256(abi.encode(subscriptionId, interval));
    }

    function nodeKey(uint32 subscriptionId, uint32 interval, address node) internal pure returns (bytes32) {
        return keccak256(abi.encode(subscriptionId, interval, node));
    }

    function deliver(address node, uint32 subscriptionId, uint32 interval, bytes memory output) internal {
        vm.prank(node);
        coordinator.deliverCompute(subscriptionId, interval, "in", output, "proof", address(0));
    }

    function expectDeliveryRevert(address node, uint32 subscriptionId, uint32 interval, bytes4 err) internal {
        vm.expectRevert(err);
        deliver(node, subscriptionId, interval, "out");
    }

    /// @dev A delegated subscription owned by the example Delegator consumer.
    function delegatedSub(uint32 activeAt, uint32 period, uint32 frequency, uint16 redundancy)
        internal
        view
        returns (Subscription memory sub)
    {
        sub.owner = address(delegator);
        sub.activeAt = activeAt;
        sub.period = period;
        sub.frequency = frequency;
        sub.redundancy = redundancy;
        sub.containerId = containerHash("hello-world");
    }

    function signDelegated(uint256 key, uint32 nonce, uint32 expiry, Subscription memory sub)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        return vm.sign(key, coordinator.hashDelegateSubscription(nonce, expiry, sub));
    }
}
