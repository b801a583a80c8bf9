"""Pure-Python mode: `kube_event_watcher.*` loaded from its .py sources even where compiled (mypyc)
modules sit beside them, so one tree tests both builds (`KEW_PURE_PYTHON=1`).

An import hook first in `sys.meta_path` that finds `kube_event_watcher.*` submodules with a
source-only file finder; every other package, and their C extensions, import as usual. Subprocesses
(the daemon the integration tests start) get it through `pure_site/sitecustomize.py` on
PYTHONPATH. It must be installed before anything imports our submodules.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, ModuleSpec, SourceFileLoader
from pathlib import Path
from types import ModuleType

ENV = "KEW_PURE_PYTHON"
SITE = Path(__file__).resolve().parent / "pure_site"


def wanted() -> bool:
    return os.environ.get(ENV) == "1"


class SourcesOnly(MetaPathFinder):
    """Finds `kube_event_watcher.*` submodules as .py files only (never a .so beside them)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith("kube_event_watcher.") or path is None:
            return None
        for entry in path:
            spec = FileFinder(entry, (SourceFileLoader, SOURCE_SUFFIXES)).find_spec(
                fullname, target
            )
            if spec is not None and spec.loader is not None:
                return spec
        return None  # a namespace package, or no source: the usual finders decide


def install() -> None:
    """Put the hook first, and on PYTHONPATH for child processes. Refuses when a compiled
    watcher module is already imported (it would stay in use)."""
    compiled = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("kube_event_watcher.")
        and not str(getattr(module, "__file__", "")).endswith(".py")
        and getattr(module, "__file__", None)
    ]
    if compiled:
        raise RuntimeError(f"{ENV}=1 came too late: compiled modules already imported: {compiled}")
    if not any(isinstance(finder, SourcesOnly) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourcesOnly())
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(SITE) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(SITE), *filter(None, paths)])
