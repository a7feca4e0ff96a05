// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./Fixture.sol";
import {Fee} from "../../src/payments/Fee.sol";
import {Wallet} from "../../src/payments/Wallet.sol";
import {WalletFactory} from "../../src/payments/WalletFactory.sol";
import {IERC20} from "../../src/interfaces/IERC20.sol";
import {ExampleToken} from "../../src/examples/ExampleToken.sol";
import {ExampleVerifier} from "../../src/examples/ExampleVerifier.sol";
import {ExampleAtomicVerifier} from "../../src/examples/ExampleAtomicVerifier.sol";
import {ExampleOptimisticVerifier} from "../../src/examples/ExampleOptimisticVerifier.sol";

/// @notice The deployed set plus what paid deliveries need: a consumer Wallet owned by an EOA (the
/// example callback consumer is its approved spender), a Wallet per node owned by the node's key
/// (which approves itself, for stakes), a 6-decimals token, both example verifiers, FEE = 5 %.
abstract contract PaymentsFixture is Fixture {
    address internal constant ETH = address(0);
    address internal constant CONSUMER_OWNER = address(0xC0FFEE0);
    address internal constant FEE_TO = address(0xFEE0);
    address internal constant VERIFIER_WALLET = address(0x7E7E0);
    address internal constant STRANGER = address(0x5757);
    uint16 internal constant FEE_BPS = 500;
    uint256 internal constant VERIFIER_FEE_ETH = 0.01 ether;
    uint256 internal constant VERIFIER_FEE_TOKEN = 10_000;
    bytes internal constant GOOD_PROOF = "good-proof";
    bytes internal constant BAD_PROOF = "bad-proof";

    Fee internal feeContract;
    WalletFactory internal factory;
    ExampleToken internal token;
    ExampleAtomicVerifier internal atomic;
    ExampleOptimisticVerifier internal optimistic;
    Wallet internal consumerWallet;
    Wallet internal nodeWallet1;
    Wallet internal nodeWallet2;

    function setUp() public virtual override {
        super.setUp();
        feeContract = Fee(coordinator.fee());
        factory = WalletFactory(coordinator.walletFactory());
        feeContract.transferOwnership(FEE_TO);
        vm.prank(FEE_TO);
        feeContract.updateFee(FEE_BPS);

        token = new ExampleToken("Example", "EXT", 6);
        consumerWallet = Wallet(payable(factory.createWallet(CONSUMER_OWNER)));
        nodeWallet1 = _nodeWallet(NODE_1);
        nodeWallet2 = _nodeWallet(NODE_2);

        atomic = new ExampleAtomicVerifier(address(registry));
        optimistic = new ExampleOptimisticVerifier(address(registry));
        _configureVerifier(address(atomic));
        _configureVerifier(address(optimistic));
        atomic.setProofAccepted(keccak256(GOOD_PROOF), true);
    }

    function _nodeWallet(address node) private returns (Wallet wallet) {
        wallet = Wallet(payable(factory.createWallet(node)));
        vm.startPrank(node);
        wallet.approve(node, ETH, type(uint256).max);
        wallet.approve(node, address(token), type(uint256).max);
        vm.stopPrank();
        fund(wallet, ETH, 100 ether);
        fund(wallet, address(token), 100e6);
    }

    function _configureVerifier(address verifier) private {
        ExampleVerifier v = ExampleVerifier(payable(verifier));
        v.setFeeWallet(VERIFIER_WALLET);
        v.setTokenFee(ETH, true, VERIFIER_FEE_ETH);
        v.setTokenFee(address(token), true, VERIFIER_FEE_TOKEN);
    }

    // ------------------------------------------------------------ helpers

    function fund(Wallet wallet, address tok, uint256 amount) internal {
        if (tok == ETH) vm.deal(address(wallet), address(wallet).balance + amount);
        else token.mint(address(wallet), amount);
    }

    /// @dev Funds the consumer Wallet and lets `spender` (a consumer contract) spend it.
    function fundConsumer(address spender, address tok, uint256 amount) internal {
        fund(consumerWallet, tok, amount);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(spender, tok, amount);
    }

    function bal(address who, address tok) internal view returns (uint256) {
        return tok == ETH ? who.balance : IERC20(tok).balanceOf(who);
    }

    function paidRequest(address tok, uint256 amount, address verifier) internal returns (uint32) {
        return callback.requestPaidCompute("c", INPUTS, 1, tok, amount, address(consumerWallet), verifier);
    }

    function deliverPaid(address node, uint32 subscriptionId, bytes memory proof, Wallet wallet) internal {
        vm.prank(node);
        coordinator.deliverCompute(subscriptionId, 1, "in", "out", proof, address(wallet));
    }

    /// @dev The SDK's split: 2 x FEE of the payment, 1 x FEE of the verifier's fee, rounded down.
    function protocolShare(uint256 amount, uint256 verifierFee, uint256 feeBps)
        internal
        pure
        returns (uint256)
    {
        return amount * 2 * feeBps / 10_000 + verifierFee * feeBps / 10_000;
    }

    function verifierFeeOf(address tok) internal pure returns (uint256) {
        return tok == ETH ? VERIFIER_FEE_ETH : VERIFIER_FEE_TOKEN;
    }
}
