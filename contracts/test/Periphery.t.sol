// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {Subscription, SubscriptionStatus, InboxItem} from "../src/Types.sol";
import {IInbox} from "../src/interfaces/IInbox.sol";
import {BaseConsumer} from "../src/consumer/BaseConsumer.sol";
import {Allowlist} from "../src/pattern/Allowlist.sol";
import {ExampleOwned} from "../src/examples/ExampleOwned.sol";
import {ExampleAllowlistConsumer} from "../src/examples/ExampleAllowlistConsumer.sol";

/// @notice Inbox, Reader, Registry, consumer bases and patterns.
contract PeripheryTest is Fixture {
    // ------------------------------------------------------------ Registry

    function test_Registry_Getters() public view {
        vm.assertEq(registry.COORDINATOR(), address(coordinator), "coordinator");
        vm.assertEq(registry.INBOX(), address(inbox), "inbox");
        vm.assertEq(registry.READER(), address(reader), "reader");
        vm.assertEq(registry.FEE(), coordinator.fee(), "the coordinator's Fee (passed as 0)");
        vm.assertEq(registry.WALLET_FACTORY(), coordinator.walletFactory(), "the coordinator's WalletFactory");
        vm.assertEq(inbox.COORDINATOR(), address(coordinator), "inbox bound to coordinator");
    }

    // ------------------------------------------------------------ Inbox

    function test_Inbox_DirectWriteIsOpenAndUnattributed() public {
        bytes32 cid = containerHash("c");
        vm.expectEmit(true, true, false, true, address(inbox));
        emit IInbox.NewInboxItem(cid, NODE_2, 0);
        vm.prank(NODE_2);
        uint256 index = inbox.write(cid, "i", "o", "p");
        vm.assertEq(index, 0, "first index");
        vm.prank(NODE_2);
        vm.assertEq(inbox.write(cid, "i2", "o2", "p2"), 1, "second index");

        InboxItem memory item = inbox.read(cid, NODE_2, 1);
        vm.assertEq(item.subscriptionId, 0, "no subscription");
        vm.assertEq(item.interval, 0, "no interval");
        vm.assertEq(item.output, bytes("o2"), "output");
        (uint32 timestamp, uint32 subId, uint32 interval, bytes memory input, bytes memory output, bytes memory proof) =
            inbox.items(cid, NODE_2, 0);
        vm.assertEq(timestamp, T0, "timestamp");
        vm.assertEq(subId + interval, 0, "zeros");
        vm.assertEq(input, bytes("i"), "input via getter");
        vm.assertEq(output, bytes("o"), "output via getter");
        vm.assertEq(proof, bytes("p"), "proof via getter");
    }

    function test_Inbox_WriteViaCoordinatorIsGuarded() public {
        vm.expectRevert(IInbox.NotCoordinator.selector);
        inbox.writeViaCoordinator(containerHash("c"), NODE_1, 1, 1, "", "forged", "");
    }

    function test_Inbox_ReadOutOfRangeReverts() public {
        vm.expectRevert();
        inbox.read(containerHash("c"), NODE_1, 0);
    }

    // ------------------------------------------------------------ Reader

    function test_Reader_SubscriptionBatch() public {
        recurring.createSubscription("a", 2, 10, 1, false);
        callback.requestCompute("b", INPUTS, 3);
        Subscription[] memory subs = reader.readSubscriptionBatch(1, 4);
        vm.assertEq(subs.length, 3, "[1, 4)");
        vm.assertEq(subs[0].owner, address(recurring), "sub 1");
        vm.assertEq(subs[1].redundancy, 3, "sub 2");
        vm.assertEq(subs[2].owner, address(0), "missing id is a zero struct");
        vm.assertEq(reader.readSubscriptionBatch(3, 1).length, 0, "empty when end <= start");
    }

    function test_Reader_RedundancyCountBatch() public {
        uint32 subId = callback.requestCompute("b", INPUTS, 3);
        deliver(NODE_1, subId, 1, "x");
        deliver(NODE_2, subId, 1, "y");
        uint32[] memory ids = new uint32[](2);
        uint32[] memory intervals = new uint32[](2);
        (ids[0], intervals[0]) = (subId, 1);
        (ids[1], intervals[1]) = (subId, 2);
        uint16[] memory counts = reader.readRedundancyCountBatch(ids, intervals);
        vm.assertEq(counts[0], 2, "two deliveries");
        vm.assertEq(counts[1], 0, "none in interval 2");
    }

    function test_Reader_RedundancyCountBatchRejectsLengthMismatch() public {
        vm.expectRevert(bytes("length mismatch"));
        reader.readRedundancyCountBatch(new uint32[](1), new uint32[](2));
    }

    function test_Reader_StatusBatch() public {
        uint32 pending = recurring.createSubscription("a", 3, 100, 2, false); // active at T0 + 100
        uint32 oneShot = callback.requestCompute("b", INPUTS, 2);
        uint32 cancelled = recurring.createSubscription("c", 3, 10, 1, false);
        recurring.cancelSubscription(cancelled);
        deliver(NODE_1, oneShot, 1, "x");

        SubscriptionStatus[] memory st = reader.readStatusBatch(pending, cancelled + 2, NODE_1);
        vm.assertEq(st.length, 4, "4 rows");
        vm.assertEq(st[0].subscriptionId, pending, "row ids");
        vm.assertEq(st[0].currentInterval, 0, "not active yet");
        vm.assertEq(st[1].currentInterval, 1, "one-shot interval 1");
        vm.assertEq(st[1].redundancyCount, 1, "one delivery");
        vm.assertTrue(st[1].nodeResponded, "node 1 delivered");
        vm.assertEq(st[1].sub.owner, address(callback), "sub included");
        vm.assertEq(st[2].currentInterval, 0, "cancelled");
        vm.assertEq(st[3].sub.owner, address(0), "missing");

        vm.warp(T0 + 250);
        uint32[] memory ids = new uint32[](2);
        (ids[0], ids[1]) = (pending, oneShot);
        st = reader.readStatusBatchByIds(ids, NODE_2);
        vm.assertEq(st[0].currentInterval, 2, "interval 2 at T0+250");
        vm.assertFalse(st[1].nodeResponded, "node 2 did not deliver");
        vm.assertEq(st[1].redundancyCount, 1, "count independent of node");
    }

    // ------------------------------------------------------------ consumer bases and patterns

    function test_Consumer_RejectsDirectCallback() public {
        vm.expectRevert(BaseConsumer.NotCoordinator.selector);
        callback.rawReceiveCompute(1, 1, 1, NODE_1, "", "forged", "", bytes32(0), 0);
    }

    function test_CallbackConsumer_ServesStoredInputs() public {
        uint32 subId = callback.requestCompute("b", INPUTS, 1);
        vm.assertEq(callback.getContainerInputs(subId, 1, T0, NODE_1), INPUTS, "stored inputs");
        vm.assertEq(callback.getContainerInputs(subId + 1, 1, T0, NODE_1).length, 0, "unknown id: empty");
        Subscription memory sub = coordinator.getSubscription(subId);
        vm.assertEq(sub.frequency, 1, "callback frequency 1");
        vm.assertEq(sub.period, 0, "callback period 0");
        vm.assertEq(sub.activeAt, T0, "deliverable at once");
    }

    function test_SubscriptionConsumer_InputsAndOwnerOnlyControls() public {
        vm.assertEq(recurring.getContainerInputs(1, 1, T0, NODE_1), INPUTS, "constructor inputs");
        recurring.setContainerInputs(hex"01");
        vm.assertEq(recurring.getContainerInputs(1, 1, T0, NODE_1), hex"01", "updated inputs");
        vm.prank(NODE_1);
        vm.expectRevert(ExampleOwned.NotOwner.selector);
        recurring.setContainerInputs(hex"02");
        uint32 subId = recurring.createSubscription("a", 3, 10, 1, false);
        vm.prank(NODE_1);
        vm.expectRevert(ExampleOwned.NotOwner.selector);
        recurring.cancelSubscription(subId);
    }

    function test_Delegator_GetAndRotateSigner() public {
        vm.assertEq(delegator.getSigner(), signer, "initial signer");
        vm.prank(NODE_1);
        vm.expectRevert(ExampleOwned.NotOwner.selector);
        delegator.setSigner(NODE_1);
        delegator.setSigner(NODE_2);
        vm.assertEq(delegator.getSigner(), NODE_2, "rotated");
        vm.assertEq(delegator.getContainerInputs(1, 1, T0, NODE_1).length, 0, "inputs travel off-chain");
    }

    function test_Allowlist_OnlyAllowedNodesDeliver() public {
        address[] memory nodes = new address[](1);
        nodes[0] = NODE_1;
        ExampleAllowlistConsumer picky = new ExampleAllowlistConsumer(address(registry), nodes);
        vm.assertTrue(picky.isAllowedNode(NODE_1), "node 1 allowed");
        vm.assertFalse(picky.isAllowedNode(NODE_2), "node 2 not allowed");
        uint32 subId = picky.requestCompute("b", INPUTS, 2);

        expectDeliveryRevert(NODE_2, subId, 1, Allowlist.NodeNotAllowed.selector);
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 0, "rejected delivery not counted");
        deliver(NODE_1, subId, 1, "ok");

        bool[] memory allowed = new bool[](1);
        nodes[0] = NODE_2;
        allowed[0] = true;
        picky.updateAllowlist(nodes, allowed);
        deliver(NODE_2, subId, 1, "ok too");
        vm.assertEq(picky.deliveryCount(), 2, "both recorded");
    }

    function test_Allowlist_UpdateRejectsLengthMismatch() public {
        ExampleAllowlistConsumer picky = new ExampleAllowlistConsumer(address(registry), new address[](0));
        vm.expectRevert(bytes("length mismatch"));
        picky.updateAllowlist(new address[](1), new bool[](0));
    }
}
