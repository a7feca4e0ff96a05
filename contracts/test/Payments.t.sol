// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {PaymentsFixture} from "./utils/PaymentsFixture.sol";
import {Subscription} from "../src/Types.sol";
import {ICoordinator} from "../src/interfaces/ICoordinator.sol";
import {IWallet} from "../src/interfaces/IWallet.sol";
import {Wallet} from "../src/payments/Wallet.sol";
import {Registry} from "../src/Registry.sol";
import {NoopConsumer} from "./mocks/HostileConsumers.sol";
import {NoZeroTransferToken, ReentrantToken, ReentrantVerifier} from "./mocks/PaymentMocks.sol";

/// @notice The Coordinator's paid deliveries and proof settlement (SDK v1.1 semantics), balances to
/// the wei, and the holes closed beyond the SDK.
contract PaymentsTest is PaymentsFixture {
    // ------------------------------------------------------------ without a verifier

    function test_PaidEth_PaysFeeRecipientAndNodeToTheWei() public {
        _paysWithoutVerifier(ETH, 1 ether);
    }

    function test_PaidToken_PaysFeeRecipientAndNodeToTheWei() public {
        _paysWithoutVerifier(address(token), 1_234_567); // 5 % x 2 of it rounds down: 123_456
    }

    function _paysWithoutVerifier(address tok, uint256 amount) private {
        fundConsumer(address(callback), tok, amount + 7);
        uint32 subId = paidRequest(tok, amount, address(0));
        uint256 consumerBefore = bal(address(consumerWallet), tok);
        uint256 nodeBefore = bal(address(nodeWallet1), tok);

        vm.expectEmit(true, true, false, true, address(coordinator));
        emit ICoordinator.SubscriptionFulfilled(subId, NODE_1);
        deliverPaid(NODE_1, subId, "", nodeWallet1);

        uint256 protocol = amount * 2 * FEE_BPS / 10_000;
        vm.assertEq(bal(FEE_TO, tok), protocol, "fee recipient: 2 x FEE, rounded down");
        vm.assertEq(bal(address(nodeWallet1), tok) - nodeBefore, amount - protocol, "node: the rest");
        vm.assertEq(
            consumerBefore - bal(address(consumerWallet), tok), amount, "consumer: exactly the payment"
        );
        vm.assertEq(consumerWallet.allowance(address(callback), tok), 7, "allowance spent");
        vm.assertEq(consumerWallet.lockedBalance(tok), 0, "nothing locked");
    }

    function test_Paid_NodeWalletMustComeFromTheFactory() public {
        fundConsumer(address(callback), ETH, 1 ether);
        uint32 subId = paidRequest(ETH, 1 ether, address(0));
        Wallet foreign = new Wallet(address(coordinator), NODE_1);
        vm.expectRevert(ICoordinator.InvalidWallet.selector);
        deliverPaid(NODE_1, subId, "", foreign);
        vm.expectRevert(ICoordinator.InvalidWallet.selector);
        deliverPaid(NODE_1, subId, "", Wallet(payable(address(0))));
        vm.assertEq(coordinator.redundancyCount(countKey(subId, 1)), 0, "nothing recorded");
    }

    function test_Paid_ConsumerMustAllowAndHoldThePayment() public {
        fundConsumer(address(callback), ETH, 1 ether - 1); // allowance one short
        fund(consumerWallet, ETH, 5 ether);
        uint32 subId = paidRequest(ETH, 1 ether, address(0));
        vm.expectRevert(IWallet.InsufficientAllowance.selector);
        deliverPaid(NODE_1, subId, "", nodeWallet1);

        uint32 tokenSub = paidRequest(address(token), 50e6, address(0));
        fundConsumer(address(callback), address(token), 10e6); // approves 10e6 only
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), address(token), 50e6);
        vm.expectRevert(IWallet.InsufficientFunds.selector); // holds 10e6 of 50e6
        deliverPaid(NODE_1, tokenSub, "", nodeWallet1);
        vm.assertEq(coordinator.redundancyCount(countKey(tokenSub, 1)), 0, "whole delivery rolled back");
    }

    function test_Paid_RedundancyTwoPaysEachNode() public {
        fundConsumer(address(callback), ETH, 2 ether);
        uint32 subId =
            callback.requestPaidCompute("c", INPUTS, 2, ETH, 1 ether, address(consumerWallet), address(0));
        uint256 before1 = address(nodeWallet1).balance;
        uint256 before2 = address(nodeWallet2).balance;
        deliverPaid(NODE_1, subId, "", nodeWallet1);
        deliverPaid(NODE_2, subId, "", nodeWallet2);
        vm.assertEq(address(nodeWallet1).balance - before1, 0.9 ether, "node 1 paid");
        vm.assertEq(address(nodeWallet2).balance - before2, 0.9 ether, "node 2 paid");
        vm.assertEq(FEE_TO.balance, 0.2 ether, "fee twice");
        vm.assertEq(address(consumerWallet).balance, 0, "consumer paid twice");
    }

    function test_Paid_LazyDeliveryPaysToo() public {
        fundConsumer(address(recurring), address(token), 3e6);
        uint32 subId = recurring.createPaidSubscription(
            "c", 1, 10, 1, true, address(token), 3e6, address(consumerWallet), address(0)
        );
        vm.warp(T0 + 10);
        vm.prank(NODE_1);
        coordinator.deliverCompute(subId, 1, "in", "out", "", address(nodeWallet1));
        vm.assertEq(token.balanceOf(FEE_TO), 0.3e6, "fee");
        vm.assertEq(token.balanceOf(address(nodeWallet1)), 100e6 + 2.7e6, "node");
        vm.assertEq(inbox.read(containerHash("c"), NODE_1, 0).output, bytes("out"), "output in the Inbox");
    }

    function test_Paid_DelegatedSubscriptionPays() public {
        fundConsumer(address(delegator), ETH, 1 ether);
        Subscription memory sub = delegatedSub(T0, 0, 1, 1);
        sub.paymentAmount = 1 ether;
        sub.wallet = address(consumerWallet);
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, 1, T0 + 1 hours, sub);
        vm.prank(NODE_1);
        coordinator.deliverComputeDelegatee(
            1, T0 + 1 hours, sub, v, r, s, 1, "in", "out", "", address(nodeWallet1)
        );
        vm.assertEq(address(nodeWallet1).balance, 100.9 ether, "node paid");
        vm.assertEq(address(consumerWallet).balance, 0, "consumer paid");
    }

    function test_Paid_FeeIsReadAtDelivery() public {
        fundConsumer(address(callback), ETH, 1 ether);
        uint32 subId = paidRequest(ETH, 1 ether, address(0));
        vm.prank(FEE_TO);
        feeContract.updateFee(1000);
        deliverPaid(NODE_1, subId, "", nodeWallet1);
        vm.assertEq(FEE_TO.balance, 0.2 ether, "the fee in force when delivered");
    }

    /// Hole: the SDK always transfers the protocol fee, even 0, so a token that rejects zero-amount
    /// transfers made every paid delivery revert while FEE was 0.
    function test_Paid_ZeroAmountsAreNotTransferred() public {
        vm.prank(FEE_TO);
        feeContract.updateFee(0);
        NoZeroTransferToken strict = new NoZeroTransferToken();
        strict.mint(address(consumerWallet), 5);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), address(strict), 5);
        uint32 subId = paidRequest(address(strict), 5, address(0));
        deliverPaid(NODE_1, subId, "", nodeWallet1);
        vm.assertEq(strict.balanceOf(address(nodeWallet1)), 5, "all to the node, no zero transfer");
    }

    // ------------------------------------------------------------ atomic verifier

    function test_AtomicValid_PaysNodeInTheSameTransaction() public {
        _atomic(ETH, 1 ether, true);
        _atomic(address(token), 20e6, true);
    }

    function test_AtomicInvalid_SlashesTheNodesStake() public {
        _atomic(ETH, 1 ether, false);
        _atomic(address(token), 20e6, false);
    }

    function _atomic(address tok, uint256 amount, bool valid) private {
        fundConsumer(address(callback), tok, amount);
        uint32 subId = paidRequest(tok, amount, address(atomic));
        uint256 fee = verifierFeeOf(tok);
        uint256 protocol = protocolShare(amount, fee, FEE_BPS);
        uint256 escrowed = amount - amount * 2 * FEE_BPS / 10_000 - fee;
        uint256 nodeBefore = bal(address(nodeWallet1), tok);
        uint256 consumerBefore = bal(address(consumerWallet), tok);
        uint256 feeToBefore = bal(FEE_TO, tok);
        uint256 verifierBefore = bal(VERIFIER_WALLET, tok);

        vm.expectEmit(true, true, true, true, address(coordinator));
        emit ICoordinator.ProofVerified(subId, 1, NODE_1, true, address(atomic), valid);
        deliverPaid(NODE_1, subId, valid ? GOOD_PROOF : BAD_PROOF, nodeWallet1);

        vm.assertEq(bal(FEE_TO, tok) - feeToBefore, protocol, "protocol: 2 x FEE + FEE of the verifier fee");
        vm.assertEq(bal(VERIFIER_WALLET, tok) - verifierBefore, fee - fee * FEE_BPS / 10_000, "verifier net");
        if (valid) {
            vm.assertEq(bal(address(nodeWallet1), tok) - nodeBefore, escrowed, "node: the escrow");
            vm.assertEq(consumerBefore - bal(address(consumerWallet), tok), amount, "consumer: the payment");
        } else {
            vm.assertEq(nodeBefore - bal(address(nodeWallet1), tok), amount, "node: stake slashed");
            vm.assertEq(
                bal(address(consumerWallet), tok) - consumerBefore,
                amount - protocol - (fee - fee * FEE_BPS / 10_000),
                "consumer: stake in, fees out"
            );
        }
        vm.assertEq(nodeWallet1.lockedBalance(tok), 0, "node stake unlocked");
        vm.assertEq(consumerWallet.lockedBalance(tok), 0, "consumer escrow unlocked");
        vm.assertEq(
            nodeWallet1.allowance(NODE_1, tok),
            valid ? type(uint256).max : type(uint256).max - amount,
            "node allowance"
        );
        (uint32 expiry,,) = coordinator.proofRequests(nodeKey(subId, 1, NODE_1));
        vm.assertEq(expiry, 0, "request settled");
    }

    function test_Verifier_PreconditionsOfAProofDelivery() public {
        fundConsumer(address(callback), ETH, 1 ether);
        uint32 subId = paidRequest(ETH, 1 ether, address(atomic));

        atomic.setTokenFee(ETH, false, 0);
        vm.expectRevert(ICoordinator.UnsupportedVerifierToken.selector);
        deliverPaid(NODE_1, subId, GOOD_PROOF, nodeWallet1);

        atomic.setTokenFee(ETH, true, 0.9 ether + 1); // more than is left after the 10 % protocol cut
        vm.expectRevert(ICoordinator.VerifierFeeTooHigh.selector);
        deliverPaid(NODE_1, subId, GOOD_PROOF, nodeWallet1);

        atomic.setTokenFee(ETH, true, VERIFIER_FEE_ETH);
        vm.prank(NODE_1);
        nodeWallet1.approve(NODE_1, ETH, 1 ether - 1); // the node's key may not lock its stake
        vm.expectRevert(IWallet.InsufficientAllowance.selector);
        deliverPaid(NODE_1, subId, GOOD_PROOF, nodeWallet1);

        Wallet poorWallet = Wallet(payable(factory.createWallet(NODE_2)));
        vm.prank(NODE_2);
        poorWallet.approve(NODE_2, ETH, 10 ether);
        fund(poorWallet, ETH, 1 ether - 1);
        vm.expectRevert(IWallet.InsufficientFunds.selector); // cannot stake 1 ether
        deliverPaid(NODE_2, subId, GOOD_PROOF, poorWallet);

        vm.prank(NODE_1); // someone else's wallet: the sender is not its spender
        vm.expectRevert(IWallet.InsufficientAllowance.selector);
        coordinator.deliverCompute(subId, 1, "in", "out", GOOD_PROOF, address(nodeWallet2));
    }

    // ------------------------------------------------------------ optimistic verifier

    function test_Optimistic_LocksUntilTheVerifierSettlesValid() public {
        (uint32 subId, uint256 escrowed) = _optimisticDelivery(ETH, 1 ether);
        (uint32 expiry, address wallet, uint256 held) = coordinator.proofRequests(nodeKey(subId, 1, NODE_1));
        vm.assertEq(expiry, T0 + 1 weeks, "a week to decide");
        vm.assertEq(wallet, address(nodeWallet1), "node wallet");
        vm.assertEq(held, escrowed, "consumer escrow recorded");
        vm.assertEq(nodeWallet1.lockedBalance(ETH), 1 ether, "node stake = payment");
        vm.assertEq(consumerWallet.lockedBalance(ETH), escrowed, "consumer escrow");
        vm.assertEq(nodeWallet1.unlockedBalance(ETH), 99 ether, "stake not spendable");

        vm.prank(NODE_1);
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        nodeWallet1.withdraw(ETH, 100 ether);
        vm.prank(CONSUMER_OWNER);
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.withdraw(ETH, escrowed);

        vm.prank(STRANGER);
        vm.expectRevert(ICoordinator.UnauthorizedVerifier.selector);
        coordinator.finalizeProofVerification(subId, 1, NODE_1, true);

        vm.expectEmit(true, true, true, true, address(coordinator));
        emit ICoordinator.ProofVerified(subId, 1, NODE_1, true, address(optimistic), true);
        optimistic.resolve(subId, 1, NODE_1, true);
        vm.assertEq(address(nodeWallet1).balance, 100 ether + escrowed, "node paid");
        vm.assertEq(nodeWallet1.lockedBalance(ETH), 0, "stake released");
        vm.assertEq(consumerWallet.lockedBalance(ETH), 0, "escrow paid out");

        vm.prank(address(optimistic));
        vm.expectRevert(ICoordinator.ProofRequestNotFound.selector);
        coordinator.finalizeProofVerification(subId, 1, NODE_1, false);
    }

    function test_Optimistic_SettledInvalidSlashes() public {
        (uint32 subId, uint256 escrowed) = _optimisticDelivery(address(token), 5e6);
        uint256 consumerBefore = token.balanceOf(address(consumerWallet));
        optimistic.resolve(subId, 1, NODE_1, false);
        vm.assertEq(token.balanceOf(address(nodeWallet1)), 95e6, "stake slashed");
        vm.assertEq(token.balanceOf(address(consumerWallet)) - consumerBefore, 5e6, "stake to the consumer");
        vm.assertEq(consumerWallet.unlockedBalance(address(token)), consumerBefore + 5e6, "escrow unlocked");
        vm.assertEq(
            consumerWallet.allowance(address(callback), address(token)), escrowed, "escrow allowance back"
        );
    }

    function test_Optimistic_AfterExpiryAnyoneSettlesForTheNode() public {
        (uint32 subId, uint256 escrowed) = _optimisticDelivery(ETH, 1 ether);
        vm.warp(T0 + 1 weeks - 1);
        vm.prank(STRANGER);
        vm.expectRevert(ICoordinator.UnauthorizedVerifier.selector);
        coordinator.finalizeProofVerification(subId, 1, NODE_1, true);

        vm.warp(T0 + 1 weeks);
        vm.expectEmit(true, true, true, true, address(coordinator));
        emit ICoordinator.ProofVerified(subId, 1, NODE_1, false, STRANGER, true);
        vm.prank(STRANGER);
        coordinator.finalizeProofVerification(subId, 1, NODE_1, false); // `valid` no longer matters
        vm.assertEq(address(nodeWallet1).balance, 100 ether + escrowed, "node paid");
        vm.assertEq(nodeWallet1.lockedBalance(ETH), 0, "stake released");
    }

    function test_Optimistic_CancelledSubscriptionStillSettles() public {
        fundConsumer(address(recurring), ETH, 2 ether);
        uint32 subId = recurring.createPaidSubscription(
            "c", 2, 10, 1, false, ETH, 1 ether, address(consumerWallet), address(optimistic)
        );
        vm.warp(T0 + 10);
        vm.prank(NODE_1);
        coordinator.deliverCompute(subId, 1, "", "out", "p", address(nodeWallet1));
        recurring.cancelSubscription(subId);
        optimistic.resolve(subId, 1, NODE_1, true);
        vm.assertEq(nodeWallet1.lockedBalance(ETH), 0, "released after cancel");
    }

    function test_Finalize_UnknownRequest() public {
        vm.expectRevert(ICoordinator.ProofRequestNotFound.selector);
        coordinator.finalizeProofVerification(1, 1, NODE_1, true);
    }

    function _optimisticDelivery(address tok, uint256 amount)
        private
        returns (uint32 subId, uint256 escrowed)
    {
        fundConsumer(address(callback), tok, amount);
        subId = paidRequest(tok, amount, address(optimistic));
        deliverPaid(NODE_1, subId, "some-proof", nodeWallet1);
        escrowed = amount - amount * 2 * FEE_BPS / 10_000 - verifierFeeOf(tok);
        vm.assertEq(optimistic.pendingProofs(nodeKey(subId, 1, NODE_1)), keccak256("some-proof"), "recorded");
    }

    // ------------------------------------------------------------ holes closed

    /// Hole: the SDK's cTransfer ignores locks, so another delivery could spend money escrowed for an
    /// open proof request, which then could never be paid (and kept the node's stake locked).
    function test_Escrow_CannotBeSpentByOtherDeliveries() public {
        (uint32 proofSub, uint256 escrowed) = _optimisticDelivery(ETH, 1 ether);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), ETH, 10 ether);
        uint32 other = paidRequest(ETH, escrowed, address(0)); // exactly what is escrowed
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        deliverPaid(NODE_2, other, "", nodeWallet2);

        optimistic.resolve(proofSub, 1, NODE_1, true);
        vm.assertEq(address(nodeWallet1).balance, 100 ether + escrowed, "the escrow still pays the node");
    }

    /// Hole: re-approving type(uint256).max while funds are locked made the SDK's cUnlock overflow,
    /// so a consumer could freeze settlement and the node's stake for good.
    function test_Escrow_ReapprovingMaxCannotFreezeSettlement() public {
        (uint32 subId, uint256 escrowed) = _optimisticDelivery(ETH, 1 ether);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), ETH, type(uint256).max);
        optimistic.resolve(subId, 1, NODE_1, true);
        vm.assertEq(address(nodeWallet1).balance, 100 ether + escrowed, "settled");
        vm.assertEq(
            consumerWallet.allowance(address(callback), ETH), type(uint256).max - escrowed, "saturated"
        );
    }

    /// Hole (Trail of Bits, High): finalizeProofVerification re-entered through a token could pay twice.
    /// After expiry anyone is authorized, so only the lock and effects-first order stop the re-entry.
    function test_Finalize_ReentryThroughTheTokenIsRejected() public {
        ReentrantToken evil = new ReentrantToken();
        evil.mint(address(consumerWallet), 10e6);
        evil.mint(address(nodeWallet1), 10e6);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), address(evil), 10e6);
        vm.prank(NODE_1);
        nodeWallet1.approve(NODE_1, address(evil), 10e6);
        optimistic.setTokenFee(address(evil), true, 0);
        uint32 subId = paidRequest(address(evil), 10e6, address(optimistic));
        deliverPaid(NODE_1, subId, "p", nodeWallet1);

        evil.arm(
            address(coordinator),
            abi.encodeCall(ICoordinator.finalizeProofVerification, (subId, uint32(1), NODE_1, true))
        );
        vm.warp(T0 + 1 weeks);
        vm.prank(STRANGER);
        coordinator.finalizeProofVerification(subId, 1, NODE_1, true);
        vm.assertEq(
            evil.reentryResult(), abi.encodeWithSelector(ICoordinator.Reentrancy.selector), "Reentrancy()"
        );
        vm.assertEq(evil.balanceOf(address(nodeWallet1)), 10e6 + 9e6, "paid once");
    }

    function test_Deliver_ReentryFromTheTokenOrVerifierIsRejected() public {
        ReentrantToken evil = new ReentrantToken();
        evil.mint(address(consumerWallet), 10e6);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), address(evil), 10e6);
        uint32 subId = paidRequest(address(evil), 10e6, address(0));
        evil.arm(
            address(coordinator),
            abi.encodeCall(ICoordinator.deliverCompute, (subId, uint32(1), "", "x", "", address(nodeWallet2)))
        );
        deliverPaid(NODE_1, subId, "", nodeWallet1);
        vm.assertEq(evil.reentryResult(), abi.encodeWithSelector(ICoordinator.Reentrancy.selector), "token");

        ReentrantVerifier sneaky = new ReentrantVerifier();
        fundConsumer(address(callback), ETH, 1 ether);
        uint32 proofSub = paidRequest(ETH, 1 ether, address(sneaky));
        deliverPaid(NODE_1, proofSub, "p", nodeWallet1);
        vm.assertEq(
            sneaky.reentryResult(), abi.encodeWithSelector(ICoordinator.Reentrancy.selector), "verifier"
        );
        vm.assertEq(coordinator.redundancyCount(countKey(proofSub, 1)), 1, "delivered once");
    }

    function test_Create_PaidSubscriptionsNeedAFactoryWalletAndVerifiersAPayment() public {
        address foreign = address(new Wallet(address(coordinator), CONSUMER_OWNER));
        vm.expectRevert(ICoordinator.InvalidWallet.selector);
        callback.requestPaidCompute("c", INPUTS, 1, ETH, 1, foreign, address(0));
        vm.expectRevert(ICoordinator.VerifierRequiresPayment.selector);
        callback.requestPaidCompute("c", INPUTS, 1, ETH, 0, address(consumerWallet), address(atomic));
        uint32 subId = paidRequest(ETH, 1, address(atomic));
        Subscription memory sub = coordinator.getSubscription(subId);
        vm.assertEq(sub.verifier, address(atomic), "verifier stored");
        vm.assertEq(sub.paymentAmount, 1, "amount stored");
        vm.assertEq(sub.wallet, address(consumerWallet), "wallet stored");
    }

    function test_Registry_TakesTheCoordinatorsFeeAndFactory() public {
        vm.expectRevert(Registry.RegistryMismatch.selector);
        new Registry(address(coordinator), address(inbox), address(reader), address(0xbad), address(0));
        vm.expectRevert(Registry.RegistryMismatch.selector);
        new Registry(address(coordinator), address(inbox), address(reader), address(0), address(0xbad));
        Registry explicit = new Registry(
            address(coordinator),
            address(inbox),
            address(reader),
            coordinator.fee(),
            coordinator.walletFactory()
        );
        vm.assertEq(explicit.FEE(), address(feeContract), "fee");
        vm.assertEq(explicit.WALLET_FACTORY(), address(factory), "factory");
    }

    // ------------------------------------------------------------ gas (see snapshots/PaymentsTest.json)

    /// @dev Coordinator-only cost of one paid delivery (no-op consumer), per token and verifier kind,
    /// in the steady state: the fee recipient and the verifier's wallet have been paid before (a first
    /// payment to an empty account costs 25,000 more in ETH, 17,100 more in an ERC-20 balance).
    function test_Gas_PaidDeliveries() public {
        NoopConsumer noop = new NoopConsumer(address(registry));
        vm.deal(FEE_TO, 1);
        vm.deal(VERIFIER_WALLET, 1);
        token.mint(FEE_TO, 1);
        token.mint(VERIFIER_WALLET, 1);
        _gasCase(noop, ETH, 1 ether, address(0), "", "coordinatorOnly_paid_eth");
        _gasCase(noop, address(token), 1e6, address(0), "", "coordinatorOnly_paid_erc20");
        _gasCase(noop, ETH, 1 ether, address(atomic), GOOD_PROOF, "coordinatorOnly_paid_eth_atomicVerifier");
        _gasCase(
            noop,
            address(token),
            1e6,
            address(atomic),
            GOOD_PROOF,
            "coordinatorOnly_paid_erc20_atomicVerifier"
        );
        uint32 eth = _gasCase(
            noop, ETH, 1 ether, address(optimistic), "p", "coordinatorOnly_paid_eth_optimisticVerifier"
        );
        uint32 erc = _gasCase(
            noop,
            address(token),
            1e6,
            address(optimistic),
            "p",
            "coordinatorOnly_paid_erc20_optimisticVerifier"
        );
        vm.prank(address(optimistic));
        coordinator.finalizeProofVerification(eth, 1, NODE_1, true);
        vm.snapshotGasLastCall("finalizeProofVerification_eth_valid");
        vm.prank(address(optimistic));
        coordinator.finalizeProofVerification(erc, 1, NODE_1, false);
        vm.snapshotGasLastCall("finalizeProofVerification_erc20_invalid");
    }

    function _gasCase(
        NoopConsumer noop,
        address tok,
        uint256 amount,
        address verifier,
        bytes memory proof,
        string memory name
    ) private returns (uint32 subId) {
        fundConsumer(address(noop), tok, amount);
        subId = noop.paidRequest(tok, amount, address(consumerWallet), verifier);
        deliverPaid(NODE_1, subId, proof, nodeWallet1);
        vm.snapshotGasLastCall(name);
    }
}
