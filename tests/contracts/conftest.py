"""A real anvil with the contract set deployed, shared by the whole session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from web3 import AsyncWeb3

from node_agent.chain.tools import ensure_chain_tools
from tests.support.anvil import Anvil, DeployedChain, deploy_all, start_anvil


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    ensure_chain_tools()
    chain = start_anvil()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="session")
def chain(anvil: Anvil) -> DeployedChain:
    return deploy_all(anvil)


@pytest.fixture
async def w3(chain: DeployedChain) -> AsyncIterator[AsyncWeb3[Any]]:
    web3 = chain.web3()
    try:
        yield web3
    finally:
        await web3.provider.disconnect()
