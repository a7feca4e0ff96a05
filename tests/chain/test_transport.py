"""The node's JSON-RPC transport against a real anvil, with web3's shared session lock held.

A web3 request cancelled while it waits for ``HTTPSessionManager``'s class-level lock can leave
that lock held, and then every stock ``AsyncHTTPProvider`` in the process waits forever (it hung
a CI run). These tests hold the lock, as such a leak would, and check that the node's clients
neither take nor wait for it — and, in a separate process (so the lock cannot leak into this
one), that the stock provider really does hang then, which is why ``chain.transport`` exists.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest
from web3._utils.http_session_manager import HTTPSessionManager

from node_agent.chain.devnet import running_anvil
from node_agent.chain.rpc import Rpc
from node_agent.chain.transport import web3_client

pytestmark = pytest.mark.chain


async def test_rpc_does_not_wait_for_web3s_shared_session_lock() -> None:
    with running_anvil() as anvil:
        lock = HTTPSessionManager._lock
        assert lock.acquire(timeout=5)
        rpc = Rpc([anvil.url], timeout=2.0, attempts=1)
        w3 = web3_client(anvil.url, timeout=2.0)
        try:
            async with asyncio.timeout(10):
                block, _, _ = await rpc.head()
                assert block >= 0
                async with w3.batch_requests() as batch:
                    batch.add(w3.eth.get_block_number())
                    batch.add(w3.eth.get_balance(w3.to_checksum_address("0x" + "11" * 20)))
                    number, balance = await batch.async_execute()
                assert (number, balance) == (block, 0)
        finally:
            lock.release()
            await rpc.close()
            await w3.provider.disconnect()


STOCK_PROVIDER_WITH_LOCK_HELD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from web3 import AsyncHTTPProvider, AsyncWeb3
    from web3._utils.http_session_manager import HTTPSessionManager
    from node_agent.chain.transport import web3_client

    async def main(url):
        HTTPSessionManager._lock.acquire()
        stock = AsyncWeb3(AsyncHTTPProvider(url))
        try:
            async with asyncio.timeout(2):
                await stock.eth.chain_id
            stock_result = "answered"
        except TimeoutError:
            stock_result = "hung"
        ours = web3_client(url, timeout=2)
        async with asyncio.timeout(5):
            chain_id = await ours.eth.chain_id
        await ours.provider.disconnect()
        return {"stock": stock_result, "ours": chain_id}

    print(json.dumps(asyncio.run(main(sys.argv[1]))), flush=True)
    os._exit(0)  # web3's pool thread still waits for the lock: do not join it
    """
)


def test_the_stock_provider_hangs_while_the_lock_is_held() -> None:
    with running_anvil() as anvil:
        done = subprocess.run(
            [sys.executable, "-c", STOCK_PROVIDER_WITH_LOCK_HELD, anvil.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout) == {"stock": "hung", "ours": anvil.chain_id}
