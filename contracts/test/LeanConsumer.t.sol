// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {PaymentsFixture} from "./utils/PaymentsFixture.sol";
import {ICoordinator} from "../src/interfaces/ICoordinator.sol";
import {ExampleOwned} from "../src/examples/ExampleOwned.sol";
import {ExampleSubscriptionBase} from "../src/examples/ExampleSubscriptionBase.sol";
import {ExampleLeanConsumer} from "../src/examples/ExampleLeanConsumer.sol";

/// @notice ExampleLeanConsumer: the subscription example's API, a delivery that only emits the output's
/// hash, and its cost next to the recording example's (snapshots/LeanConsumerTest.json).
contract LeanConsumerTest is PaymentsFixture {
    ExampleLeanConsumer internal lean;

    function setUp() public override {
        super.setUp();
        lean = new ExampleLeanConsumer(address(registry), INPUTS);
    }

    function test_Lean_FreeDeliveryEmitsTheOutputHash() public {
        uint32 subId = lean.createSubscription("c", 2, 10, 1, false);
        vm.assertEq(lean.getContainerInputs(subId, 1, T0, NODE_1), INPUTS, "constructor inputs");
        vm.warp(T0 + 10);
        vm.expectEmit(true, true, true, true, address(lean));
        emit ExampleLeanConsumer.OutputHashed(subId, 1, NODE_1, keccak256("result"));
        deliver(NODE_1, subId, 1, "result");
        vm.warp(T0 + 20);
        vm.expectEmit(true, true, true, true, address(lean));
        emit ExampleLeanConsumer.OutputHashed(subId, 2, NODE_2, keccak256("second"));
        deliver(NODE_2, subId, 2, "second");
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 2)), 1, "counted");
    }

    function test_Lean_PaidDeliveryPaysTheNodeAndEmits() public {
        uint256 amount = 1 ether;
        fundConsumer(address(lean), ETH, amount);
        uint32 subId = lean.createPaidSubscription(
            "c", 1, 10, 1, false, ETH, amount, address(consumerWallet), address(0)
        );
        vm.warp(T0 + 10);
        uint256 consumerBefore = bal(address(consumerWallet), ETH);
        uint256 nodeBefore = bal(address(nodeWallet1), ETH);

        vm.expectEmit(true, true, true, true, address(lean));
        emit ExampleLeanConsumer.OutputHashed(subId, 1, NODE_1, keccak256("out"));
        deliverPaid(NODE_1, subId, "", nodeWallet1);

        uint256 protocol = amount * 2 * FEE_BPS / 10_000;
        vm.assertEq(bal(FEE_TO, ETH), protocol, "fee recipient: 2 x FEE");
        vm.assertEq(bal(address(nodeWallet1), ETH) - nodeBefore, amount - protocol, "node: the rest");
        vm.assertEq(consumerBefore - bal(address(consumerWallet), ETH), amount, "consumer: the payment");
        vm.assertEq(consumerWallet.allowance(address(lean), ETH), 0, "allowance spent");
    }

    function test_Lean_OwnerOnlyControls() public {
        uint32 subId = lean.createSubscription("c", 3, 10, 1, false);
        vm.prank(NODE_1);
        vm.expectRevert(ExampleOwned.NotOwner.selector);
        lean.setContainerInputs(hex"02");
        vm.prank(NODE_1);
        vm.expectRevert(ExampleOwned.NotOwner.selector);
        lean.cancelSubscription(subId);
        lean.setContainerInputs(hex"01");
        vm.assertEq(lean.getContainerInputs(subId, 1, T0, NODE_1), hex"01", "updated inputs");
        lean.cancelSubscription(subId);
        vm.warp(T0 + 10);
        expectDeliveryRevert(NODE_1, subId, 1, ICoordinator.SubscriptionNotActive.selector);
    }

    // ------------------------------------------------------------ gas (see snapshots/LeanConsumerTest.json)

    /// @dev One delivery, first interval of a recurring subscription (as in bench/chain_burst.py), to
    /// the lean and the recording example, free and paid in ETH (steady state: the fee recipient was
    /// paid before). The difference is what the recording example's storage writes cost.
    function test_Gas_LeanAndRecordingDeliveries() public {
        vm.deal(FEE_TO, 1);
        _gasCase(address(lean), 0, "leanConsumer_deliver_free");
        _gasCase(address(lean), 1 ether, "leanConsumer_deliver_paid_eth");
        _gasCase(address(recurring), 0, "recordingConsumer_deliver_free");
        _gasCase(address(recurring), 1 ether, "recordingConsumer_deliver_paid_eth");
    }

    function _gasCase(address consumer, uint256 amount, string memory name) private {
        ExampleSubscriptionBase api = ExampleSubscriptionBase(consumer);
        uint32 subId;
        address nodeWallet;
        if (amount == 0) {
            subId = api.createSubscription("c", 1, 10, 1, false);
        } else {
            fundConsumer(consumer, ETH, amount);
            subId = api.createPaidSubscription(
                "c", 1, 10, 1, false, ETH, amount, address(consumerWallet), address(0)
            );
            nodeWallet = address(nodeWallet1);
        }
        vm.warp(block.timestamp + 10);
        vm.prank(NODE_1);
        coordinator.deliverCompute(subId, 1, "in", "result", "proof", nodeWallet);
        vm.snapshotGasLastCall(name);
    }
}
