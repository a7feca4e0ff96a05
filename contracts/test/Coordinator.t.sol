// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {Subscription, InboxItem} from "../src/Types.sol";
import {ICoordinator} from "../src/interfaces/ICoordinator.sol";
import {IInbox} from "../src/interfaces/IInbox.sol";
import {DeliveryRecorder} from "../src/examples/DeliveryRecorder.sol";
import {RevertingConsumer, GasHogConsumer, ReentrantConsumer, NoopConsumer} from "./mocks/HostileConsumers.sol";

contract CoordinatorTest is Fixture {
    // ------------------------------------------------------------ createSubscription

    function test_CreateSubscription_StoresFieldsAndEmits() public {
        vm.expectEmit(true, false, false, true, address(coordinator));
        emit ICoordinator.SubscriptionCreated(1);
        vm.prank(address(recurring));
        uint32 subId = coordinator.createSubscription("A,B", 5, 60, 2, true, address(0xdead), 0, address(0xbeef), address(0));

        vm.assertEq(subId, 1, "first id is 1");
        vm.assertEq(coordinator.id(), 2, "id() is the next id");
        Subscription memory sub = coordinator.getSubscription(subId);
        vm.assertEq(sub.owner, address(recurring), "owner");
        vm.assertEq(sub.activeAt, T0 + 60, "activeAt = now + period");
        vm.assertEq(sub.period, 60, "period");
        vm.assertEq(sub.frequency, 5, "frequency");
        vm.assertEq(sub.redundancy, 2, "redundancy");
        vm.assertEq(sub.containerId, containerHash("A,B"), "containerId = keccak(abi.encode(string))");
        vm.assertTrue(sub.lazy, "lazy");
        vm.assertEq(sub.verifier, address(0), "verifier");
        vm.assertEq(sub.paymentAmount, 0, "paymentAmount");
        vm.assertEq(sub.paymentToken, address(0xdead), "paymentToken kept");
        vm.assertEq(sub.wallet, address(0xbeef), "wallet kept");
    }

    function test_CreateSubscription_ThroughConsumerBase() public {
        uint32 subId = recurring.createSubscription("hello-world", 3, 10, 1, false);
        vm.assertEq(coordinator.getSubscription(subId).owner, address(recurring), "consumer owns it");
    }

    function test_CreateSubscription_RevertsOnEmptyContainer() public {
        vm.expectRevert(ICoordinator.EmptyContainerId.selector);
        coordinator.createSubscription("", 1, 0, 1, false, address(0), 0, address(0), address(0));
    }

    function test_CreateSubscription_RevertsOnZeroFrequency() public {
        vm.expectRevert(ICoordinator.ZeroFrequency.selector);
        coordinator.createSubscription("c", 0, 10, 1, false, address(0), 0, address(0), address(0));
    }

    function test_CreateSubscription_RevertsOnZeroRedundancy() public {
        vm.expectRevert(ICoordinator.ZeroRedundancy.selector);
        coordinator.createSubscription("c", 1, 0, 0, false, address(0), 0, address(0), address(0));
    }

    function test_CreateSubscription_RevertsOnOneShotWithFrequencyAboveOne() public {
        vm.expectRevert(ICoordinator.OneShotFrequencyNotOne.selector);
        coordinator.createSubscription("c", 2, 0, 1, false, address(0), 0, address(0), address(0));
    }

    function test_CreateSubscription_RevertsOnPaymentFromNonFactoryWallet() public {
        vm.expectRevert(ICoordinator.InvalidWallet.selector);
        coordinator.createSubscription("c", 1, 0, 1, false, address(0), 1, address(0), address(0));
        vm.expectRevert(ICoordinator.InvalidWallet.selector);
        coordinator.createSubscription("c", 1, 0, 1, false, address(0), 1, address(0xbeef), address(0));
    }

    function test_CreateSubscription_RevertsOnVerifierWithoutPayment() public {
        vm.expectRevert(ICoordinator.VerifierRequiresPayment.selector);
        coordinator.createSubscription("c", 1, 0, 1, false, address(0), 0, address(0), address(0x1234));
    }

    function test_GetSubscription_UnknownIdIsZeroStruct() public view {
        vm.assertEq(coordinator.getSubscription(42).owner, address(0), "owner 0 means absent");
    }

    // ------------------------------------------------------------ cancelSubscription

    function test_Cancel_SetsMarkerEmitsAndBlocksDelivery() public {
        uint32 subId = recurring.createSubscription("c", 3, 10, 1, false);
        vm.expectEmit(true, false, false, true, address(coordinator));
        emit ICoordinator.SubscriptionCancelled(subId);
        recurring.cancelSubscription(subId);
        vm.assertEq(coordinator.getSubscription(subId).activeAt, type(uint32).max, "cancel marker");
        vm.warp(T0 + 10);
        expectDeliveryRevert(NODE_1, subId, 1, ICoordinator.SubscriptionNotActive.selector);
    }

    function test_Cancel_IsIdempotent() public {
        uint32 subId = recurring.createSubscription("c", 3, 10, 1, false);
        recurring.cancelSubscription(subId);
        vm.expectEmit(true, false, false, true, address(coordinator));
        emit ICoordinator.SubscriptionCancelled(subId);
        recurring.cancelSubscription(subId);
    }

    function test_Cancel_RevertsForNonOwner() public {
        uint32 subId = recurring.createSubscription("c", 3, 10, 1, false);
        vm.expectRevert(ICoordinator.NotSubscriptionOwner.selector);
        coordinator.cancelSubscription(subId);
    }

    function test_Cancel_RevertsForUnknownId() public {
        vm.expectRevert(ICoordinator.NotSubscriptionOwner.selector);
        coordinator.cancelSubscription(99);
    }

    // ------------------------------------------------------------ interval arithmetic

    function test_GetSubscriptionInterval_Boundaries() public {
        uint32 activeAt = T0 + 100;
        vm.assertEq(coordinator.getSubscriptionInterval(activeAt, 10), 0, "before activeAt: no interval");
        vm.warp(activeAt);
        vm.assertEq(coordinator.getSubscriptionInterval(activeAt, 10), 1, "at activeAt: 1");
        vm.warp(activeAt + 9);
        vm.assertEq(coordinator.getSubscriptionInterval(activeAt, 10), 1, "last second of interval 1");
        vm.warp(activeAt + 10);
        vm.assertEq(coordinator.getSubscriptionInterval(activeAt, 10), 2, "first second of interval 2");
        vm.assertEq(coordinator.getSubscriptionInterval(activeAt, 0), 1, "period 0 is always interval 1");
    }

    function test_GetSubscriptionInterval_ClampsAtUint32Max() public {
        vm.warp(type(uint32).max);
        vm.assertEq(coordinator.getSubscriptionInterval(0, 1), type(uint32).max, "no overflow");
    }

    // ------------------------------------------------------------ deliverCompute: revert paths

    function test_Deliver_RevertsOnUnknownSubscription() public {
        expectDeliveryRevert(NODE_1, 7, 1, ICoordinator.SubscriptionNotFound.selector);
    }

    function test_Deliver_RevertsBeforeActive() public {
        uint32 subId = recurring.createSubscription("c", 3, 10, 1, false);
        vm.warp(T0 + 9);
        expectDeliveryRevert(NODE_1, subId, 1, ICoordinator.SubscriptionNotActive.selector);
    }

    function test_Deliver_RevertsOnIntervalMismatchAtBoundary() public {
        uint32 subId = recurring.createSubscription("c", 3, 10, 1, false);
        vm.warp(T0 + 19);
        expectDeliveryRevert(NODE_1, subId, 2, ICoordinator.IntervalMismatch.selector);
        vm.warp(T0 + 20);
        expectDeliveryRevert(NODE_1, subId, 1, ICoordinator.IntervalMismatch.selector);
        deliver(NODE_1, subId, 2, "ok");
    }

    function test_Deliver_RevertsWhenCompleted() public {
        uint32 subId = recurring.createSubscription("c", 3, 10, 1, false);
        vm.warp(T0 + 10 + 3 * 10 - 1);
        deliver(NODE_1, subId, 3, "last interval");
        vm.warp(T0 + 10 + 3 * 10);
        expectDeliveryRevert(NODE_1, subId, 4, ICoordinator.SubscriptionCompleted.selector);
    }

    function test_Deliver_NodeTwiceReverts() public {
        uint32 subId = callback.requestCompute("c", INPUTS, 2);
        deliver(NODE_1, subId, 1, "first");
        expectDeliveryRevert(NODE_1, subId, 1, ICoordinator.NodeRespondedAlready.selector);
    }

    function test_Deliver_FullIntervalWinsOverAlreadyResponded() public {
        uint32 subId = callback.requestCompute("c", INPUTS, 1);
        deliver(NODE_1, subId, 1, "first");
        expectDeliveryRevert(NODE_1, subId, 1, ICoordinator.IntervalCompleted.selector);
    }

    // ------------------------------------------------------------ deliverCompute: happy paths

    function test_Deliver_CallbackEagerPassesPayloadAndEmits() public {
        uint32 subId = callback.requestCompute("c", INPUTS, 1);
        vm.expectEmit(true, true, false, true, address(coordinator));
        emit ICoordinator.SubscriptionFulfilled(subId, NODE_1);
        deliver(NODE_1, subId, 1, "result");

        DeliveryRecorder.Delivery memory d = callback.getDelivery(subId, 1);
        vm.assertEq(d.node, NODE_1, "node");
        vm.assertEq(d.redundancy, 1, "count includes this delivery");
        vm.assertEq(d.input, bytes("in"), "input");
        vm.assertEq(d.output, bytes("result"), "output");
        vm.assertEq(d.proof, bytes("proof"), "proof");
        vm.assertEq(d.containerId, bytes32(0), "eager: no container pointer");
        vm.assertEq(d.index, 0, "eager: index 0");
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 1, "count stored");
        vm.assertTrue(coordinator.nodeResponded(nodeKey(subId, 1, NODE_1)), "responded stored");
    }

    function test_Deliver_RedundancyFillsAcrossNodesAndResetsPerInterval() public {
        uint32 subId = recurring.createSubscription("c", 2, 10, 2, false);
        vm.warp(T0 + 10);
        deliver(NODE_1, subId, 1, "a");
        deliver(NODE_2, subId, 1, "b");
        vm.assertEq(recurring.getDelivery(subId, 1).redundancy, 2, "second delivery counted 2");
        expectDeliveryRevert(NODE_3, subId, 1, ICoordinator.IntervalCompleted.selector);
        vm.warp(T0 + 20);
        deliver(NODE_3, subId, 2, "c");
        deliver(NODE_1, subId, 2, "d");
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 2)), 2, "interval 2 full");
        vm.assertEq(recurring.lastInterval(subId), 2, "consumer saw interval 2");
        vm.assertEq(recurring.deliveryCount(), 4, "four deliveries");
    }

    function test_Deliver_LazyWritesInboxAndPassesPointer() public {
        uint32 subId = recurring.createSubscription("big-model", 1, 10, 1, true);
        vm.warp(T0 + 10);
        bytes32 cid = containerHash("big-model");
        vm.expectEmit(true, true, false, true, address(inbox));
        emit IInbox.NewInboxItem(cid, NODE_1, 0);
        deliver(NODE_1, subId, 1, "large output");

        DeliveryRecorder.Delivery memory d = recurring.getDelivery(subId, 1);
        vm.assertEq(d.output.length, 0, "lazy: no output in callback");
        vm.assertEq(d.input.length, 0, "lazy: no input in callback");
        vm.assertEq(d.containerId, cid, "pointer container");
        vm.assertEq(d.index, 0, "pointer index");
        InboxItem memory item = inbox.read(cid, NODE_1, 0);
        vm.assertEq(item.subscriptionId, subId, "inbox sub id");
        vm.assertEq(item.interval, 1, "inbox interval");
        vm.assertEq(item.timestamp, T0 + 10, "inbox timestamp");
        vm.assertEq(item.output, bytes("large output"), "inbox output");
        vm.assertEq(item.input, bytes("in"), "inbox input");
        vm.assertEq(item.proof, bytes("proof"), "inbox proof");
    }

    function test_Deliver_IgnoresNodeWallet() public {
        uint32 subId = callback.requestCompute("c", INPUTS, 1);
        vm.prank(NODE_1);
        coordinator.deliverCompute(subId, 1, "", "x", "", address(0xabcdef));
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 1, "delivered");
    }

    // ------------------------------------------------------------ hostile consumers

    function test_Deliver_RevertingConsumerLeavesNoTrace() public {
        RevertingConsumer bad = new RevertingConsumer(address(registry));
        uint32 subId = bad.request(1);
        expectDeliveryRevert(NODE_1, subId, 1, RevertingConsumer.ConsumerFailed.selector);
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 0, "count rolled back");
        vm.assertFalse(coordinator.nodeResponded(nodeKey(subId, 1, NODE_1)), "responded rolled back");
    }

    function test_Deliver_GasHogConsumerCannotCorruptAccounting() public {
        GasHogConsumer hog = new GasHogConsumer(address(registry));
        uint32 subId = hog.request(1);
        vm.prank(NODE_1);
        (bool ok,) = address(coordinator).call{gas: 300_000}(
            abi.encodeCall(ICoordinator.deliverCompute, (subId, 1, "", "x", "", address(0)))
        );
        vm.assertFalse(ok, "out of gas reverts the delivery");
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 0, "count rolled back");
        vm.assertFalse(coordinator.nodeResponded(nodeKey(subId, 1, NODE_1)), "responded rolled back");
        // The lock was rolled back too: a later delivery to a healthy consumer works.
        uint32 other = callback.requestCompute("c", INPUTS, 1);
        deliver(NODE_1, other, 1, "fine");
    }

    function test_Deliver_ReentryIsRejectedAndCountedOnce() public {
        ReentrantConsumer sneaky = new ReentrantConsumer(address(registry));
        uint32 subId = sneaky.request(5);
        deliver(NODE_1, subId, 1, "x");
        vm.assertEq(sneaky.reentryError(), abi.encodeWithSelector(ICoordinator.Reentrancy.selector), "Reentrancy()");
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 1, "counted once");
        vm.assertEq(sneaky.lastRedundancy(), 1, "callback saw count 1");
    }

    // ------------------------------------------------------------ gas figures (see .gas-snapshot / snapshots/)

    function test_Gas_DeliverEagerCallback() public {
        uint32 subId = callback.requestCompute("c", INPUTS, 1);
        deliver(NODE_1, subId, 1, "result");
        vm.snapshotGasLastCall("deliverCompute_eager_first");
    }

    function test_Gas_DeliverEagerRecurringSecondInterval() public {
        uint32 subId = recurring.createSubscription("c", 2, 10, 1, false);
        vm.warp(T0 + 10);
        deliver(NODE_1, subId, 1, "result");
        vm.warp(T0 + 20);
        deliver(NODE_1, subId, 2, "result");
        vm.snapshotGasLastCall("deliverCompute_eager_recurring_interval2");
    }

    function test_Gas_DeliverLazy() public {
        uint32 subId = recurring.createSubscription("c", 1, 10, 1, true);
        vm.warp(T0 + 10);
        deliver(NODE_1, subId, 1, "result");
        vm.snapshotGasLastCall("deliverCompute_lazy_first");
    }

    function test_Gas_CreateSubscription() public {
        recurring.createSubscription("hello-world", 10, 60, 1, false);
        vm.snapshotGasLastCall("createSubscription_via_consumer");
    }

    /// @dev Coordinator-only cost: the consumer callback does nothing (compare with SDK figures).
    function test_Gas_DeliverNoopConsumer() public {
        NoopConsumer noop = new NoopConsumer(address(registry));
        uint32 eager = noop.recurring(2, 10, false);
        uint32 lazy = noop.recurring(1, 10, true);
        uint32 oneShot = noop.request(1);
        deliver(NODE_1, oneShot, 1, "result");
        vm.snapshotGasLastCall("coordinatorOnly_deliver_callback_cold");
        vm.warp(T0 + 10);
        deliver(NODE_1, eager, 1, "result");
        vm.snapshotGasLastCall("coordinatorOnly_deliver_recurring_interval1");
        vm.warp(T0 + 20);
        deliver(NODE_1, eager, 2, "result");
        vm.snapshotGasLastCall("coordinatorOnly_deliver_recurring_interval2");
        vm.warp(T0 + 10);
        deliver(NODE_1, lazy, 1, "result");
        vm.snapshotGasLastCall("coordinatorOnly_deliver_lazy");
    }
}
