"""structlog set-up: JSON lines when not on a terminal, secrets masked in every line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from kube_event_watcher.config.secrets import redact
from kube_event_watcher.pipeline.model import Alert


def _redact_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask every known secret in every string value (a token may hide in an error text)."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
        elif isinstance(value, BaseException):
            event_dict[key] = redact(f"{type(value).__name__}: {value}")
    return event_dict


def _redact_rendered(renderer: Any) -> Any:
    """The last line of defence: mask secrets in the rendered line itself (keys, nested
    values and tracebacks included)."""

    def render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        return redact(renderer(logger, method, event_dict))

    return render


class _RedactingFormatter(logging.Formatter):
    """stdlib records (aiohttp, asyncio) with their tracebacks, secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def level_from(config_level: str, env: Mapping[str, str] | None = None) -> int:
    """`KEW_LOG_LEVEL` wins over the config's `log.level` (a quick debug without an edit)."""
    env_level = (env if env is not None else os.environ).get("KEW_LOG_LEVEL")
    level_no = logging.getLevelName((env_level or config_level).strip().upper())
    return level_no if isinstance(level_no, int) else logging.INFO


def alert_fields(alert: Alert, receiver: str | None = None) -> dict[str, str]:
    """The fields every log line about an alert carries: cluster, namespace, object (and
    receiver), for `log.bind(**alert_fields(alert, name))`."""
    fields = {
        "cluster": alert.cluster,
        "namespace": alert.namespace or alert.regarding.namespace or "",
        "object": alert.regarding.describe(),
    }
    if receiver is not None:
        fields["receiver"] = receiver
    return fields


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now, not what it was at set-up: a test runner or a
    daemonizer may swap it, and a logger bound to a closed stream breaks every later line."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging (aiohttp, asyncio) through it."""
    out: Any = stream or _CurrentStderr()
    level_no = level_from(level)
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    # Tracebacks become text before redaction, so a secret in an exception is masked too.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_values,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, _redact_rendered(renderer)],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level_no, logging.WARNING))
