// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ICoordinator} from "../../src/interfaces/ICoordinator.sol";
import {IVerifier} from "../../src/interfaces/IVerifier.sol";

/// @notice Balances and minting shared by the quirky tokens below (each differs only in `transfer`).
abstract contract MockTokenBase {
    mapping(address => uint256) public balanceOf;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function _move(address from, address to, uint256 amount) internal {
        require(balanceOf[from] >= amount, "balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }
}

/// @notice USDT-style: `transfer` returns nothing.
contract NoReturnToken is MockTokenBase {
    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }
}

/// @notice Signals failure by returning false (and moves nothing).
contract FalseToken is MockTokenBase {
    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }
}

/// @notice Reverts on zero-amount transfers (some real tokens do).
contract NoZeroTransferToken is MockTokenBase {
    function transfer(address to, uint256 amount) external returns (bool) {
        require(amount != 0, "zero transfer");
        _move(msg.sender, to, amount);
        return true;
    }
}

/// @notice Once armed, calls `target` with `payload` (once) and records how that call ended: "ok" or
/// the revert data.
abstract contract Reenterer {
    address public target;
    bytes public payload;
    bytes public reentryResult;

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
    }

    function _reenterOnce() internal {
        address t = target;
        if (t == address(0)) return;
        target = address(0);
        (bool ok, bytes memory data) = t.call(payload);
        reentryResult = ok ? bytes("ok") : data;
    }
}

/// @notice A malicious payment token: re-enters (when armed) before moving the tokens.
contract ReentrantToken is MockTokenBase, Reenterer {
    function transfer(address to, uint256 amount) external returns (bool) {
        _reenterOnce();
        _move(msg.sender, to, amount);
        return true;
    }
}

/// @notice A verifier that tries to deliver again from inside `requestProofVerification` and records
/// the Coordinator's answer; it never settles.
contract ReentrantVerifier is IVerifier {
    bytes public reentryResult;

    function getWallet() external view returns (address) {
        return address(this);
    }

    function isSupportedToken(address) external pure returns (bool) {
        return true;
    }

    function fee(address) external pure returns (uint256) {
        return 0;
    }

    function requestProofVerification(uint32 subscriptionId, uint32 interval, address, bytes calldata)
        external
    {
        try ICoordinator(msg.sender).deliverCompute(subscriptionId, interval, "", "again", "", address(0)) {
            reentryResult = "ok";
        } catch (bytes memory reason) {
            reentryResult = reason;
        }
    }

    receive() external payable {}
}

/// @notice A contract Wallet owner: forwards calls, and re-enters (when armed) as its withdrawal arrives.
contract ReentrantOwner is Reenterer {
    function execute(address to, bytes calldata data) external {
        (bool ok, bytes memory reason) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(reason, 32), mload(reason))
            }
        }
    }

    receive() external payable {
        _reenterOnce();
    }
}
