// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Allowlist
/// @notice For consumers that accept deliveries only from some nodes: call `_requireAllowedNode(node)`
/// in `_receiveCompute`. A rejected delivery reverts, so nothing is counted for that node.
abstract contract Allowlist {
    error NodeNotAllowed();

    event AllowlistUpdated(address indexed node, bool allowed);

    mapping(address => bool) private _allowedNodes;

    constructor(address[] memory initialAllowed) {
        for (uint256 i = 0; i < initialAllowed.length; i++) {
            _setAllowed(initialAllowed[i], true);
        }
    }

    function isAllowedNode(address node) public view returns (bool) {
        return _allowedNodes[node];
    }

    function _updateAllowlist(address[] memory nodes, bool[] memory allowed) internal {
        require(nodes.length == allowed.length, "length mismatch");
        for (uint256 i = 0; i < nodes.length; i++) {
            _setAllowed(nodes[i], allowed[i]);
        }
    }

    function _requireAllowedNode(address node) internal view {
        if (!_allowedNodes[node]) revert NodeNotAllowed();
    }

    function _setAllowed(address node, bool allowed) private {
        _allowedNodes[node] = allowed;
        emit AllowlistUpdated(node, allowed);
    }
}
