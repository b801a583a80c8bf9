"""Config for the ops endpoint (/healthz, /readyz, /metrics) and the daemon's self-alert."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, field_validator

from kube_event_watcher.config.durations import Duration, format_duration
from kube_event_watcher.config.model import StrictModel


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int


def parse_listen(value: str) -> ListenAddress:
    """`127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464` or `:9464` (every interface)."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected host:port like '127.0.0.1:9464' or ':9464', got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"expected a port between 0 and 65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, like '[::1]:9464', got {value!r}")
    return ListenAddress(host or "0.0.0.0", port)


class OpsConfig(StrictModel):
    """`listen: ""` turns the HTTP endpoint off (the self-alert still runs)."""

    listen: str = "127.0.0.1:9464"
    stale_after: Duration = Field(default=600.0, gt=0)
    self_alert_receiver: str | None = None
    self_alert_interval: Duration = Field(default=30.0, gt=0)
    loop_lag_limit: Duration = Field(default=10.0, gt=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value.strip():
            parse_listen(value)
        return value.strip()

    @property
    def address(self) -> ListenAddress | None:
        return parse_listen(self.listen) if self.listen else None


def ops_problems(ops: OpsConfig, receivers: list[str], watch_timeouts: list[float]) -> list[str]:
    """Cross-section checks: the self-alert's receiver exists; staleness fits the watches."""
    problems = []
    alert_to = ops.self_alert_receiver
    if alert_to is not None and alert_to not in receivers:
        known = ", ".join(receivers) or "none configured"
        problems.append(f"ops.self_alert_receiver: no receiver named {alert_to!r} (known: {known})")
    for i, timeout in enumerate(watch_timeouts):
        if ops.stale_after <= timeout:
            problems.append(
                f"ops.stale_after: {format_duration(ops.stale_after)} is not longer than "
                f"sources[{i}].watch_timeout ({format_duration(timeout)}): a quiet but healthy "
                "watch renews itself only that often and would look stale; raise stale_after"
            )
    return problems
