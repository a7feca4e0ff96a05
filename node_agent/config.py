"""Configuration: pydantic models of the YAML (or Infernet ``config.json``) file.

Infernet's keys keep their names, types and defaults so an existing ``config.json`` works
unchanged; everything node-agent adds lives in its own section. Secrets can be written inline,
or as ``{env: NAME}``, ``{file: PATH}`` or ``{credential: NAME}`` (systemd ``LoadCredential``),
and are held as :class:`pydantic.SecretStr` so they never show up in logs or error messages.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from node_agent.auth.config import ApiKeysConfig
from node_agent.chain.settings import OnchainConfig
from node_agent.errors import ConfigError
from node_agent.gpu.config import GpusConfig
from node_agent.grid.config import GridConfig
from node_agent.ui.config import UiConfig
from node_agent.workloads.config import WorkloadsConfig

# Docker container names: the id is also the managed container's name.
_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class _Model(BaseModel):
    """Infernet ignores unknown keys; so do we (a typo is reported as a warning, not a crash)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class SecretRef(_Model):
    """Where a secret comes from when it is not written inline."""

    env: str | None = None
    file: Path | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [x for x in (self.env, self.file, self.credential) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'env', 'file' or 'credential'")
        return self

    def resolve(self) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"environment variable {self.env} is not set")
            return SecretStr(value.strip())
        if self.file is not None:
            return SecretStr(_read_secret_file(self.file))
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError("CREDENTIALS_DIRECTORY is not set (not started by systemd?)")
        return SecretStr(_read_secret_file(Path(directory) / str(self.credential)))


def _read_secret_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None


def _resolve_secret(value: Any) -> Any:
    """Turn ``str | {env|file|credential}`` into a SecretStr at validation time."""
    if value is None or isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict):
        return SecretRef.model_validate(value).resolve()
    raise ValueError("expected a string or {env|file|credential: ...}")


Secret = Annotated[SecretStr, Field(json_schema_extra={"secret": True})]


# --- server -----------------------------------------------------------------------------------


class RateLimitConfig(_Model):
    num_requests: int = Field(60, ge=1)
    period: float = Field(60.0, gt=0)


class TlsConfig(_Model):
    """HTTPS for the API, so API keys never cross the network in clear text."""

    cert_file: Path  # PEM certificate chain, leaf first
    key_file: Path  # PEM private key (readable by the service user)
    # The files are re-read when they change (checked this often) and on SIGHUP.
    reload_interval: float = Field(60.0, gt=0)


class ServerConfig(_Model):
    port: int = Field(4000, ge=1, le=65535)
    rate_limit: RateLimitConfig = RateLimitConfig()
    # node-agent additions
    host: str = "0.0.0.0"
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Connection limits: a request head must arrive within header_timeout seconds of its
    # first byte (JSON 408), an idle keep-alive connection is closed after keepalive_timeout,
    # and past max_connections a new connection gets a JSON 503 and is closed.
    header_timeout: float = Field(10.0, gt=0)
    keepalive_timeout: float = Field(30.0, gt=0)
    max_connections: int = Field(1000, ge=1)
    rate_limit_enabled: bool = True
    tls: TlsConfig | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value


# --- containers -------------------------------------------------------------------------------


class GpuRequest(_Model):
    """Which GPUs a container gets. ``gpu: true`` (Infernet) means every GPU of the host."""

    count: int | None = Field(None, ge=1)
    uuids: tuple[str, ...] = ()
    family: str | None = None
    all: bool = False
    exclusive: bool = True


def _gpu_request(value: Any) -> GpuRequest | None:
    if value is None or value is False:
        return None
    if value is True:
        return GpuRequest(all=True, exclusive=False)
    if isinstance(value, int):
        return GpuRequest(count=value)
    if isinstance(value, str):
        return GpuRequest(uuids=(value,))
    if isinstance(value, list | tuple):
        return GpuRequest(uuids=tuple(str(v) for v in value))
    if isinstance(value, dict):
        return GpuRequest.model_validate(value)
    if isinstance(value, GpuRequest):
        return value
    raise ValueError("gpu must be a bool, a count, a list of UUIDs or a mapping")


