// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IRegistry} from "./interfaces/IRegistry.sol";
import {ICoordinator} from "./interfaces/ICoordinator.sol";

/// @title Registry
/// @notice Where consumers and nodes find the deployment (SDK getters). Deployed last, so no
/// precomputed CREATE addresses are needed. The Coordinator creates its Fee and WalletFactory: pass
/// them, or address(0) to take the Coordinator's; any other address would point nodes and consumers
/// at contracts the Coordinator does not use, so it is refused.
contract Registry is IRegistry {
    error RegistryMismatch();

    address public immutable COORDINATOR;
    address public immutable INBOX;
    address public immutable READER;
    address public immutable FEE;
    address public immutable WALLET_FACTORY;

    constructor(address coordinator, address inbox, address reader, address fee, address walletFactory) {
        COORDINATOR = coordinator;
        INBOX = inbox;
        READER = reader;
        FEE = _coordinators(fee, ICoordinator(coordinator).fee());
        WALLET_FACTORY = _coordinators(walletFactory, ICoordinator(coordinator).walletFactory());
    }

    function _coordinators(address given, address actual) private pure returns (address) {
        if (given != address(0) && given != actual) revert RegistryMismatch();
        return actual;
    }
}
