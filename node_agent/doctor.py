"""``node-agent doctor``: preflight checks a provider runs before and after installing.

Each check is a :class:`Check` (ok / warn / fail, a one-line detail and a remedy). The verdicts
are pure functions of what was observed (Docker's ``version``/``info``, an NVML snapshot, free
bytes, ...), so they are tested without Docker or a GPU; the probes around them are thin and
every outbound call has a timeout. URLs are shown as scheme://host only: RPC and orchestrator
URLs often carry an API key in their path or query.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import shutil
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

from node_agent.config import Config, find_config_path, load_config, resolve_state_dir
from node_agent.errors import ConfigError

Status = Literal["ok", "warn", "fail"]
MARKS: dict[Status, str] = {"ok": "✓", "warn": "!", "fail": "✗"}
TIMEOUT = 5.0
LOW_DISK = 10 * 2**30


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    remedy: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warn(name: str, detail: str, remedy: str) -> Check:
    return Check(name, "warn", detail, remedy)


def fail(name: str, detail: str, remedy: str) -> Check:
    return Check(name, "fail", detail, remedy)


def exit_code(checks: Iterable[Check]) -> int:
    return 1 if any(c.status == "fail" for c in checks) else 0


def render(checks: Iterable[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{MARKS[check.status]} {check.name}: {check.detail}")
        if check.remedy and check.status != "ok":
            lines.append(f"    → {check.remedy}")
    return "\n".join(lines) + "\n"


def to_json(checks: list[Check]) -> str:
    return json.dumps(
        {"ok": exit_code(checks) == 0, "checks": [asdict(c) for c in checks]}, indent=2
    )


def safe_url(url: str) -> str:
    """scheme://host[:port] only: paths and queries of RPC URLs often hold API keys."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


# --- verdicts (pure) ------------------------------------------------------------------------


def config_check(source: str, error: str | None, unknown: list[str]) -> Check:
    if error is not None:
        return fail("config", error, "fix the file; `node-agent check-config` shows the same")
    if unknown:
        return warn(
            "config",
            f"{source}: unknown keys ignored: {', '.join(unknown)}",
            "correct or remove them (a typo leaves the default in force)",
        )
    return ok("config", f"{source} is valid")


def docker_checks(
    version: dict[str, Any] | None, info: dict[str, Any] | None, error: str | None
) -> list[Check]:
    """Docker reachable with its version, and the NVIDIA runtime or CDI specs."""
    if error is not None or version is None or info is None:
        return [
            fail(
                "docker",
                f"engine not reachable: {error}",
                "install/start Docker (systemctl start docker) and add the agent's user "
                "to the docker group",
            )
        ]
    checks = [
        ok("docker", f"engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})")
    ]
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    cdi = [d for d in info.get("CDISpecDirs") or [] if d]
    if "nvidia" in runtimes or cdi:
        where = ["nvidia runtime"] if "nvidia" in runtimes else []
        where += [f"CDI specs in {', '.join(cdi)}"] if cdi else []
        checks.append(ok("nvidia runtime", " and ".join(where)))
    else:
        checks.append(
            warn(
                "nvidia runtime",
                f"no nvidia runtime or CDI in `docker info` "
                f"(runtimes: {', '.join(runtimes) or '-'})",
                "install nvidia-container-toolkit and run `nvidia-ctk runtime configure "
                "--runtime=docker` (not needed on a CPU-only host)",
            )
        )
    return checks


def nvml_check(
    available: bool, driver: str | None, cuda: str | None, gpus: int, reason: str, remedy: str
) -> Check:
    if not available:
        return warn(
            "nvml",
            f"no GPU: {reason or 'NVML unavailable'}",
            remedy or "install the NVIDIA driver on a GPU host",
        )
    detail = f"driver {driver or '?'}, CUDA {cuda or '?'}, {gpus} GPU(s)"
    if gpus == 0:
        return warn("nvml", detail, "NVML loads but sees no GPU: check `nvidia-smi`")
    return ok("nvml", detail)


def disk_check(name: str, path: str, free: int | None, error: str | None = None) -> Check:
    if free is None:
        return warn(
            name,
            f"{path}: cannot read free space ({error})",
            "check the path exists and is readable",
        )
    if free < LOW_DISK:
        return warn(
            name,
            f"{path}: {gib(free)} free (< {gib(LOW_DISK)})",
            "free space: images and job results need room",
        )
    return ok(name, f"{path}: {gib(free)} free")


def port_check(host: str, port: int, in_use: bool, our_agent: bool) -> Check:
    where = f"{host}:{port}"
    if not in_use:
        return ok("api port", f"{where} is free")
    if our_agent:
        return ok("api port", f"{where} is served by a running node-agent")
    return fail(
        "api port",
        f"{where} is in use by another program",
        "stop it or set server.port to a free port",
    )