class ContainerConfig(_Model):
    """One service container (all of Infernet's §3.1 fields, plus limits and probing)."""

    id: str
    image: str = ""
    url: str = ""
    bearer: Secret | None = None
    port: int = Field(3000, ge=1, le=65535)
    external: bool = True
    gpu: GpuRequest | None = None
    accepted_payments: dict[str, int] = {}
    allowed_ips: tuple[str, ...] = ()
    allowed_addresses: tuple[str, ...] = ()
    allowed_delegate_addresses: tuple[str, ...] = ()
    # node-agent: only requests made with these API keys (ids, as in api_keys) may use it
    # off-chain; empty: anyone the other rules admit. A served workload gets its owner's key.
    allowed_keys: tuple[str, ...] = ()
    description: str = ""
    command: str = ""
    env: dict[str, str] = {}
    generates_proofs: bool = False
    volumes: tuple[str, ...] = ()
    # node-agent additions
    max_concurrency: int = Field(32, ge=1)
    queue_size: int = Field(1024, ge=0)
    timeout: float = Field(180.0, gt=0)
    memory_limit: str | None = None
    cpus: float | None = Field(None, gt=0)

    @field_validator("gpu", mode="before")
    @classmethod
    def _normalise_gpu(cls, value: Any) -> GpuRequest | None:
        return _gpu_request(value)

    @field_validator("bearer", mode="before")
    @classmethod
    def _bearer(cls, value: Any) -> Any:
        return None if value in ("", None) else _resolve_secret(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _CONTAINER_ID.match(value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, '_', '.', '-'"
            )
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("allowed_addresses", "allowed_delegate_addresses")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in value)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("accepted_payments")
    @classmethod
    def _payments(cls, value: dict[str, int]) -> dict[str, int]:
        """Token addresses lower-cased (the Infernet node only matched checksummed keys);
        amounts are raw base units (wei for ETH, the zero address)."""
        out: dict[str, int] = {}
        for token, minimum in value.items():
            if not _ADDRESS.match(token):
                raise ValueError(f"accepted_payments: {token!r} is not a token address")
            if not 0 <= minimum < 2**256:
                raise ValueError(f"accepted_payments: minimum for {token} must be 0 .. 2**256-1")
            out[token.lower()] = minimum
        return out


# --- chain ------------------------------------------------------------------------------------


