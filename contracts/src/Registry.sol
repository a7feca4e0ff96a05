// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IRegistry} from "./interfaces/IRegistry.sol";

/// @title Registry
/// @notice Where consumers and nodes find the deployment (SDK getters). Deployed last, so no
/// precomputed CREATE addresses are needed. FEE and WALLET_FACTORY are zero until payments exist.
contract Registry is IRegistry {
    address public immutable COORDINATOR;
    address public immutable INBOX;
    address public immutable READER;
    address public immutable FEE;
    address public immutable WALLET_FACTORY;

    constructor(address coordinator, address inbox, address reader, address fee, address walletFactory) {
        COORDINATOR = coordinator;
        INBOX = inbox;
        READER = reader;
        FEE = fee;
        WALLET_FACTORY = walletFactory;
    }
}
