// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Subscription, SubscriptionStatus} from "./Types.sol";
import {ICoordinator} from "./interfaces/ICoordinator.sol";

/// @title Reader
/// @notice Batched views so a node syncs with few `eth_call`s. No validation: missing ids come back
/// as zero structs (owner 0). Keep batches in the low hundreds (RPC eth_call gas caps).
contract Reader {
    ICoordinator public immutable COORDINATOR;

    constructor(address coordinator) {
        COORDINATOR = ICoordinator(coordinator);
    }

    /// @notice Subscriptions with ids in [startId, endId) (SDK-identical).
    function readSubscriptionBatch(uint32 startId, uint32 endId) external view returns (Subscription[] memory subs) {
        uint32 count = endId > startId ? endId - startId : 0;
        subs = new Subscription[](count);
        for (uint32 i = 0; i < count; i++) {
            subs[i] = COORDINATOR.getSubscription(startId + i);
        }
    }

    /// @notice Redundancy counts for (ids[i], intervals[i]) pairs (SDK-identical).
    function readRedundancyCountBatch(uint32[] calldata ids, uint32[] calldata intervals)
        external
        view
        returns (uint16[] memory counts)
    {
        require(ids.length == intervals.length, "length mismatch");
        counts = new uint16[](ids.length);
        for (uint256 i = 0; i < ids.length; i++) {
            counts[i] = COORDINATOR.redundancyCount(keccak256(abi.encode(ids[i], intervals[i])));
        }
    }

    /// @notice Status of subscriptions [startId, endId) for `node`: current interval, how many nodes
    /// delivered it and whether `node` did. One call answers "what can this node deliver now".
    function readStatusBatch(uint32 startId, uint32 endId, address node)
        external
        view
        returns (SubscriptionStatus[] memory statuses)
    {
        uint32 count = endId > startId ? endId - startId : 0;
        statuses = new SubscriptionStatus[](count);
        for (uint32 i = 0; i < count; i++) {
            statuses[i] = _status(startId + i, node);
        }
    }

    /// @notice Same as `readStatusBatch` for an explicit list of ids (e.g. the ones a node tracks).
    function readStatusBatchByIds(uint32[] calldata ids, address node)
        external
        view
        returns (SubscriptionStatus[] memory statuses)
    {
        statuses = new SubscriptionStatus[](ids.length);
        for (uint256 i = 0; i < ids.length; i++) {
            statuses[i] = _status(ids[i], node);
        }
    }

    function _status(uint32 subscriptionId, address node) private view returns (SubscriptionStatus memory st) {
        st.subscriptionId = subscriptionId;
        st.sub = COORDINATOR.getSubscription(subscriptionId);
        if (st.sub.owner == address(0)) return st;
        st.currentInterval = COORDINATOR.getSubscriptionInterval(st.sub.activeAt, st.sub.period);
        if (st.currentInterval == 0) return st;
        st.redundancyCount = COORDINATOR.redundancyCount(keccak256(abi.encode(subscriptionId, st.currentInterval)));
        st.nodeResponded =
            COORDINATOR.nodeResponded(keccak256(abi.encode(subscriptionId, st.currentInterval, node)));
    }
}
