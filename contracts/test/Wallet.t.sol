// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {PaymentsFixture} from "./utils/PaymentsFixture.sol";
import {Coordinator} from "../src/Coordinator.sol";
import {Fee} from "../src/payments/Fee.sol";
import {Wallet} from "../src/payments/Wallet.sol";
import {IFee} from "../src/interfaces/IFee.sol";
import {IOwnable} from "../src/interfaces/IOwnable.sol";
import {IWallet} from "../src/interfaces/IWallet.sol";
import {IWalletFactory} from "../src/interfaces/IWalletFactory.sol";
import {NoReturnToken, FalseToken, ReentrantOwner} from "./mocks/PaymentMocks.sol";

/// @notice Fee, WalletFactory and Wallet on their own (SDK v1.1 ABI and the fixes beyond it).
contract WalletTest is PaymentsFixture {
    address internal constant DEPLOYER = address(0xD0);

    // ------------------------------------------------------------ Fee

    function test_Fee_CreatedByTheCoordinatorForItsDeployer() public {
        vm.prank(DEPLOYER);
        Coordinator fresh = new Coordinator();
        Fee freshFee = Fee(fresh.fee());
        vm.assertEq(freshFee.FEE_RECIPIENT(), DEPLOYER, "deployer receives fees");
        vm.assertEq(freshFee.owner(), DEPLOYER, "and owns the Fee");
        vm.assertEq(freshFee.FEE(), 0, "no fee until set");
        (uint16 bps, address recipient) = freshFee.feeAndRecipient();
        vm.assertEq(bps, 0, "one-call view: fee");
        vm.assertEq(recipient, DEPLOYER, "one-call view: recipient");
    }

    function test_Fee_OnlyTheOwnerUpdatesUpToFiftyPercent() public {
        vm.prank(STRANGER);
        vm.expectRevert(IOwnable.Unauthorized.selector);
        feeContract.updateFee(1);
        vm.prank(FEE_TO);
        vm.expectRevert(IFee.FeeTooHigh.selector); // 2 x FEE would exceed the payment
        feeContract.updateFee(5001);
        vm.prank(FEE_TO);
        feeContract.updateFee(5000);
        vm.assertEq(feeContract.FEE(), 5000, "cap allowed");
    }

    function test_Fee_RecipientMovesWithOwnershipAndNeverVanishes() public {
        vm.prank(FEE_TO);
        vm.expectRevert(IFee.FeeRecipientRequired.selector);
        feeContract.renounceOwnership();
        vm.prank(FEE_TO);
        vm.expectRevert(IOwnable.NewOwnerIsZeroAddress.selector);
        feeContract.transferOwnership(address(0));
        vm.expectEmit(true, true, false, true, address(feeContract));
        emit IOwnable.OwnershipTransferred(FEE_TO, STRANGER);
        vm.prank(FEE_TO);
        feeContract.transferOwnership(STRANGER);
        vm.assertEq(feeContract.FEE_RECIPIENT(), STRANGER, "new recipient");
    }

    // ------------------------------------------------------------ WalletFactory

    function test_Factory_CreatesWalletsBoundToTheCoordinator() public {
        vm.expectEmit(true, true, false, false, address(factory));
        emit IWalletFactory.WalletCreated(STRANGER, CONSUMER_OWNER, address(0));
        vm.prank(STRANGER); // anyone may create a wallet for anyone; the event names the caller
        address created = factory.createWallet(CONSUMER_OWNER);
        vm.assertTrue(factory.isValidWallet(created), "vouched for");
        vm.assertFalse(factory.isValidWallet(address(new Wallet(address(coordinator), STRANGER))), "not ours");
        vm.assertEq(Wallet(payable(created)).owner(), CONSUMER_OWNER, "owner");
        vm.expectRevert(IOwnable.NewOwnerIsZeroAddress.selector);
        factory.createWallet(address(0));
    }

    // ------------------------------------------------------------ Wallet: owner side

    function test_Wallet_DepositWithdrawAndApproveEvents() public {
        (bool sent,) = address(consumerWallet).call{value: 0}("");
        vm.assertTrue(sent, "accepts ETH");
        fund(consumerWallet, ETH, 3 ether);
        fund(consumerWallet, address(token), 3e6);

        vm.expectEmit(false, false, false, true, address(consumerWallet));
        emit IWallet.Withdrawl(ETH, 1 ether);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.withdraw(ETH, 1 ether);
        vm.assertEq(CONSUMER_OWNER.balance, 1 ether, "ETH to the owner");

        vm.expectEmit(false, false, false, true, address(consumerWallet));
        emit IWallet.Withdrawl(address(token), 2e6);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.withdraw(address(token), 2e6);
        vm.assertEq(token.balanceOf(CONSUMER_OWNER), 2e6, "token to the owner");

        vm.prank(CONSUMER_OWNER);
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.withdraw(ETH, 2 ether + 1);

        vm.expectEmit(true, false, false, true, address(consumerWallet));
        emit IWallet.Approval(address(callback), ETH, 5);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), ETH, 5);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), ETH, 2); // overwrites
        vm.assertEq(consumerWallet.allowance(address(callback), ETH), 2, "allowance overwritten");
    }

    function test_Wallet_OwnerAndCoordinatorOnly() public {
        vm.startPrank(STRANGER);
        vm.expectRevert(IOwnable.Unauthorized.selector);
        consumerWallet.withdraw(ETH, 0);
        vm.expectRevert(IOwnable.Unauthorized.selector);
        consumerWallet.approve(STRANGER, ETH, 1);
        vm.expectRevert(IWallet.NotCoordinator.selector);
        consumerWallet.cTransfer(STRANGER, ETH, STRANGER, 0);
        vm.expectRevert(IWallet.NotCoordinator.selector);
        consumerWallet.cLock(STRANGER, ETH, 0);
        vm.expectRevert(IWallet.NotCoordinator.selector);
        consumerWallet.cUnlock(STRANGER, ETH, 0);
        vm.stopPrank();
    }

    // ------------------------------------------------------------ Wallet: coordinator side

    function test_Wallet_LockedFundsAreNeitherWithdrawnNorPaidOut() public {
        fundConsumer(address(callback), ETH, 10 ether);
        vm.expectEmit(true, false, false, true, address(consumerWallet));
        emit IWallet.Escrow(address(callback), ETH, 6 ether, true);
        vm.prank(address(coordinator));
        consumerWallet.cLock(address(callback), ETH, 6 ether);
        vm.assertEq(consumerWallet.lockedBalance(ETH), 6 ether, "locked");
        vm.assertEq(consumerWallet.unlockedBalance(ETH), 4 ether, "unlocked");
        vm.assertEq(consumerWallet.allowance(address(callback), ETH), 4 ether, "lock spends allowance");

        vm.prank(CONSUMER_OWNER);
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.withdraw(ETH, 4 ether + 1);
        vm.prank(address(coordinator)); // SDK: would pay out escrowed money
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.cTransfer(address(callback), ETH, STRANGER, 4 ether + 1);
        vm.prank(address(coordinator));
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.cLock(address(callback), ETH, 4 ether + 1);
        vm.prank(address(coordinator));
        vm.expectRevert(IWallet.InsufficientFunds.selector);
        consumerWallet.cUnlock(address(callback), ETH, 6 ether + 1);

        vm.expectEmit(true, false, false, true, address(consumerWallet));
        emit IWallet.Escrow(address(callback), ETH, 6 ether, false);
        vm.prank(address(coordinator));
        consumerWallet.cUnlock(address(callback), ETH, 6 ether);
        vm.assertEq(consumerWallet.allowance(address(callback), ETH), 10 ether, "unlock gives allowance back");

        vm.expectEmit(true, false, true, true, address(consumerWallet));
        emit IWallet.Transfer(address(callback), ETH, STRANGER, 10 ether);
        vm.prank(address(coordinator));
        consumerWallet.cTransfer(address(callback), ETH, STRANGER, 10 ether);
        vm.assertEq(STRANGER.balance, 10 ether, "paid");
    }

    function test_Wallet_UnlockSaturatesTheAllowance() public {
        fundConsumer(address(callback), ETH, 1 ether);
        vm.prank(address(coordinator));
        consumerWallet.cLock(address(callback), ETH, 1 ether);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.approve(address(callback), ETH, type(uint256).max);
        vm.prank(address(coordinator));
        consumerWallet.cUnlock(address(callback), ETH, 1 ether); // SDK: arithmetic overflow, stuck
        vm.assertEq(consumerWallet.allowance(address(callback), ETH), type(uint256).max, "saturated");
    }

    function test_Wallet_RefusesBurnsAndFailedTransfers() public {
        fundConsumer(address(callback), ETH, 1 ether);
        vm.prank(address(coordinator));
        vm.expectRevert(IWallet.TransferFailed.selector); // the SDK would burn it
        consumerWallet.cTransfer(address(callback), ETH, address(0), 1);

        FalseToken falsy = new FalseToken();
        falsy.mint(address(consumerWallet), 5);
        vm.prank(CONSUMER_OWNER);
        vm.expectRevert(IWallet.TransferFailed.selector);
        consumerWallet.withdraw(address(falsy), 5);

        NoReturnToken quiet = new NoReturnToken();
        quiet.mint(address(consumerWallet), 5);
        vm.prank(CONSUMER_OWNER);
        consumerWallet.withdraw(address(quiet), 5);
        vm.assertEq(quiet.balanceOf(CONSUMER_OWNER), 5, "tokens that return nothing work");

        Wallet ownedByContract = Wallet(payable(factory.createWallet(address(token)))); // no receive()
        fund(ownedByContract, ETH, 1);
        vm.prank(address(token));
        vm.expectRevert(IWallet.ETHTransferFailed.selector);
        ownedByContract.withdraw(ETH, 1);
    }

    function test_Wallet_WithdrawIsNotReentrant() public {
        ReentrantOwner holder = new ReentrantOwner();
        Wallet wallet = Wallet(payable(factory.createWallet(address(holder))));
        fund(wallet, ETH, 2 ether);
        holder.arm(address(wallet), abi.encodeCall(IWallet.withdraw, (ETH, 1 ether)));
        holder.execute(address(wallet), abi.encodeCall(IWallet.withdraw, (ETH, 1 ether)));
        vm.assertEq(
            holder.reentryResult(), abi.encodeWithSelector(IWallet.Reentrancy.selector), "Reentrancy()"
        );
        vm.assertEq(address(holder).balance, 1 ether, "withdrawn once");
    }
}
