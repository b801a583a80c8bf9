"""sd_notify datagrams reach a local socket as systemd would read them."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_event_watcher.ops.sdnotify import SystemdNotifier, run_watchdog, watchdog_interval


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_ready_and_status_arrive_as_one_datagram(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier is not None
    assert notifier.notify("READY=1", "STATUS=watching 3 scopes")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 3 scopes"


def test_abstract_namespace_socket() -> None:
    name = f"kew-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert SystemdNotifier("@" + name).notify("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_outside_systemd_nothing_is_sent() -> None:
    assert SystemdNotifier.from_env({}) is None
    assert watchdog_interval({}) is None


def test_missing_socket_is_a_logged_failure_not_a_crash(tmp_path: Path) -> None:
    assert not SystemdNotifier(str(tmp_path / "gone")).notify("READY=1")


def test_watchdog_interval_is_half_of_watchdog_sec_for_our_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    )
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None


async def test_watchdog_pings_until_stopped(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    stop = asyncio.Event()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            stop.set()

    await run_watchdog(SystemdNotifier(path), 30.0, stop, sleep)
    assert [sock.recv(64) for _ in range(3)] == [b"WATCHDOG=1"] * 3
    assert slept == [30.0] * 3
