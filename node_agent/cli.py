"""``node-agent`` command line: run | check-config | gpus | api-key | status | doctor | job |
wallet | completion | version."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from node_agent.config import Config, find_config_path, load_config, resolve_state_dir
from node_agent.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="node-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the node")
    run.add_argument("--config", type=Path, help="config file (default: $INFERNET_CONFIG_PATH)")
    run.add_argument("--state-dir", type=Path, help="where jobs and chain state are kept")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", type=Path)
    check.add_argument(
        "--strict", action="store_true", help="unknown keys are errors (exit 2), not warnings"
    )
    version = sub.add_parser(
        "version", help="print the versions that matter (agent, Python, libraries, Docker, driver)"
    )
    version.add_argument("--json", action="store_true", help="machine-readable output")
    version.add_argument("--short", action="store_true", help="the agent's version only")
    gpus = sub.add_parser("gpus", help="show the GPUs NVML sees (capacity and health)")
    gpus.add_argument("--json", action="store_true", help="machine-readable output")
    gpus.add_argument("--config", type=Path, help="config file (for the gpus: section)")
    keys = sub.add_parser("api-key", help="create, revoke or list API keys")
    keys.add_argument("action", choices=("create", "revoke", "list"))
    keys.add_argument("key_id", nargs="?", help="key id (revoke)")
    keys.add_argument("--config", type=Path)
    keys.add_argument("--state-dir", type=Path)
    keys.add_argument("--scope", action="append", dest="scopes", help="jobs:read, jobs:write")
    keys.add_argument("--name", default="")
    keys.add_argument("--expires-days", type=float)
    keys.add_argument("--json", action="store_true")
    status = sub.add_parser(
        "status", help="one screen from the running node (exit 1 unless healthy)"
    )
    status.add_argument("--url", help="node URL (default: 127.0.0.1 on the config's server.port)")
    status.add_argument("--key", help="API key for /info (default: $NODE_AGENT_API_KEY)")
    status.add_argument("--config", type=Path, help="config file (for the default URL)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    doctor = sub.add_parser("doctor", help="preflight checks of this host and the config")
    doctor.add_argument("--config", type=Path)
    doctor.add_argument("--state-dir", type=Path)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    from node_agent.jobcli import add_job_parser

    add_job_parser(sub)
    from node_agent.chain.walletcli import add_wallet_parser

    add_wallet_parser(sub)
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh"))
    return parser


def _optional_config(path: Path | None) -> Config:
    """Commands that also work without a config file fall back to the defaults."""
    try:
        return load_config(find_config_path(path))
    except ConfigError:
        if path is not None:
            raise
        return Config()


def _api_key_command(args: argparse.Namespace, config: Config) -> int:
    from node_agent.auth.cli import (
        create_api_key_command,
        list_api_keys_command,
        revoke_api_key_command,
    )
    from node_agent.auth.keys import default_key_file

    key_file = default_key_file(config.api_keys, resolve_state_dir(config, args.state_dir))
    if args.action == "create":
        return create_api_key_command(
            key_file,
            scopes=args.scopes or ("jobs:read", "jobs:write"),
            name=args.name,
            expires_days=args.expires_days,
        )
    if args.action == "revoke":
        if not args.key_id:
            print("api-key revoke needs a key id", file=sys.stderr)
            return 2
        return revoke_api_key_command(key_file, args.key_id)
    return list_api_keys_command(key_file, json_output=args.json)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "job":
        from node_agent.jobcli import job_command

        return job_command(args)
    if args.command == "wallet":
        from node_agent.chain.walletcli import wallet_command

        return wallet_command(args)
    if args.command == "completion":
        import shtab

        print(shtab.complete(_parser(), shell=args.shell))
        return 0
    if args.command == "version":
        from node_agent.config import LogConfig
        from node_agent.logging import configure_logging
        from node_agent.version import version_command

        # stdout carries the versions; the probes' log lines (no NVML here) would repeat them.
        configure_logging(LogConfig(level="ERROR"), stream=sys.stderr)
        return version_command(json_output=args.json, short=args.short, out=sys.stdout)
    if args.command == "doctor":
        from node_agent.config import LogConfig
        from node_agent.doctor import doctor_command
        from node_agent.logging import configure_logging

        # stdout carries the checks; the probes' own log lines would only repeat them.
        configure_logging(LogConfig(level="ERROR"), stream=sys.stderr)
        return doctor_command(args.config, json_output=args.json, state_dir=args.state_dir)
    if args.command in ("gpus", "api-key", "status"):
        try:
            config = _optional_config(args.config)
        except ConfigError as exc:
            print(f"config error: {exc.error}", file=sys.stderr)
            return 2
        if args.command == "status":
            from node_agent.status import default_url, status_command

            url = args.url or default_url(config)
            return status_command(url, key=args.key, json_output=args.json)
        if args.command == "gpus":
            from node_agent.gpu.cli import gpus_command
            from node_agent.logging import configure_logging

            # stdout carries the table or JSON; problems are in it, so logs only on errors.
            configure_logging(config.log.model_copy(update={"level": "ERROR"}), stream=sys.stderr)
            return gpus_command(args.json, config=config.gpus)
        return _api_key_command(args, config)
    try:
        path = find_config_path(args.config)
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc.error}", file=sys.stderr)
        return 2
    from node_agent.configcheck import find_unknown_keys

    unknown = find_unknown_keys(path)
    if args.command == "check-config":
        for key in unknown:
            print(
                f"{'error' if args.strict else 'warning'}: {key.describe(str(path))}",
                file=sys.stderr,
            )
        if unknown and args.strict:
            print(f"config error: {len(unknown)} unknown key(s) (--strict)", file=sys.stderr)
            return 2
        print(
            f"{path}: OK ({len(config.containers)} containers, chain "
            f"{'enabled' if config.chain.enabled else 'disabled'}"
            f"{f', {len(unknown)} unknown keys ignored' if unknown else ''})"
        )
        return 0
    from node_agent.daemon import log_unknown_keys, run_daemon
    from node_agent.logging import configure_logging

    configure_logging(config.log)
    log_unknown_keys(path, unknown)
    state_dir = resolve_state_dir(config, args.state_dir)
    coro = run_daemon(config, state_dir, path)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
