// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Subscription} from "./Types.sol";
import {ICoordinator} from "./interfaces/ICoordinator.sol";
import {IConsumer, IDelegator} from "./interfaces/IConsumer.sol";
import {IInbox} from "./interfaces/IInbox.sol";
import {Inbox} from "./Inbox.sol";

/// @title Coordinator
/// @notice Issues compute subscriptions and accepts node deliveries, with EIP-712 delegated
/// (off-chain signed) subscriptions. The external ABI is infernet-sdk v1.x's; on top of it every
/// subscription is validated at creation, payments/verifiers are refused until they are implemented,
/// a delegate nonce cannot alias a different subscription, signatures must be canonical (low-s), and
/// deliveries hold a re-entrancy lock and update accounting before calling the consumer.
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
        bytes32 containerId;
        uint256 paymentAmount;
        address paymentToken;
        address wallet;
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
    uint256 private constant _LOCKED = 2;

    IInbox private immutable _INBOX;
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

    mapping(uint32 => StoredSubscription) private _subscriptions;
    /// @dev keccak256(abi.encode(owner, nonce)) => (top 224 bits of the signed sub's struct hash << 32) | id.
    /// One slot holds both the SDK's id lookup and what the nonce was used for.
    mapping(bytes32 => uint256) private _delegateRecords;
    uint256 private _lock = _UNLOCKED;

    constructor() {
        _INBOX = IInbox(address(new Inbox(address(this))));
        _CACHED_CHAIN_ID = block.chainid;
        _CACHED_DOMAIN_SEPARATOR = _buildDomainSeparator();
    }

    modifier nonReentrant() {
        if (_lock != _UNLOCKED) revert Reentrancy();
        _lock = _LOCKED;
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
    /// @dev `nodeWallet` is accepted for ABI compatibility and ignored (no payments yet).
    function deliverCompute(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        address
    ) external nonReentrant {
        _deliver(subscriptionId, deliveryInterval, input, output, proof);
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
        address
    ) external nonReentrant {
        uint32 subscriptionId = _createDelegated(nonce, expiry, sub, v, r, s);
        _deliver(subscriptionId, deliveryInterval, input, output, proof);
    }

    function _deliver(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof
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

        if (s.lazy) {
            _callbackLazy(owner, subscriptionId, interval, count, s.containerId, input, output, proof);
        } else {
            IConsumer(owner).rawReceiveCompute(
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
        uint256 index =
            _INBOX.writeViaCoordinator(containerId, msg.sender, subscriptionId, interval, input, output, proof);
        IConsumer(owner).rawReceiveCompute(subscriptionId, interval, count, msg.sender, "", "", "", containerId, index);
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
        return (hex"0f", EIP712_NAME, EIP712_VERSION, block.chainid, address(this), bytes32(0), new uint256[](0));
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
        if (sub.owner.code.length == 0 || IDelegator(sub.owner).getSigner() != signer) revert SignerMismatch();

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

    /// @dev Parameter checks the SDK lacks; shared by normal and delegated creation.
    function _validate(Subscription memory sub) private pure {
        if (sub.frequency == 0) revert ZeroFrequency();
        if (sub.redundancy == 0) revert ZeroRedundancy();
        if (sub.period == 0 && sub.frequency != 1) revert OneShotFrequencyNotOne();
        if (sub.paymentAmount != 0 || sub.verifier != address(0)) revert PaymentsNotSupported();
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
        // verifier and paymentAmount are always zero here; skip zero writes to untouched slots.
        if (sub.paymentToken != address(0)) s.paymentToken = sub.paymentToken;
        if (sub.wallet != address(0)) s.wallet = sub.wallet;
        emit SubscriptionCreated(subscriptionId);
    }
}
