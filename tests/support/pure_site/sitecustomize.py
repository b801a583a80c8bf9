"""On PYTHONPATH in pure-Python mode (tests/support/pure_python.py): child Pythons load
watcher from its .py sources too."""

import importlib.util
import os
from pathlib import Path

if os.environ.get("KEW_PURE_PYTHON") == "1":
    _spec = importlib.util.spec_from_file_location(
        "_kew_pure_python", Path(__file__).resolve().parent.parent / "pure_python.py"
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install()