def image_checks(images: dict[str, bool | None], pull: bool, manage: bool) -> list[Check]:
    """Per configured image: present (ok), missing (warn when pulled at start, else fail)."""
    if not manage:
        return [ok("images", "manage_containers is false: the agent does not run images")]
    if not images:
        return [ok("images", "no container images configured")]
    checks = []
    for image, present in images.items():
        name = f"image {image}"
        if present:
            checks.append(ok(name, "present locally"))
        elif present is None:
            checks.append(warn(name, "could not be checked (Docker not reachable)", "start Docker"))
        elif pull:
            checks.append(
                warn(
                    name,
                    "not present; it will be pulled at start",
                    f"docker pull {image} now to save the wait",
                )
            )
        else:
            checks.append(
                fail(name, "not present and runtime.pull is false", f"docker pull {image}")
            )
    return checks


def chain_check(url: str, chain_id: int | None, error: str | None) -> Check:
    if error is not None or chain_id is None:
        return fail(
            "chain rpc",
            f"{safe_url(url)}: {error or 'no chain id'}",
            "check chain.rpc_url and that the RPC node is up",
        )
    return ok("chain rpc", f"{safe_url(url)}: chain id {chain_id}")


def wallet_check(address: str, balance_wei: int | None, error: str | None) -> Check:
    """The node pays gas for every delivery: an empty account delivers nothing."""
    if error is not None or balance_wei is None:
        return fail("wallet", f"{address or 'node key'}: {error}", "check chain.wallet")
    eth = balance_wei / 10**18
    if balance_wei == 0:
        return warn("wallet", f"{address}: 0 ETH", f"send ETH to {address}: deliveries need gas")
    return ok("wallet", f"{address}: {eth:.6g} ETH")


def grid_key_check(url: str, status: int | None, error: str | None) -> Check:
    """``GET /v1/nodes/mine`` is the orchestrator's authenticated, read-only provider route."""
    where = safe_url(url)
    if status is None:
        return fail("orchestrator key", f"{where}: {error}", "check grid.url")
    if status in (401, 403):
        return fail(
            "orchestrator key",
            f"{where}: key refused (HTTP {status})",
            "check grid.api_key: a provider key (jg_…) that is not revoked",
        )
    if 200 <= status < 300:
        return ok("orchestrator key", f"{where}: key accepted")
    return warn(
        "orchestrator key",
        f"{where}: GET /v1/nodes/mine answered HTTP {status}; key not verified",
        "check the key in the orchestrator's console",
    )


def grid_check(url: str, status: int | None, error: str | None) -> Check:
    if status is None:
        return fail(
            "orchestrator",
            f"{safe_url(url)}: {error}",
            "check grid.url and the network path to the orchestrator",
        )
    return ok("orchestrator", f"{safe_url(url)}: reachable (HTTP {status})")


# --- probes (thin I/O) ----------------------------------------------------------------------


def _docker_client() -> tuple[Any | None, str | None]:
    try:
        import docker

        client = docker.from_env(timeout=int(TIMEOUT))
        client.ping()
        return client, None
    except Exception as exc:  # any failure here means "not reachable"; the message says why
        return None, f"{type(exc).__name__}: {exc}"


def _free(path: Path) -> tuple[int | None, str | None]:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free, None
    except OSError as exc:
        return None, exc.strerror or str(exc)


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def _is_node_agent(port: int) -> bool:
    """Whatever holds the port answers ``/health`` like a node-agent does."""
    for scheme in ("http", "https"):
        from node_agent.status import fetch

        got = fetch(f"{scheme}://127.0.0.1:{port}/health", timeout=2.0)
        if isinstance(got.body, dict) and "checks" in got.body and "status" in got.body:
            return True
    return False


def _http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int | None, bytes, str | None]:
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read(1 << 20), None
    except urllib.error.HTTPError as exc:
        return exc.code, b"", None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, b"", str(getattr(exc, "reason", exc))


def _rpc_int(url: str, method: str, params: list[Any]) -> tuple[int | None, str | None]:
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    status, raw, error = _http(url, payload.encode())
    if error is not None:
        return None, error
    try:
        return int(json.loads(raw)["result"], 16), None
    except (ValueError, KeyError, TypeError):
        return None, f"HTTP {status}: not a JSON-RPC answer to {method}"


def _chain_id(url: str) -> tuple[int | None, str | None]:
    return _rpc_int(url, "eth_chainId", [])


