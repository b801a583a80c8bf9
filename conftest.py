"""Which build of watcher the tests run: the compiled pipeline modules (`make compile`, what
`make test` runs) or, with KEW_PURE_PYTHON=1, the .py sources. Loaded before any test module,
so the choice is made before watcher is imported.

Compiled modules built from older sources than the tree's are refused: the tests would pass
or fail for code that is not there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import pure_python

ROOT = Path(__file__).resolve().parent
MANIFEST = (
    ROOT / "kube_event_watcher" / "pipeline" / ".compiled.json"
)  # setup.py's COMPILED_MANIFEST
REBUILD = "run `make compile` (or test the sources: KEW_PURE_PYTHON=1)"

if pure_python.wanted():
    pure_python.install()


def _compiled_in_tree() -> dict[str, Path]:
    """Source path (relative, as in the manifest) → the compiled module beside it."""
    found = {}
    for so in (ROOT / "kube_event_watcher").rglob("*.so"):
        source = so.with_name(so.name.split(".", 1)[0] + ".py")
        if source.exists():
            found[source.relative_to(ROOT).as_posix()] = so
    return found


def _stale(compiled: dict[str, Path]) -> list[str]:
    try:
        built = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        built = {}
    return [
        source
        for source in sorted(compiled)
        if built.get(source) != hashlib.sha256((ROOT / source).read_bytes()).hexdigest()
    ]


def pytest_configure(config: pytest.Config) -> None:
    if pure_python.wanted():
        return
    stale = _stale(_compiled_in_tree())
    if stale:
        raise pytest.UsageError(
            f"compiled modules are older than their sources: {', '.join(stale)}; {REBUILD}"
        )


def _loaded_compiled() -> list[str]:
    """The compiled watcher modules imported so far."""
    return [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("kube_event_watcher.")
        and (path := getattr(module, "__file__", None))
        and not path.endswith(".py")
    ]


def pytest_report_header(config: pytest.Config) -> str:
    if pure_python.wanted():
        return "kube_event_watcher: pure Python (KEW_PURE_PYTHON=1)"
    compiled = sorted(_compiled_in_tree())
    if not compiled:
        return (
            "kube_event_watcher: pure Python (nothing compiled; `make compile` builds the modules)"
        )
    return f"kube_event_watcher: compiled with mypyc: {', '.join(compiled)}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Prove the mode: pure means no compiled watcher module was imported; with
    KEW_REQUIRE_COMPILED=1 (CI), the compiled modules must be the ones in use."""
    compiled = _loaded_compiled()
    if pure_python.wanted() and compiled:
        raise pytest.UsageError(
            f"KEW_PURE_PYTHON=1, yet compiled modules were imported: {compiled}"
        )
    if os.environ.get("KEW_REQUIRE_COMPILED") == "1" and not pure_python.wanted():
        missing = sorted(set(_expected_compiled()) - set(compiled))
        if missing:
            raise pytest.UsageError(
                f"KEW_REQUIRE_COMPILED=1, yet not compiled: {missing}; {REBUILD}"
            )


def _expected_compiled() -> list[str]:
    """The compiled modules the tests import, as module names."""
    names = [source.removesuffix(".py").replace("/", ".") for source in _compiled_in_tree()]
    return [name for name in names if name in sys.modules] or [
        "kube_event_watcher.pipeline.aggregate"
    ]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The async tests run on the loop the daemon would choose (ops/eventloop.py): uvloop,
    or asyncio's with KEW_EVENT_LOOP=asyncio, as `make test-pure` sets, so both are tested."""
    from kube_event_watcher.ops.eventloop import loop_factory

    factory = loop_factory()
    return {factory.__module__.split(".")[0]: factory}
