// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {ICoordinator} from "../src/interfaces/ICoordinator.sol";

/// @notice Property tests for interval arithmetic and redundancy caps.
contract FuzzTest is Fixture {
    /// Interval k covers [activeAt + (k-1)*period, activeAt + k*period).
    function testFuzz_IntervalWindows(uint32 activeAt, uint32 period, uint32 elapsed) public {
        activeAt = uint32(bound(activeAt, 0, type(uint32).max / 2));
        period = uint32(bound(period, 1, type(uint32).max / 4));
        elapsed = uint32(bound(elapsed, 0, type(uint32).max / 2 - 1));
        vm.warp(uint256(activeAt) + elapsed);
        uint256 k = coordinator.getSubscriptionInterval(activeAt, period);
        vm.assertTrue(k >= 1, "active means interval >= 1");
        vm.assertTrue(uint256(activeAt) + (k - 1) * period <= block.timestamp, "window start <= now");
        vm.assertTrue(block.timestamp < uint256(activeAt) + k * period, "now < window end");
    }

    function testFuzz_NoIntervalBeforeActive(uint32 activeAt, uint32 period, uint32 early) public {
        activeAt = uint32(bound(activeAt, 1, type(uint32).max));
        early = uint32(bound(early, 1, activeAt));
        vm.warp(activeAt - early);
        vm.assertEq(coordinator.getSubscriptionInterval(activeAt, period), 0, "0 before activeAt");
    }

    /// Only the current interval is deliverable; the last deliverable interval is `frequency`.
    function testFuzz_DeliverOnlyCurrentInterval(uint32 frequency, uint32 period, uint32 elapsed, uint32 claimed)
        public
    {
        frequency = uint32(bound(frequency, 1, 1000));
        period = uint32(bound(period, 1, 1 days));
        elapsed = uint32(bound(elapsed, 0, uint256(frequency + 2) * period));
        claimed = uint32(bound(claimed, 1, frequency + 3));
        uint32 subId = recurring.createSubscription("c", frequency, period, 1, false);
        vm.warp(uint256(T0) + period + elapsed);
        uint32 current = elapsed / period + 1;
        if (claimed != current) {
            expectDeliveryRevert(NODE_1, subId, claimed, ICoordinator.IntervalMismatch.selector);
        } else if (current > frequency) {
            expectDeliveryRevert(NODE_1, subId, claimed, ICoordinator.SubscriptionCompleted.selector);
        } else {
            deliver(NODE_1, subId, claimed, "ok");
            vm.assertEq(recurring.getDelivery(subId, claimed).node, NODE_1, "delivered");
        }
    }

    /// At most `redundancy` distinct nodes deliver per interval; each node at most once.
    function testFuzz_RedundancyCap(uint16 redundancy, uint8 nodes) public {
        redundancy = uint16(bound(redundancy, 1, 12));
        nodes = uint8(bound(nodes, 1, 16));
        uint32 subId = callback.requestCompute("c", INPUTS, redundancy);
        for (uint160 i = 0; i < nodes; i++) {
            address node = address(0x5000 + i);
            if (i < redundancy) {
                deliver(node, subId, 1, "ok");
                vm.assertEq(callback.getDelivery(subId, 1).redundancy, i + 1, "running count");
            } else {
                expectDeliveryRevert(node, subId, 1, ICoordinator.IntervalCompleted.selector);
            }
        }
        uint256 expected = nodes < redundancy ? nodes : redundancy;
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), expected, "count capped at redundancy");
        if (nodes < redundancy) {
            expectDeliveryRevert(address(0x5000), subId, 1, ICoordinator.NodeRespondedAlready.selector);
        }
    }
}
