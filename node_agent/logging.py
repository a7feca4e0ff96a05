"""structlog setup: JSON lines for journald and files, a readable console in a terminal.

Every line of an HTTP request carries its ``request_id`` (bound through contextvars by the API
dispatcher). Values that look like secrets are redacted here, once, so no call site can leak
them by accident.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from node_agent.config import LogConfig

_SECRET_KEYS = re.compile(r"(private_key|password|secret|token|bearer|api_key|authorization)", re.I)
_HEX_KEY = re.compile(r"\b(0x)?[0-9a-fA-F]{64}\b")
REDACTED = "[redacted]"


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop values under secret-sounding keys and anything shaped like a 32-byte private key."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str) and _HEX_KEY.search(value) and key not in _HASH_KEYS:
            event_dict[key] = _HEX_KEY.sub(REDACTED, value)
    return event_dict


# Keys whose 32-byte hex values are public (transaction and container hashes), not keys.
_HASH_KEYS = frozenset({"tx_hash", "containers_hash", "block_hash", "container_hash", "digest"})


# A record carrying a line another process rendered already (the chain process): the
# formatters below write it as it is instead of rendering it a second time.
RENDERED = "rendered_line"


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, passing already rendered lines through.

    Why: during a burst the chain process logs a line per delivery; rendering them in the API's
    process cost a fifth of its main thread and put the API's p99 over 10 ms (docs/chain.md)."""

    def __init__(self, *args: Any, renders_json: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renders_json = renders_json

    def format(self, record: logging.LogRecord) -> str:
        rendered = getattr(record, RENDERED, None)
        if isinstance(rendered, str):
            return rendered
        return super().format(record)


def shared_processors() -> list[Any]:
    """What every line gets before rendering, in this process or in the chain process."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


_JSON = structlog.processors.JSONRenderer()


def json_line(event_dict: MutableMapping[str, Any]) -> str:
    """An event dict (after ``shared_processors``) as the JSON line this process would write."""
    return str(_JSON(None, "", structlog.processors.format_exc_info(None, "", event_dict)))


def renders_json_lines() -> bool:
    """Every handler of the root logger writes our JSON lines (journald, a file): another
    process may then hand over lines it rendered itself (``RENDERED``)."""
    handlers = logging.getLogger().handlers
    return bool(handlers) and all(
        isinstance(h.formatter, _Formatter) and h.formatter.renders_json for h in handlers
    )


def configure_logging(config: LogConfig, *, stream: Any = None) -> None:
    """Install structlog + stdlib logging according to ``log.*`` (Infernet keys plus ours)."""
    stream = stream or sys.stdout
    use_json = config.format == "json" or (config.format == "auto" and not stream.isatty())
    shared = shared_processors()

    def formatter(json: bool) -> _Formatter:
        renderer: Any = _JSON if json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
        return _Formatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            renders_json=json,
        )

    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    handlers[0].setFormatter(formatter(use_json))
    if config.path:
        file_handler = logging.handlers.RotatingFileHandler(
            config.path, maxBytes=config.max_file_size, backupCount=config.backup_count
        )
        file_handler.setFormatter(formatter(True))
        handlers.append(file_handler)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(config.level)
    # aiohttp's access log is per request: too chatty for a node serving thousands of jobs/s.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("docker").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    structlog.configure(
        # The level is checked against the root logger (filter_by_level), not baked into the
        # cached bound loggers, so a reload can change it (set_log_level).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )


def set_log_level(level: str) -> None:
    """Apply ``log.level`` on a running node (reload): every logger defers to the root's."""
    logging.getLogger().setLevel(level)
