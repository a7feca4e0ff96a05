"""``node-agent`` command line: run | check-config | version."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from node_agent import INFERNET_COMPAT_VERSION, __version__
from node_agent.config import find_config_path, load_config, resolve_state_dir
from node_agent.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="node-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the node")
    run.add_argument("--config", type=Path, help="config file (default: $INFERNET_CONFIG_PATH)")
    run.add_argument("--state-dir", type=Path, help="where jobs and chain state are kept")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", type=Path)
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"node-agent {__version__} (Infernet API {INFERNET_COMPAT_VERSION})")
        return 0
    try:
        path = find_config_path(args.config)
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc.error}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(
            f"{path}: OK ({len(config.containers)} containers, chain "
            f"{'enabled' if config.chain.enabled else 'disabled'})"
        )
        return 0
    from node_agent.daemon import run_daemon
    from node_agent.logging import configure_logging

    configure_logging(config.log)
    state_dir = resolve_state_dir(config, args.state_dir)
    coro = run_daemon(config, state_dir, path)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
