"""API keys for clients and orchestrators calling the node's job routes."""