class WalletConfig(_Model):
    max_gas_limit: int = Field(5_000_000, ge=21_000)
    private_key: Secret | None = None
    payment_address: str | None = None
    allowed_sim_errors: tuple[str, ...] = ()
    # node-agent additions
    keystore: Path | None = None
    keystore_password: Secret | None = None
    max_fee_per_gas_gwei: float | None = Field(None, gt=0)
    max_priority_fee_per_gas_gwei: float = Field(1.0, ge=0)

    @field_validator("private_key", "keystore_password", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        return _resolve_secret(value)

    @field_validator("payment_address")
    @classmethod
    def _payment_address(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not _ADDRESS.match(value):
            raise ValueError("payment_address must be the node's Wallet address (0x + 40 hex)")
        return value


class SnapshotSyncConfig(_Model):
    sleep: float = Field(1.0, ge=0)
    batch_size: int = Field(500, ge=1)
    starting_sub_id: int = Field(0, ge=0)
    sync_period: float = Field(0.5, gt=0)


class ChainConfig(_Model):
    enabled: bool = False
    rpc_url: str | None = None
    trail_head_blocks: int = Field(1, ge=0)
    registry_address: str | None = None
    wallet: WalletConfig | None = None
    snapshot_sync: SnapshotSyncConfig = SnapshotSyncConfig()
    # node-agent additions
    rpc_urls: tuple[str, ...] = ()
    confirmations: int = Field(1, ge=0)
    rpc_timeout: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _required_when_enabled(self) -> ChainConfig:
        if not self.enabled:
            return self
        if not (self.rpc_url or self.rpc_urls):
            raise ValueError("chain.rpc_url is required when chain.enabled is true")
        if not self.registry_address:
            raise ValueError("chain.registry_address is required when chain.enabled is true")
        if self.wallet is None or (
            self.wallet.private_key is None and self.wallet.keystore is None
        ):
            raise ValueError(
                "chain.wallet.private_key (or chain.wallet.keystore) is required when chain.enabled"
            )
        return self

    def all_rpc_urls(self) -> tuple[str, ...]:
        urls = ((self.rpc_url,) if self.rpc_url else ()) + self.rpc_urls
        return tuple(dict.fromkeys(urls))


# --- logging, docker, misc ------------------------------------------------------------------------


class LogConfig(_Model):
    path: str | None = None
    max_file_size: int = Field(2**30, ge=1024)
    backup_count: int = Field(2, ge=0)
    # node-agent addition
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class DockerCredentials(_Model):
    username: str
    password: Secret

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Any:
        return _resolve_secret(value)

    def as_auth_config(self) -> dict[str, str]:
        """The plain dict docker-py expects (the reference passed a model and broke pulls)."""
        return {"username": self.username, "password": self.password.get_secret_value()}


class RedisConfig(_Model):
    """Accepted for compatibility; node-agent keeps its state in SQLite instead."""

    host: str = "redis"
    port: int = 6379


class JobsConfig(_Model):
    """Job store and pipeline settings (node-agent addition)."""

    retention_seconds: float = Field(7 * 24 * 3600, gt=0)
    retention_count: int = Field(1_000_000, ge=100)
    # What happens to jobs a crash cut off: mark them failed (the default: a job may have had
    # side effects in the container) or run them again.
    on_restart: Literal["fail", "rerun"] = "fail"
    durability: Literal["normal", "full"] = "normal"
    max_batch_size: int = Field(1000, ge=1)
    max_wait_seconds: float = Field(30.0, ge=0)


class ContainersRuntimeConfig(_Model):
    """How managed containers are run (node-agent addition)."""

    network: str | None = None
    publish_host: str = "127.0.0.1"
    stop_on_shutdown: bool = True
    stop_timeout: float = Field(10.0, ge=0)
    restart_backoff_max: float = Field(60.0, gt=0)
    watch_interval: float = Field(5.0, gt=0)
    pull: bool = True
    # bridge: call containers on their Docker network address (fast, no docker-proxy);
    # published: through the port published on publish_host (e.g. when the agent runs in a VM
    # or container that cannot reach Docker networks).
    connect: Literal["bridge", "published"] = "bridge"
    # A service's answer is held in memory whole; a larger one fails the job with a clear error.
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024)


class AgentConfig(_Model):
    """Lifecycle settings (node-agent addition)."""

    state_dir: Path | None = None
    shutdown_grace: float = Field(30.0, ge=0)
    info_cache_seconds: float = Field(1.0, ge=0)
    resources_timeout: float = Field(0.7, gt=0)


class Config(_Model):
    containers: tuple[ContainerConfig, ...] = ()
    chain: ChainConfig = ChainConfig()
    docker: DockerCredentials | None = None
    forward_stats: bool = False
    log: LogConfig = LogConfig()
    manage_containers: bool = True
    redis: RedisConfig = RedisConfig()
    server: ServerConfig = ServerConfig()
    startup_wait: float = Field(5.0, ge=0)
    # node-agent sections
    agent: AgentConfig = AgentConfig()
    jobs: JobsConfig = JobsConfig()
    runtime: ContainersRuntimeConfig = ContainersRuntimeConfig()
    onchain: OnchainConfig = OnchainConfig()
    gpus: GpusConfig = GpusConfig()
    grid: GridConfig = GridConfig()
    api_keys: ApiKeysConfig = ApiKeysConfig()
    workloads: WorkloadsConfig = WorkloadsConfig()
    ui: UiConfig = UiConfig()

    @model_validator(mode="after")
    def _containers_consistent(self) -> Config:
        seen: set[str] = set()
        for index, container in enumerate(self.containers):
            if container.id in seen:
                raise ValueError(f"containers[{index}].id: duplicate container id {container.id!r}")
            seen.add(container.id)
            if self.manage_containers and not container.image and not container.url:
                raise ValueError(
                    f"containers[{index}].image: required when manage_containers is true"
                )
        return self

    def container(self, container_id: str) -> ContainerConfig | None:
        for container in self.containers:
            if container.id == container_id:
                return container
        return None


# --- loading ------------------------------------------------------------------------------------


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/node-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "node-agent"


def resolve_state_dir(config: Config, override: Path | None) -> Path:
    """``--state-dir``, else ``agent.state_dir``, else systemd's STATE_DIRECTORY, else default."""
    if override is not None:
        return override
    if config.agent.state_dir is not None:
        return config.agent.state_dir
    systemd_dir = os.environ.get("STATE_DIRECTORY")
    if systemd_dir:
        return Path(systemd_dir.split(":")[0])
    return default_state_dir()


def find_config_path(cli_path: Path | None) -> Path:
    """``--config``, else ``INFERNET_CONFIG_PATH``, else ``config.json``/``config.yaml``."""
    if cli_path is not None:
        return cli_path
    env_path = os.environ.get("INFERNET_CONFIG_PATH")
    if env_path:
        return Path(env_path)
    for candidate in ("config.yaml", "config.yml", "config.json"):
        if Path(candidate).exists():
            return Path(candidate)
    raise ConfigError("No configuration file: pass --config or set INFERNET_CONFIG_PATH")


def parse_config(raw: Any, *, source: str = "config") -> Config:
    """Validate a decoded document; errors name the offending key path."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping", {"key": ""})
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        detail = f"{source}: {key}: {message}" if key else f"{source}: {message}"
        raise ConfigError(detail, {"key": key, "problems": _describe_errors(exc)}) from None


def _describe_errors(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        out.append(f"{key}: {error['msg'].removeprefix('Value error, ')}")
    return out


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", {"key": ""}) from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}", {"key": ""}
        ) from None
    return parse_config(raw, source=str(path))