def _wallet_probe(config: Config) -> list[Check]:
    """The node key's address and balance (the key itself never leaves this function), and
    the balance of the payment address when one is configured."""
    from node_agent.chain.wallet import key_from_config

    wallet = config.chain.wallet
    if wallet is None:
        return [wallet_check("", None, "chain.wallet is not configured")]
    try:
        address = key_from_config(wallet).address
    except ConfigError as exc:
        return [wallet_check("", None, exc.error)]
    url = config.chain.all_rpc_urls()[0]
    checks = [wallet_check(address, *_rpc_int(url, "eth_getBalance", [address, "latest"]))]
    payment = wallet.payment_address
    if payment:
        balance, error = _rpc_int(url, "eth_getBalance", [payment, "latest"])
        checks.append(
            ok("payment wallet", f"{payment}: {balance / 10**18:.6g} ETH")
            if balance is not None
            else fail("payment wallet", f"{payment}: {error}", "check chain.wallet.payment_address")
        )
    return checks


def _chain_probe(url: str) -> list[Check]:
    return [chain_check(url, *_chain_id(url))]


def _grid_probe(url: str, api_key: str | None = None) -> list[Check]:
    status, _, error = _http(url)
    checks = [grid_check(url, status, error)]
    if status is not None and api_key:
        mine = url.rstrip("/") + "/v1/nodes/mine"
        key_status, _, key_error = _http(mine, headers={"Authorization": f"Bearer {api_key}"})
        checks.append(grid_key_check(url, key_status, key_error))
    return checks


def _nvml(config: Config) -> Check:
    if not config.gpus.enabled:
        return warn(
            "nvml", "GPU monitoring disabled (gpus.enabled: false)", "enable it on a GPU host"
        )
    from node_agent.gpu.cli import collect_once

    snapshot = asyncio.run(collect_once(config.gpus))
    node = snapshot.node
    return nvml_check(
        snapshot.nvml_available,
        node.driver_version,
        node.cuda_driver_version,
        len(snapshot.gpus),
        "; ".join(snapshot.reasons),
        snapshot.remedy or "",
    )


def _guarded(name: str, probe: Callable[[], list[Check]]) -> list[Check]:
    """A probe that breaks unexpectedly is one failed check, never a traceback."""
    try:
        return probe()
    except Exception as exc:
        return [fail(name, f"check crashed: {type(exc).__name__}: {exc}", "report this as a bug")]


def run_checks(config_path: Path | None, state_dir: Path | None = None) -> list[Check]:
    checks: list[Check] = []
    try:
        path = find_config_path(config_path)
        config = load_config(path)
    except ConfigError as exc:
        checks.append(config_check(str(config_path or "config"), exc.error, []))
        config = Config()
    else:
        from node_agent.configcheck import find_unknown_keys

        checks.append(config_check(str(path), None, [k.path for k in find_unknown_keys(path)]))

    client, docker_error = _docker_client()

    def docker_probe() -> list[Check]:
        if client is None:
            return docker_checks(None, None, docker_error)
        return docker_checks(client.version(), client.info(), None)

    checks += _guarded("docker", docker_probe)
    checks += _guarded("nvml", lambda: [_nvml(config)])

    def disks() -> list[Check]:
        out = []
        if client is not None:
            root = str(client.info().get("DockerRootDir") or "/var/lib/docker")
            out.append(disk_check("disk (docker data root)", root, *_free(Path(root))))
        state = resolve_state_dir(config, state_dir)
        out.append(disk_check("disk (state dir)", str(state), *_free(state)))
        return out

    checks += _guarded("disk", disks)

    def port() -> list[Check]:
        host, number = config.server.host, config.server.port
        busy = _port_in_use(host, number)
        return [port_check(host, number, busy, busy and _is_node_agent(number))]

    checks += _guarded("api port", port)

    def images() -> list[Check]:
        wanted = list(dict.fromkeys(c.image for c in config.containers if c.image))
        present: dict[str, bool | None] = {}
        for image in wanted:
            if client is None:
                present[image] = None
                continue
            try:
                client.images.get(image)
                present[image] = True
            except Exception:  # docker.errors.ImageNotFound, or the engine failed: not here
                present[image] = False
        return image_checks(present, config.runtime.pull, config.manage_containers)

    checks += _guarded("images", images)
    if config.chain.enabled:
        for url in config.chain.all_rpc_urls():
            checks += _guarded("chain rpc", functools.partial(_chain_probe, url))
        checks += _guarded("wallet", functools.partial(_wallet_probe, config))
    if config.grid.enabled and config.grid.url:
        key = config.grid.api_key.get_secret_value() if config.grid.api_key else None
        checks += _guarded("orchestrator", functools.partial(_grid_probe, config.grid.url, key))
    if client is not None:
        client.close()
    return checks


def doctor_command(
    config_path: Path | None,
    *,
    json_output: bool,
    state_dir: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Run every check and print them; 1 when any failed."""
    out = out or sys.stdout
    checks = run_checks(config_path, state_dir)
    out.write(to_json(checks) + "\n" if json_output else render(checks))
    return exit_code(checks)
