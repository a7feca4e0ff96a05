// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {Subscription} from "../src/Types.sol";
import {ICoordinator} from "../src/interfaces/ICoordinator.sol";
import {DeliveryRecorder} from "../src/examples/DeliveryRecorder.sol";
import {NoopDelegatorConsumer} from "./mocks/HostileConsumers.sol";

contract DelegationTest is Fixture {
    uint32 internal constant NONCE = 7;
    uint32 internal constant EXPIRY = T0 + 3600;
    uint256 internal constant SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;

    function createSigned(Subscription memory sub, uint32 nonce) internal returns (uint32) {
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, nonce, EXPIRY, sub);
        return coordinator.createSubscriptionDelegatee(nonce, EXPIRY, sub, v, r, s);
    }

    function deliverSigned(address node, Subscription memory sub, uint32 nonce, uint32 interval, bytes memory output)
        internal
    {
        deliverSignedExpecting(node, sub, nonce, interval, output, bytes4(0));
    }

    /// @dev Signs first, then arms expectRevert (a view call in between would consume it).
    function deliverSignedExpecting(
        address node,
        Subscription memory sub,
        uint32 nonce,
        uint32 interval,
        bytes memory output,
        bytes4 err
    ) internal {
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, nonce, EXPIRY, sub);
        if (err != bytes4(0)) vm.expectRevert(err);
        vm.prank(node);
        coordinator.deliverComputeDelegatee(nonce, EXPIRY, sub, v, r, s, interval, "in", output, "", address(0));
    }

    // ------------------------------------------------------------ EIP-712 constants and hashing

    function test_TypehashesMatchInfernetClient() public view {
        vm.assertEq(
            coordinator.SUBSCRIPTION_TYPEHASH(),
            0x3da81ed66ee47395e568c52867826ec137777eef9c1bdfb6bf972dd4385bc5a9,
            "Subscription typehash"
        );
        vm.assertEq(
            coordinator.DELEGATE_SUBSCRIPTION_TYPEHASH(),
            0xba9ff1aef2b048b42767aade2b901745a3acf14f698a9ec13952098cfd03d0b6,
            "DelegateSubscription typehash"
        );
    }

    function test_DomainSeparatorAndEip5267() public view {
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("InfernetCoordinator"),
                keccak256("1"),
                block.chainid,
                address(coordinator)
            )
        );
        vm.assertEq(coordinator.domainSeparator(), expected, "domain separator");
        (bytes1 fields, string memory name, string memory version, uint256 chainId, address verifying, bytes32 salt,) =
            coordinator.eip712Domain();
        vm.assertEq(uint256(uint8(fields)), 0x0f, "fields: name, version, chainId, verifyingContract");
        vm.assertEq(name, "InfernetCoordinator", "name");
        vm.assertEq(version, "1", "version");
        vm.assertEq(chainId, block.chainid, "chain id");
        vm.assertEq(verifying, address(coordinator), "verifying contract");
        vm.assertEq(salt, bytes32(0), "no salt");
    }

    function test_DomainSeparatorFollowsChainIdChange() public {
        bytes32 before = coordinator.domainSeparator();
        vm.chainId(999);
        bytes32 afterFork = coordinator.domainSeparator();
        vm.assertTrue(before != afterFork, "recomputed on a fork");
        vm.assertEq(
            afterFork,
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("InfernetCoordinator"),
                    keccak256("1"),
                    uint256(999),
                    address(coordinator)
                )
            ),
            "uses the new chain id"
        );
    }

    function test_HashDelegateSubscriptionMatchesManualEncoding() public view {
        Subscription memory sub = delegatedSub(T0, 60, 3, 2);
        bytes32 subHash = keccak256(
            abi.encode(
                coordinator.SUBSCRIPTION_TYPEHASH(),
                sub.owner,
                sub.activeAt,
                sub.period,
                sub.frequency,
                sub.redundancy,
                sub.containerId,
                sub.lazy,
                sub.verifier,
                sub.paymentAmount,
                sub.paymentToken,
                sub.wallet
            )
        );
        bytes32 structHash = keccak256(abi.encode(coordinator.DELEGATE_SUBSCRIPTION_TYPEHASH(), NONCE, EXPIRY, subHash));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", coordinator.domainSeparator(), structHash));
        vm.assertEq(coordinator.hashDelegateSubscription(NONCE, EXPIRY, sub), digest, "digest");
    }

    // ------------------------------------------------------------ createSubscriptionDelegatee

    function test_CreateDelegatee_StoresVerbatimAndTracksNonce() public {
        Subscription memory sub = delegatedSub(T0 - 100, 60, 3, 2);
        vm.expectEmit(true, false, false, true, address(coordinator));
        emit ICoordinator.SubscriptionCreated(1);
        uint32 subId = createSigned(sub, NONCE);

        vm.assertEq(subId, 1, "id");
        Subscription memory stored = coordinator.getSubscription(subId);
        vm.assertEq(keccak256(abi.encode(stored)), keccak256(abi.encode(sub)), "stored as signed (activeAt too)");
        vm.assertEq(
            coordinator.delegateCreatedIds(keccak256(abi.encode(address(delegator), NONCE))), subId, "id lookup"
        );
        vm.assertEq(coordinator.maxSubscriberNonce(address(delegator)), NONCE, "max nonce");

        createSigned(delegatedSub(T0, 60, 3, 1), 3);
        vm.assertEq(coordinator.maxSubscriberNonce(address(delegator)), NONCE, "smaller nonce keeps max");
    }

    function test_CreateDelegatee_IsIdempotentEvenAfterExpiry() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        uint32 subId = createSigned(sub, NONCE);
        vm.warp(EXPIRY + 1000);
        vm.assertEq(createSigned(sub, NONCE), subId, "same id");
        vm.assertEq(coordinator.id(), subId + 1, "nothing new created");
    }

    function test_CreateDelegatee_RevertsOnNonceReuseForDifferentSubscription() public {
        createSigned(delegatedSub(T0, 60, 3, 1), NONCE);
        Subscription memory other = delegatedSub(T0, 60, 3, 1);
        other.containerId = containerHash("something-else");
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, other);
        vm.expectRevert(ICoordinator.DelegateNonceReused.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, other, v, r, s);
    }

    function test_CreateDelegatee_CancelledStillResolvesToSameId() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        uint32 subId = createSigned(sub, NONCE);
        delegator.cancelSubscription(subId);
        vm.assertEq(createSigned(sub, NONCE), subId, "cancel does not break the nonce lookup");
    }

    function test_CreateDelegatee_RevertsAtAndAfterExpiry() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, sub);
        vm.warp(EXPIRY);
        vm.expectRevert(ICoordinator.SignatureExpired.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
        vm.warp(EXPIRY - 1);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
    }

    function test_CreateDelegatee_RevertsOnWrongSigner() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(OTHER_KEY, NONCE, EXPIRY, sub);
        vm.expectRevert(ICoordinator.SignerMismatch.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
    }

    function test_CreateDelegatee_FollowsSignerRotation() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, sub);
        delegator.setSigner(vm.addr(OTHER_KEY));
        vm.expectRevert(ICoordinator.SignerMismatch.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
        (v, r, s) = signDelegated(OTHER_KEY, NONCE, EXPIRY, sub);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
    }

    function test_CreateDelegatee_RevertsWhenOwnerHasNoCode() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        sub.owner = signer;
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, sub);
        vm.expectRevert(ICoordinator.SignerMismatch.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
    }

    function test_CreateDelegatee_RejectsHighS() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, sub);
        // (r, n - s, flipped v) recovers the same address: the malleable twin must be refused.
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        uint8 flippedV = v == 27 ? 28 : 27;
        vm.assertEq(ecrecover(coordinator.hashDelegateSubscription(NONCE, EXPIRY, sub), flippedV, r, highS), signer, "twin");
        vm.expectRevert(ICoordinator.InvalidSignature.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, flippedV, r, highS);
    }

    function test_CreateDelegatee_RejectsBadV() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        (, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, sub);
        vm.expectRevert(ICoordinator.InvalidSignature.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, 1, r, s);
    }

    function test_CreateDelegatee_RejectsUnrecoverableSignature() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        vm.expectRevert(ICoordinator.InvalidSignature.selector);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, 27, bytes32(0), bytes32(uint256(1)));
    }

    function test_CreateDelegatee_ValidatesParameters() public {
        Subscription memory sub = delegatedSub(T0, 60, 0, 1);
        expectCreateRevert(sub, ICoordinator.ZeroFrequency.selector);
        sub = delegatedSub(T0, 60, 1, 0);
        expectCreateRevert(sub, ICoordinator.ZeroRedundancy.selector);
        sub = delegatedSub(T0, 0, 2, 1);
        expectCreateRevert(sub, ICoordinator.OneShotFrequencyNotOne.selector);
        sub = delegatedSub(T0, 60, 1, 1);
        sub.containerId = bytes32(0);
        expectCreateRevert(sub, ICoordinator.EmptyContainerId.selector);
        sub.containerId = containerHash("");
        expectCreateRevert(sub, ICoordinator.EmptyContainerId.selector);
        sub = delegatedSub(T0, 60, 1, 1);
        sub.paymentAmount = 1 ether;
        sub.wallet = address(0xbeef);
        expectCreateRevert(sub, ICoordinator.InvalidWallet.selector);
        sub = delegatedSub(T0, 60, 1, 1);
        sub.verifier = address(0x1234);
        expectCreateRevert(sub, ICoordinator.VerifierRequiresPayment.selector);
    }

    function expectCreateRevert(Subscription memory sub, bytes4 err) internal {
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(SIGNER_KEY, NONCE, EXPIRY, sub);
        vm.expectRevert(err);
        coordinator.createSubscriptionDelegatee(NONCE, EXPIRY, sub, v, r, s);
    }

    // ------------------------------------------------------------ deliverComputeDelegatee

    function test_DeliverDelegatee_CreatesAndDeliversInOneCall() public {
        Subscription memory sub = delegatedSub(T0, 0, 1, 2);
        vm.expectEmit(true, true, false, true, address(coordinator));
        emit ICoordinator.SubscriptionFulfilled(1, NODE_1);
        deliverSigned(NODE_1, sub, NONCE, 1, "first");
        DeliveryRecorder.Delivery memory d = delegator.getDelivery(1, 1);
        vm.assertEq(d.node, NODE_1, "delivered by node 1");
        vm.assertEq(d.output, bytes("first"), "output");

        // A second node uses the same signature: resolves to the same subscription.
        deliverSigned(NODE_2, sub, NONCE, 1, "second");
        vm.snapshotGasLastCall("deliverComputeDelegatee_existing");
        vm.assertEq(coordinator.id(), 2, "one subscription");
        vm.assertEq(coordinator.redundancyCount(countKey(1, 1)), 2, "two deliveries");
    }

    function test_DeliverDelegatee_RecurringKeepsWorkingAfterExpiry() public {
        Subscription memory sub = delegatedSub(T0, 60, 3, 1);
        deliverSigned(NODE_1, sub, NONCE, 1, "i1");
        vm.warp(EXPIRY + 60 * 100);
        deliverSignedExpecting(NODE_1, sub, NONCE, 161, "late", ICoordinator.SubscriptionCompleted.selector);
        vm.warp(T0 + 120);
        deliverSigned(NODE_1, sub, NONCE, 3, "i3");
        vm.assertEq(delegator.lastInterval(1), 3, "interval 3 delivered");
    }

    function test_DeliverDelegatee_FailedDeliveryRollsBackCreation() public {
        Subscription memory sub = delegatedSub(T0 + 500, 60, 3, 1);
        deliverSignedExpecting(NODE_1, sub, NONCE, 1, "too early", ICoordinator.SubscriptionNotActive.selector);
        vm.assertEq(coordinator.id(), 1, "nothing created");
        vm.assertEq(coordinator.delegateCreatedIds(keccak256(abi.encode(address(delegator), NONCE))), 0, "no record");
    }

    function test_DeliverDelegatee_NonceAliasingRejected() public {
        deliverSigned(NODE_1, delegatedSub(T0, 0, 1, 1), NONCE, 1, "a");
        Subscription memory other = delegatedSub(T0, 0, 1, 3);
        deliverSignedExpecting(NODE_2, other, NONCE, 1, "b", ICoordinator.DelegateNonceReused.selector);
    }

    function test_DeliverDelegatee_WrongSignerRejected() public {
        Subscription memory sub = delegatedSub(T0, 0, 1, 1);
        (uint8 v, bytes32 r, bytes32 s) = signDelegated(OTHER_KEY, NONCE, EXPIRY, sub);
        vm.prank(NODE_1);
        vm.expectRevert(ICoordinator.SignerMismatch.selector);
        coordinator.deliverComputeDelegatee(NONCE, EXPIRY, sub, v, r, s, 1, "", "x", "", address(0));
    }

    function test_Gas_DeliverDelegateeCreateAndDeliver() public {
        deliverSigned(NODE_1, delegatedSub(T0, 0, 1, 1), NONCE, 1, "result");
        vm.snapshotGasLastCall("deliverComputeDelegatee_create_and_deliver");
    }

    /// @dev Coordinator-only cost of a delegated create-and-deliver (consumer does nothing).
    function test_Gas_DeliverDelegateeNoopConsumer() public {
        NoopDelegatorConsumer noop = new NoopDelegatorConsumer(address(registry), signer);
        Subscription memory sub = delegatedSub(T0, 0, 1, 2);
        sub.owner = address(noop);
        deliverSigned(NODE_1, sub, NONCE, 1, "result");
        vm.snapshotGasLastCall("coordinatorOnly_deliverComputeDelegatee_create_and_deliver");
        deliverSigned(NODE_2, sub, NONCE, 1, "result");
        vm.snapshotGasLastCall("coordinatorOnly_deliverComputeDelegatee_existing");
    }
}
