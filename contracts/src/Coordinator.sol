// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Subscription, ProofRequest} from "./Types.sol";
import {ICoordinator} from "./interfaces/ICoordinator.sol";
import {IConsumer, IDelegator} from "./interfaces/IConsumer.sol";
import {IInbox} from "./interfaces/IInbox.sol";
import {IFee} from "./interfaces/IFee.sol";
import {IVerifier} from "./interfaces/IVerifier.sol";
import {IWallet} from "./interfaces/IWallet.sol";
import {IWalletFactory} from "./interfaces/IWalletFactory.sol";
import {Inbox} from "./Inbox.sol";
import {Fee} from "./payments/Fee.sol";
import {WalletFactory} from "./payments/WalletFactory.sol";

/// @title Coordinator
/// @notice Issues compute subscriptions and accepts node deliveries, with EIP-712 delegated
/// (off-chain signed) subscriptions, and the SDK v1.1 payment and proof flow (Wallets, protocol fee,
/// verifiers). The external ABI is infernet-sdk v1.x's; on top of it every subscription is validated
/// at creation (a paid one must name a factory Wallet), a delegate nonce cannot alias a different
/// subscription, signatures must be canonical (low-s), deliveries hold a re-entrancy lock and update
/// accounting before any external call, and proof requests are settled effects-first under their own
/// lock (see docs/contracts.md for each hole closed).
contract Coordinator is ICoordinator {
    /// @dev Storage layout ordered for packing (6 slots instead of the SDK's 7); the public
    /// `Subscription` order is rebuilt in `getSubscription`.
    struct StoredSubscription {
        address owner;
        uint32 activeAt;
        uint32 period;
        uint32 frequency;
        uint16 redundancy;
        bool lazy;
        address verifier;
        bool paid; // paymentAmount != 0: free deliveries never read the payment slots
        bytes32 containerId;
        uint256 paymentAmount;
        address paymentToken;
        address wallet;
    }

    /// @dev A paid subscription's payment terms, read once per paid delivery or settlement.
    struct Terms {
        IWallet consumer;
        address owner;
        address token;
        uint256 amount;
    }

    string public constant EIP712_NAME = "InfernetCoordinator";
    string public constant EIP712_VERSION = "1";

    bytes32 public constant SUBSCRIPTION_TYPEHASH = keccak256(
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,uint16 redundancy,"
        "bytes32 containerId,bool lazy,address verifier,uint256 paymentAmount,address paymentToken,"
        "address wallet)"
    );
    bytes32 public constant DELEGATE_SUBSCRIPTION_TYPEHASH = keccak256(
        "DelegateSubscription(uint32 nonce,uint32 expiry,Subscription sub)"
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,uint16 redundancy,"
        "bytes32 containerId,bool lazy,address verifier,uint256 paymentAmount,address paymentToken,"
        "address wallet)"
    );
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// @dev keccak256(abi.encode("")): the container hash of an empty container list.
    bytes32 private constant _EMPTY_CONTAINER_HASH = keccak256(abi.encode(""));
    /// @dev Largest canonical `s` (secp256k1n / 2); larger values are malleable twins.
    uint256 private constant _MAX_LOW_S = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint32 private constant _CANCELLED = type(uint32).max;
    uint256 private constant _UNLOCKED = 1;
    uint256 private constant _DELIVERING = 2;
    uint256 private constant _FINALIZING = 3;
    /// @dev How long a verifier has to settle a proof request before anyone may settle it for the node.
    uint32 private constant _PROOF_WINDOW = 1 weeks;
    uint256 private constant _BPS = 10_000;

    IInbox private immutable _INBOX;
    IFee private immutable _FEE;
    IWalletFactory private immutable _WALLET_FACTORY;
    bytes32 private immutable _CACHED_DOMAIN_SEPARATOR;
    uint256 private immutable _CACHED_CHAIN_ID;

    /// @inheritdoc ICoordinator
    uint32 public id = 1;

    /// @inheritdoc ICoordinator
    mapping(bytes32 => uint16) public redundancyCount;
    /// @inheritdoc ICoordinator
    mapping(bytes32 => bool) public nodeResponded;
    /// @inheritdoc ICoordinator
    mapping(address => uint32) public maxSubscriberNonce;
    /// @inheritdoc ICoordinator
    mapping(bytes32 => ProofRequest) public proofRequests;

    mapping(uint32 => StoredSubscription) private _subscriptions;
    /// @dev keccak256(abi.encode(owner, nonce)) => (top 224 bits of the signed sub's struct hash << 32) | id.
    /// One slot holds both the SDK's id lookup and what the nonce was used for.
    mapping(bytes32 => uint256) private _delegateRecords;
    uint256 private _lock = _UNLOCKED;

    /// @dev Creates its Inbox, WalletFactory and Fee (owned by the deployer, FEE 0), so one transaction
    /// deploys a consistent set and nothing needs precomputed addresses.
    constructor() {
        _INBOX = IInbox(address(new Inbox(address(this))));
        _FEE = IFee(address(new Fee(msg.sender, 0)));
        _WALLET_FACTORY = IWalletFactory(address(new WalletFactory(address(this))));
        _CACHED_CHAIN_ID = block.chainid;
        _CACHED_DOMAIN_SEPARATOR = _buildDomainSeparator();
    }

    /// @dev Deliveries never nest, and nothing delivers while a proof request is being settled.
    modifier nonReentrant() {
        if (_lock != _UNLOCKED) revert Reentrancy();
        _lock = _DELIVERING;
        _;
        _lock = _UNLOCKED;
    }

    // ------------------------------------------------------------------ subscriptions

    /// @inheritdoc ICoordinator
    function createSubscription(
        string memory containerId,
        uint32 frequency,
        uint32 period,
        uint16 redundancy,
        bool lazy,
        address paymentToken,
        uint256 paymentAmount,
        address wallet,
        address verifier
    ) external returns (uint32) {
        if (bytes(containerId).length == 0) revert EmptyContainerId();
        Subscription memory sub = Subscription({
            owner: msg.sender,
            activeAt: uint32(block.timestamp) + period,
            period: period,
            frequency: frequency,
            redundancy: redundancy,
            containerId: keccak256(abi.encode(containerId)),
            lazy: lazy,
            verifier: verifier,
            paymentAmount: paymentAmount,
            paymentToken: paymentToken,
            wallet: wallet
        });
        _validate(sub);
        return _store(sub);
    }

    /// @inheritdoc ICoordinator
    function cancelSubscription(uint32 subscriptionId) external {
        if (_subscriptions[subscriptionId].owner != msg.sender) revert NotSubscriptionOwner();
        _subscriptions[subscriptionId].activeAt = _CANCELLED;
        emit SubscriptionCancelled(subscriptionId);
    }

    /// @inheritdoc ICoordinator
    function getSubscription(uint32 subscriptionId) external view returns (Subscription memory sub) {
        StoredSubscription storage s = _subscriptions[subscriptionId];
        sub.owner = s.owner;
        sub.activeAt = s.activeAt;
        sub.period = s.period;
        sub.frequency = s.frequency;
        sub.redundancy = s.redundancy;
        sub.containerId = s.containerId;
        sub.lazy = s.lazy;
        sub.verifier = s.verifier;
        sub.paymentAmount = s.paymentAmount;
        sub.paymentToken = s.paymentToken;
        sub.wallet = s.wallet;
    }

    /// @inheritdoc ICoordinator
    /// @dev Unlike the SDK (which underflows), returns 0 before `activeAt`.
    function getSubscriptionInterval(uint32 activeAt, uint32 period) public view returns (uint32) {
        uint32 now_ = uint32(block.timestamp);
        if (now_ < activeAt) return 0;
        if (period == 0) return 1;
        uint256 interval = uint256(now_ - activeAt) / period + 1;
        return interval > type(uint32).max ? type(uint32).max : uint32(interval);
    }

    // ------------------------------------------------------------------ delivery

    /// @inheritdoc ICoordinator
    /// @dev `nodeWallet` is only read for paid subscriptions (paid into it; with a verifier the node's
    /// stake is locked in it from `msg.sender`'s allowance).
    function deliverCompute(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        address nodeWallet
    ) external nonReentrant {
        _deliver(subscriptionId, deliveryInterval, input, output, proof, nodeWallet);
    }

    /// @inheritdoc ICoordinator
    /// @dev SDK-flat signature (selector 0x9fff314a). Creation and delivery are atomic.
    function deliverComputeDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription memory sub,
        uint8 v,
        bytes32 r,
        bytes32 s,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        address nodeWallet
    ) external nonReentrant {
        uint32 subscriptionId = _createDelegated(nonce, expiry, sub, v, r, s);
        _deliver(subscriptionId, deliveryInterval, input, output, proof, nodeWallet);
    }

    function _deliver(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        address nodeWallet
    ) private {
        StoredSubscription storage s = _subscriptions[subscriptionId];
        address owner = s.owner;
        if (owner == address(0)) revert SubscriptionNotFound();
        uint32 activeAt = s.activeAt;
        if (uint32(block.timestamp) < activeAt) revert SubscriptionNotActive();
        uint32 interval = getSubscriptionInterval(activeAt, s.period);
        if (interval != deliveryInterval) revert IntervalMismatch();
        if (interval > s.frequency) revert SubscriptionCompleted();

        // Effects before the consumer call: a consumer that re-enters or reverts cannot skew counts.
        uint16 count = _recordDelivery(subscriptionId, interval, s.redundancy);
        if (s.paid) _settlePayment(subscriptionId, interval, nodeWallet, proof);

        if (s.lazy) {
            _callbackLazy(owner, subscriptionId, interval, count, s.containerId, input, output, proof);
        } else {
            IConsumer(owner)
                .rawReceiveCompute(
                    subscriptionId, interval, count, msg.sender, input, output, proof, bytes32(0), 0
                );
        }
        emit SubscriptionFulfilled(subscriptionId, msg.sender);
    }

    /// @dev SDK order: a full interval wins over "already responded". Returns the new count.
    function _recordDelivery(uint32 subscriptionId, uint32 interval, uint16 redundancy)
        private
        returns (uint16 count)
    {
        bytes32 countKey = keccak256(abi.encode(subscriptionId, interval));
        count = redundancyCount[countKey];
        if (count >= redundancy) revert IntervalCompleted();
        bytes32 nodeKey = keccak256(abi.encode(subscriptionId, interval, msg.sender));
        if (nodeResponded[nodeKey]) revert NodeRespondedAlready();
        unchecked {
            count += 1;
        }
        redundancyCount[countKey] = count;
        nodeResponded[nodeKey] = true;
    }

    function _callbackLazy(
        address owner,
        uint32 subscriptionId,
        uint32 interval,
        uint16 count,
        bytes32 containerId,
        bytes memory input,
        bytes memory output,
        bytes memory proof
    ) private {
        uint256 index = _INBOX.writeViaCoordinator(
            containerId, msg.sender, subscriptionId, interval, input, output, proof
        );
        IConsumer(owner)
            .rawReceiveCompute(subscriptionId, interval, count, msg.sender, "", "", "", containerId, index);
    }

    // ------------------------------------------------------------------ payments and proofs

    /// @dev SDK v1.1 money flow of one paid delivery, all from the consumer's Wallet (`owner` is its
    /// spender): 2 x FEE of the payment to the fee recipient; without a verifier the rest to the node's
    /// Wallet. With a verifier see `_escrowForProof`, then a ProofRequest is stored and the verifier
    /// asked. Fees round down (in the node's favour); zero amounts are not transferred (some ERC-20s
    /// revert on them).
    function _settlePayment(uint32 subscriptionId, uint32 interval, address nodeWallet, bytes memory proof)
        private
    {
        if (!_WALLET_FACTORY.isValidWallet(nodeWallet)) revert InvalidWallet();
        StoredSubscription storage s = _subscriptions[subscriptionId];
        Terms memory t = _terms(s);
        address verifier = s.verifier;
        (uint16 feeBps, address feeRecipient) = _FEE.feeAndRecipient();
        uint256 protocolCut = t.amount * (2 * uint256(feeBps)) / _BPS; // FEE <= 5000: at most amount
        if (verifier == address(0)) {
            _pay(t, feeRecipient, protocolCut);
            _pay(t, nodeWallet, t.amount - protocolCut);
            return;
        }
        uint256 escrowed =
            _escrowForProof(t, IVerifier(payable(verifier)), feeBps, feeRecipient, protocolCut, nodeWallet);
        proofRequests[keccak256(abi.encode(subscriptionId, interval, msg.sender))] = ProofRequest({
            expiry: uint32(block.timestamp) + _PROOF_WINDOW,
            nodeWallet: nodeWallet,
            consumerEscrowed: escrowed
        });
        IVerifier(payable(verifier)).requestProofVerification(subscriptionId, interval, msg.sender, proof);
    }

    /// @dev The verifier's fee (less 1 x FEE of it, which goes to the fee recipient with the protocol
    /// cut) to the verifier's wallet; the node's stake (`paymentAmount`) locked in the node's Wallet from
    /// `msg.sender`'s allowance; what is left of the payment locked in the consumer's Wallet (returned).
    function _escrowForProof(
        Terms memory t,
        IVerifier verifier,
        uint256 feeBps,
        address feeRecipient,
        uint256 protocolCut,
        address nodeWallet
    ) private returns (uint256 escrowed) {
        if (!verifier.isSupportedToken(t.token)) revert UnsupportedVerifierToken();
        uint256 verifierFee = verifier.fee(t.token);
        uint256 available = t.amount - protocolCut;
        if (verifierFee > available) revert VerifierFeeTooHigh();
        uint256 verifierCut = verifierFee * feeBps / _BPS;
        _pay(t, feeRecipient, protocolCut + verifierCut);
        _pay(t, verifier.getWallet(), verifierFee - verifierCut);
        escrowed = available - verifierFee;
        IWallet(nodeWallet).cLock(msg.sender, t.token, t.amount);
        t.consumer.cLock(t.owner, t.token, escrowed);
    }

    function _terms(StoredSubscription storage s) private view returns (Terms memory) {
        return
            Terms({
                consumer: IWallet(s.wallet), owner: s.owner, token: s.paymentToken, amount: s.paymentAmount
            });
    }

    /// @dev Pays from the consumer's Wallet on its owner's allowance.
    function _pay(Terms memory t, address to, uint256 amount) private {
        if (amount != 0) t.consumer.cTransfer(t.owner, t.token, to, amount);
    }

    /// @inheritdoc ICoordinator
    /// @dev Callable while a delivery is in progress (an atomic verifier settles inside
    /// `requestProofVerification`), never re-entered by itself; the request is deleted before any
    /// Wallet call (the SDK's re-entrancy hole).
    function finalizeProofVerification(uint32 subscriptionId, uint32 interval, address node, bool valid)
        external
    {
        uint256 outer = _lock;
        if (outer == _FINALIZING) revert Reentrancy();
        _lock = _FINALIZING;

        bytes32 key = keccak256(abi.encode(subscriptionId, interval, node));
        ProofRequest memory request = proofRequests[key];
        if (request.expiry == 0) revert ProofRequestNotFound();
        StoredSubscription storage s = _subscriptions[subscriptionId];
        bool active = block.timestamp < request.expiry;
        if (active && msg.sender != s.verifier) revert UnauthorizedVerifier();
        delete proofRequests[key];

        bool paysNode = valid || !active;
        _settleProof(s, request, node, paysNode);
        emit ProofVerified(subscriptionId, interval, node, active, msg.sender, paysNode);
        _lock = outer;
    }

    /// @dev Both escrows are unlocked (allowances restored, SDK semantics), then the consumer's escrow
    /// is paid to the node's Wallet, or the node's stake to the consumer's Wallet.
    function _settleProof(
        StoredSubscription storage s,
        ProofRequest memory request,
        address node,
        bool paysNode
    ) private {
        Terms memory t = _terms(s);
        IWallet nodeWallet = IWallet(request.nodeWallet);
        nodeWallet.cUnlock(node, t.token, t.amount);
        t.consumer.cUnlock(t.owner, t.token, request.consumerEscrowed);
        if (paysNode) {
            _pay(t, address(nodeWallet), request.consumerEscrowed);
        } else {
            nodeWallet.cTransfer(node, t.token, address(t.consumer), t.amount);
        }
    }

    /// @inheritdoc ICoordinator
    function fee() external view returns (address) {
        return address(_FEE);
    }

    /// @inheritdoc ICoordinator
    function walletFactory() external view returns (address) {
        return address(_WALLET_FACTORY);
    }

    // ------------------------------------------------------------------ EIP-712 delegation

    /// @inheritdoc ICoordinator
    function createSubscriptionDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription memory sub,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint32) {
        return _createDelegated(nonce, expiry, sub, v, r, s);
    }

    /// @inheritdoc ICoordinator
    function delegateCreatedIds(bytes32 key) external view returns (uint32) {
        return uint32(_delegateRecords[key]);
    }

    /// @inheritdoc ICoordinator
    function hashDelegateSubscription(uint32 nonce, uint32 expiry, Subscription memory sub)
        external
        view
        returns (bytes32)
    {
        return _delegateDigest(nonce, expiry, _hashSubscription(sub));
    }

    /// @inheritdoc ICoordinator
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _CACHED_CHAIN_ID ? _CACHED_DOMAIN_SEPARATOR : _buildDomainSeparator();
    }

    /// @inheritdoc ICoordinator
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (
            hex"0f", EIP712_NAME, EIP712_VERSION, block.chainid, address(this), bytes32(0), new uint256[](0)
        );
    }

    /// @inheritdoc ICoordinator
    function inbox() external view returns (address) {
        return address(_INBOX);
    }

    /// @dev Get-or-create. A known (owner, nonce) returns its id only if it was signed for the same
    /// subscription (the SDK returns it for any subscription: nonce aliasing).
    function _createDelegated(
        uint32 nonce,
        uint32 expiry,
        Subscription memory sub,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) private returns (uint32 subscriptionId) {
        bytes32 subHash = _hashSubscription(sub);
        bytes32 key = keccak256(abi.encode(sub.owner, nonce));
        uint256 record = _delegateRecords[key];
        if (record != 0) {
            if (record >> 32 != uint256(subHash) >> 32) revert DelegateNonceReused();
            return uint32(record);
        }
        if (uint32(block.timestamp) >= expiry) revert SignatureExpired();
        if (sub.containerId == bytes32(0) || sub.containerId == _EMPTY_CONTAINER_HASH) {
            revert EmptyContainerId();
        }
        _validate(sub);

        address signer = _recover(_delegateDigest(nonce, expiry, subHash), v, r, s);
        if (sub.owner.code.length == 0 || IDelegator(sub.owner).getSigner() != signer) {
            revert SignerMismatch();
        }

        subscriptionId = _store(sub);
        _delegateRecords[key] = ((uint256(subHash) >> 32) << 32) | subscriptionId;
        if (nonce > maxSubscriberNonce[sub.owner]) maxSubscriberNonce[sub.owner] = nonce;
    }

    function _hashSubscription(Subscription memory sub) private pure returns (bytes32) {
        // All fields are static, so abi.encode(sub) is exactly the 11 encoded fields in order.
        return keccak256(abi.encode(SUBSCRIPTION_TYPEHASH, sub));
    }

    function _delegateDigest(uint32 nonce, uint32 expiry, bytes32 subHash) private view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(DELEGATE_SUBSCRIPTION_TYPEHASH, nonce, expiry, subHash));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                _DOMAIN_TYPEHASH,
                keccak256(bytes(EIP712_NAME)),
                keccak256(bytes(EIP712_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }

    /// @dev Canonical signatures only: v in {27, 28}, low s, and a non-zero recovered address.
    function _recover(bytes32 digest, uint8 v, bytes32 r, bytes32 s) private pure returns (address signer) {
        if (uint256(s) > _MAX_LOW_S || (v != 27 && v != 28)) revert InvalidSignature();
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
    }

    // ------------------------------------------------------------------ shared creation path

    /// @dev Parameter checks the SDK lacks; shared by normal and delegated creation. A paid
    /// subscription must pay from a factory Wallet (the SDK accepts any address and then reverts every
    /// delivery); a verifier needs a payment (the SDK ignores it on free subscriptions).
    function _validate(Subscription memory sub) private view {
        if (sub.frequency == 0) revert ZeroFrequency();
        if (sub.redundancy == 0) revert ZeroRedundancy();
        if (sub.period == 0 && sub.frequency != 1) revert OneShotFrequencyNotOne();
        if (sub.paymentAmount == 0) {
            if (sub.verifier != address(0)) revert VerifierRequiresPayment();
        } else if (!_WALLET_FACTORY.isValidWallet(sub.wallet)) {
            revert InvalidWallet();
        }
    }

    function _store(Subscription memory sub) private returns (uint32 subscriptionId) {
        subscriptionId = id;
        id = subscriptionId + 1;
        StoredSubscription storage s = _subscriptions[subscriptionId];
        s.owner = sub.owner;
        s.activeAt = sub.activeAt;
        s.period = sub.period;
        s.frequency = sub.frequency;
        s.redundancy = sub.redundancy;
        s.lazy = sub.lazy;
        s.containerId = sub.containerId;
        // Skip zero writes to untouched slots (free subscriptions stay at 3 written slots).
        if (sub.paymentAmount != 0) {
            s.verifier = sub.verifier;
            s.paid = true;
            s.paymentAmount = sub.paymentAmount;
        }
        if (sub.paymentToken != address(0)) s.paymentToken = sub.paymentToken;
        if (sub.wallet != address(0)) s.wallet = sub.wallet;
        emit SubscriptionCreated(subscriptionId);
    }
}
