"""node-agent: the daemon a GPU provider runs on every host."""

__version__ = "0.1.0"

# The Infernet Node version whose REST API this agent is wire-compatible with; `/info` reports it
# because infernet-client and routers compare it.
INFERNET_COMPAT_VERSION = "1.4.0"
