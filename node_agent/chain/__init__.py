"""On-chain fulfilment: sync subscriptions, schedule intervals, deliver exactly once.

Kept import-light on purpose: ``node_agent.config`` imports :mod:`node_agent.chain.settings`,
so nothing here may pull web3 in at package import time.
"""
