// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {PaymentsFixture} from "./utils/PaymentsFixture.sol";
import {IWallet} from "../src/interfaces/IWallet.sol";

/// @notice Money properties over random amounts, fees and outcomes: the SDK's fee formula with
/// rounding down, nothing created or lost, escrow conservation (what is locked is exactly what is
/// later released or slashed), and no balance or unlocked amount ever below zero.
contract PaymentsFuzzTest is PaymentsFixture {
    /// Without a verifier: recipient gets floor(amount * 2 * FEE / 1e4), the node the rest, the
    /// consumer pays exactly `amount`.
    function testFuzz_FeeSplitWithoutVerifier(uint256 amount, uint16 feeBps, bool inToken) public {
        address tok = inToken ? address(token) : ETH;
        amount = bound(amount, 1, 1e30);
        feeBps = uint16(bound(feeBps, 0, 5000));
        vm.prank(FEE_TO);
        feeContract.updateFee(feeBps);
        fundConsumer(address(callback), tok, amount);
        uint32 subId = paidRequest(tok, amount, address(0));
        uint256 nodeBefore = bal(address(nodeWallet1), tok);

        deliverPaid(NODE_1, subId, "", nodeWallet1);

        uint256 protocol = amount * 2 * feeBps / 10_000;
        vm.assertEq(bal(FEE_TO, tok), protocol, "protocol cut, rounded down");
        vm.assertEq(bal(address(nodeWallet1), tok) - nodeBefore, amount - protocol, "node gets the rest");
        vm.assertEq(bal(address(consumerWallet), tok), 0, "consumer paid exactly amount");
        vm.assertEq(consumerWallet.allowance(address(callback), tok), 0, "allowance spent exactly");
    }

    struct ProofCase {
        address tok;
        uint256 amount;
        uint256 fees; // protocol cut + verifier fee
        uint256 escrowed;
        uint8 outcome; // 0 valid, 1 invalid, 2 expired
        uint32 subId;
        uint256 nodeBefore;
        uint256 totalBefore;
    }

    /// With a verifier, settled valid / invalid / after expiry: locks match the request, both locks
    /// return to zero, the outcome moves exactly the escrow or exactly the stake, and the four parties'
    /// total is unchanged.
    function testFuzz_ProofEscrowConservation(
        uint256 amount,
        uint16 feeBps,
        uint256 vFee,
        uint8 outcome,
        bool inToken
    ) public {
        ProofCase memory c = _deliverWithProof(amount, feeBps, vFee, outcome, inToken);
        vm.assertEq(nodeWallet1.lockedBalance(c.tok), c.amount, "node stake locked");
        vm.assertEq(consumerWallet.lockedBalance(c.tok), c.escrowed, "consumer escrow locked");
        vm.assertEq(bal(address(consumerWallet), c.tok), c.escrowed, "consumer holds only the escrow");
        (,, uint256 recorded) = coordinator.proofRequests(nodeKey(c.subId, 1, NODE_1));
        vm.assertEq(recorded, c.escrowed, "request records the consumer escrow");

        if (c.outcome == 2) {
            vm.warp(T0 + 1 weeks);
            vm.prank(STRANGER);
            coordinator.finalizeProofVerification(c.subId, 1, NODE_1, false);
        } else {
            optimistic.resolve(c.subId, 1, NODE_1, c.outcome == 0);
        }

        vm.assertEq(nodeWallet1.lockedBalance(c.tok), 0, "stake released or slashed");
        vm.assertEq(consumerWallet.lockedBalance(c.tok), 0, "escrow released or paid");
        if (c.outcome == 1) {
            vm.assertEq(
                c.nodeBefore - bal(address(nodeWallet1), c.tok), c.amount, "slashed exactly the stake"
            );
            vm.assertEq(
                bal(address(consumerWallet), c.tok), c.escrowed + c.amount, "escrow back plus the stake"
            );
            vm.assertEq(
                consumerWallet.allowance(address(callback), c.tok), c.escrowed, "escrow allowance back"
            );
        } else {
            vm.assertEq(
                bal(address(nodeWallet1), c.tok) - c.nodeBefore, c.escrowed, "paid exactly the escrow"
            );
            vm.assertEq(bal(address(consumerWallet), c.tok), 0, "consumer paid exactly amount");
            vm.assertEq(consumerWallet.allowance(address(callback), c.tok), 0, "allowance spent exactly");
        }
        vm.assertEq(_total(c.tok), c.totalBefore, "nothing created or lost");
        vm.assertEq(bal(FEE_TO, c.tok) + bal(VERIFIER_WALLET, c.tok), c.fees, "fees: protocol + verifier");
    }

    function _deliverWithProof(uint256 amount, uint16 feeBps, uint256 vFee, uint8 outcome, bool inToken)
        private
        returns (ProofCase memory c)
    {
        c.tok = inToken ? address(token) : ETH;
        c.amount = bound(amount, 1, 1e30);
        feeBps = uint16(bound(feeBps, 0, 5000));
        uint256 available = c.amount - c.amount * 2 * feeBps / 10_000;
        vFee = bound(vFee, 0, available);
        c.fees = c.amount - available + vFee;
        c.escrowed = available - vFee;
        c.outcome = uint8(bound(outcome, 0, 2));
        vm.prank(FEE_TO);
        feeContract.updateFee(feeBps);
        optimistic.setTokenFee(c.tok, true, vFee);
        fundConsumer(address(callback), c.tok, c.amount);
        fund(nodeWallet1, c.tok, c.amount); // stake
        c.subId = paidRequest(c.tok, c.amount, address(optimistic));
        c.nodeBefore = bal(address(nodeWallet1), c.tok);
        c.totalBefore = _total(c.tok);
        deliverPaid(NODE_1, c.subId, "proof", nodeWallet1);
    }

    /// Owner withdrawals succeed exactly up to the unlocked balance; locked funds stay covered.
    function testFuzz_UnlockedNeverNegative(uint256 deposit, uint256 locked, uint256 withdrawal) public {
        deposit = bound(deposit, 0, 1e30);
        locked = bound(locked, 0, deposit);
        withdrawal = bound(withdrawal, 0, 2e30);
        fundConsumer(address(callback), ETH, deposit);
        vm.prank(address(coordinator));
        consumerWallet.cLock(address(callback), ETH, locked);
        vm.assertEq(consumerWallet.unlockedBalance(ETH), deposit - locked, "unlocked = balance - locked");

        vm.prank(CONSUMER_OWNER);
        if (withdrawal > deposit - locked) {
            vm.expectRevert(IWallet.InsufficientFunds.selector);
            consumerWallet.withdraw(ETH, withdrawal);
        } else {
            consumerWallet.withdraw(ETH, withdrawal);
        }
        vm.assertTrue(
            address(consumerWallet).balance >= consumerWallet.lockedBalance(ETH), "locked funds covered"
        );
        vm.prank(address(coordinator));
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.cUnlock(address(callback), ETH, locked + 1);
    }

    function _total(address tok) private view returns (uint256) {
        return bal(address(consumerWallet), tok) + bal(address(nodeWallet1), tok) + bal(FEE_TO, tok)
            + bal(VERIFIER_WALLET, tok);
    }
}
