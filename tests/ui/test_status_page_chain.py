"""The status page's chain panel against a real devnet (anvil + deployed contracts): the node
key's gas balance, read by the node (chain.payments.balances) and rendered from wei strings."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from tests.chain.chain_support import (  # noqa: F401 (anvil, devnet: the chain tests' fixtures)
    NODE_KEYS,
    Devnet,
    agent_config,
    anvil,
    devnet,
)
from tests.support.agent import running_agent
from tests.ui.conftest import Browser, playwright_expect
from tests.ui.test_status_page import FAST_UI, NO_DOCKER_FACTS

expect = playwright_expect()


def eth(wei: int) -> str:
    """What the page shows: six decimals, truncated."""
    return f"{wei // 10**18}.{(wei % 10**18) // 10**12:06d} ETH"


async def test_the_chain_panel_shows_the_node_key_s_gas(
    browser: Browser,
    devnet: Devnet,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    raw = agent_config(devnet, "http://127.0.0.1:9", tmp_path / "state")
    raw.update(ui=FAST_UI, gpus={"enabled": False})
    node = Account.from_key(NODE_KEYS[0]).address
    gas = await devnet.w3.eth.get_balance(node)
    async with running_agent(raw, tmp_path / "state", provider_options=NO_DOCKER_FACTS) as (
        _,
        url,
    ):
        page = browser.page
        await page.goto(f"{url}/ui")
        panel = page.locator("#chain")
        await expect(panel).to_contain_text("Node address")
        await expect(panel).to_contain_text("Gas (node key)")
        await expect(panel).to_contain_text(eth(gas))
        browser.assert_no_errors()
