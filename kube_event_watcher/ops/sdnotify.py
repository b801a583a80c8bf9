"""systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram per message.

With `Type=notify` the unit is "started" only when we send READY=1, and with `WatchdogSec=`
systemd restarts us when WATCHDOG=1 pings stop (a hung event loop). Outside systemd
(`NOTIFY_SOCKET` unset) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    def __init__(self, address: str) -> None:
        # A leading '@' names a socket in the abstract namespace (sd_notify(3)).
        self.address = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
        return cls(address) if address else None

    def notify(self, *fields: str) -> bool:
        """Send `READY=1`, `WATCHDOG=1`, `STATUS=...`, `STOPPING=1`; False when it failed."""
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError as exc:
            log.warning("systemd notify failed", socket=self.address, error=str(exc))
            return False
        return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when no watchdog is asked for us."""
    values = env if env is not None else os.environ
    usec = values.get("WATCHDOG_USEC")
    pid = values.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


async def run_watchdog(
    notifier: SystemdNotifier,
    interval: float,
    stop: asyncio.Event,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Ping WATCHDOG=1 every `interval` while the event loop runs (liveness, not readiness:
    a stale stream is reported by /readyz and the self-alert, not by a restart loop)."""
    while not stop.is_set():
        notifier.notify("WATCHDOG=1")
        await sleep(interval)
