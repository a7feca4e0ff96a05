"""On-chain side of the agent: Coordinator deployment, subscriptions, deliveries."""
