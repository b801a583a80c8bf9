from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from kube_event_watcher.ops import memory

GLIBC = platform.libc_ver()[0] == "glibc"

# A child process: pinning changes the whole process's allocator, so not in the test runner.
CHILD = """
from kube_event_watcher.ops.memory import pin_mmap_threshold
print(pin_mmap_threshold())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_the_threshold_is_pinned_on_glibc() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "True"


def test_an_operator_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.pin_mmap_threshold() is False


def test_without_mallopt_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)

    class NoMallopt:
        def __init__(self, name: object) -> None:
            pass

    monkeypatch.setattr(memory.ctypes, "CDLL", NoMallopt)  # musl/macOS: no such symbol
    assert memory.pin_mmap_threshold() is False
