"""The daemon as a separate process, the way a user runs it, and ways to watch its output."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


async def start_daemon(
    config: Path, kubeconfig: Path | None, **env: str
) -> asyncio.subprocess.Process:
    """`kube-event-watcher run -c CONFIG --kubeconfig KC` (no --kubeconfig when None: the
    in-cluster path); its log goes to daemon.log beside the config (a pipe nobody reads
    would fill up and block the daemon)."""
    access = [] if kubeconfig is None else ["--kubeconfig", str(kubeconfig)]
    with (config.parent / "daemon.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kube_event_watcher.cli",
            "run",
            "-c",
            str(config),
            *access,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "KUBECONFIG": "", "HOME": str(config.parent), **env},
        )


async def stop_daemon(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """SIGTERM, and the daemon must exit 0 (drained and flushed) within `timeout` s."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), timeout) == 0


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a `file` receiver wrote. A reader polling the file while the daemon
    writes can see the end of a line not written yet, so only lines ending in a newline
    count, as `tail -f` or a log shipper would read them."""
    if not path.exists():
        return []
    complete, _, _ = path.read_bytes().rpartition(b"\n")
    return [orjson.loads(line) for line in complete.splitlines() if line]


async def eventually(
    check: Callable[[], T | None],
    what: str,
    log: Path,
    proc: asyncio.subprocess.Process | None = None,
    tries: int = 800,
) -> T:
    """Poll `check` until it returns something truthy: a separate process cannot signal us,
    so we look at what it wrote, every 25 ms, for at most `tries` times."""
    for _ in range(tries):
        value = check()
        if value:
            return value
        if proc is not None and proc.returncode is not None:
            break
        await asyncio.sleep(0.025)
    if proc is not None and proc.returncode is None:
        proc.kill()
        await proc.wait()
    output = log.read_text()[-4000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; daemon log:\n{output}")
