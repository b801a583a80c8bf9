"""Build: the pure pipeline modules compiled with mypyc where a C compiler is at hand.

pyproject.toml holds the metadata; this file only adds the compiled extension modules.
The same .py files always ship beside them, so whatever goes wrong here the result is a
working install, pure Python and ~1.3x slower on the hot path (bench/RESULTS.md):

    KEW_MYPYC unset  compile if mypyc and a C compiler work, else build pure Python
    KEW_MYPYC=0      pure Python, no compile attempted
    KEW_MYPYC=1      compile or fail (the image build and CI, where a fallback would hide)

For a development tree, `make compile` builds them in place (`setup.py build_ext --inplace`)
and writes COMPILED_MANIFEST, which the test suite checks to refuse stale modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent

# The hot path, decode → normalize → ledger → filter → aggregate → route. Not model.py:
# msgspec decodes into its classes, which must stay msgspec's own (it rejected the TypedDicts
# they were, compiled). Not normalize.py: it reads the Structs' attributes, which compiled
# code reads through the generic protocol and 3.11's interpreter through its inline caches;
# compiled, it made no difference (bench/RESULTS.md, 2026-12-02). Not enrich/cache/detect/
# redaction: off the per-event path, async or I/O-bound, where compiling does not pay.
COMPILED = [
    "kube_event_watcher/pipeline/ledger.py",
    "kube_event_watcher/pipeline/filtering.py",
    "kube_event_watcher/pipeline/matching.py",
    "kube_event_watcher/pipeline/grouping.py",
    "kube_event_watcher/pipeline/aggregate.py",
    "kube_event_watcher/pipeline/route.py",
]
# Not pyproject's [tool.mypy]: its pydantic plugin and the dependencies mypy would follow
# into are absent from an isolated build (`pip wheel .`). Without site-packages the
# third-party types are Any to the compiled code in every build, a dev tree's and a
# wheel's alike, so what the tests run is what ships; the strict check is `make lint`'s.
MYPYC_OPTIONS = [
    "--python-version=3.11",
    "--no-site-packages",
    "--ignore-missing-imports",
    "--follow-imports=silent",
]
COMPILED_MANIFEST = "kube_event_watcher/pipeline/.compiled.json"
"""Written by an in-place build: the sha256 of each compiled source (checked by conftest.py)."""


def say(message: str) -> None:
    print(f"kube-event-watcher build: {message}", file=sys.stderr, flush=True)


def source_digest(path: str) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


class BuildExtOrFallBack(build_ext):
    """build_ext that, when compiling fails and the build is not required to compile,
    removes what it built and leaves the pure-Python modules to be imported instead."""

    def run(self) -> None:
        compiled = bool(self.extensions)
        inplace = self.inplace  # setuptools clears it while building, and a failure leaves it so
        try:
            super().run()
        except Exception as exc:  # CompileError, a missing compiler, a linker error
            if os.environ.get("KEW_MYPYC") == "1":
                raise
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            say(f"compiling failed ({type(exc).__name__}: {exc}); building pure Python")
            compiled = False
        if inplace:
            self.write_manifest(compiled)

    def write_manifest(self, compiled: bool) -> None:
        """The sources the in-place modules were built from. No compiled module is left
        beside a source it was not built from here (an earlier build's, a module taken off
        COMPILED), where it would be imported instead of the source."""
        built = set(COMPILED) if compiled else set()
        for module in (ROOT / "kube_event_watcher").rglob("*.so"):
            source = module.with_name(module.name.split(".", 1)[0] + ".py")
            if source.exists() and source.relative_to(ROOT).as_posix() not in built:
                module.unlink()
        if not compiled:
            for support in (ROOT / "kube_event_watcher").glob("pipeline__mypyc.*.so"):
                support.unlink()
        manifest = {path: source_digest(path) for path in sorted(built)}
        (ROOT / COMPILED_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


# Commands that build extensions; the metadata ones (egg_info, dist_info, sdist) that pip
# runs first would only pay for mypyc's type check and code generation.
BUILDS = {"build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel"}


def ext_modules() -> list[Any]:
    mode = os.environ.get("KEW_MYPYC", "")
    if not BUILDS.intersection(sys.argv[1:]):
        return []
    if mode == "0":
        say("KEW_MYPYC=0: building pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if mode == "1":
            raise
        say("mypyc is not installed (pip install 'mypy[mypyc]'); building pure Python")
        return []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            config = Path(scratch, "mypyc.ini")
            config.write_text("[mypy]\n")
            options = ["--config-file", str(config), *MYPYC_OPTIONS]
            # group_name: one support library for all of them,
            # kube_event_watcher/pipeline__mypyc.*.so.
            return list(
                mypycify(
                    [*options, *COMPILED], opt_level="3", group_name="kube_event_watcher.pipeline"
                )
            )
    except (Exception, SystemExit) as exc:  # mypyc exits on type errors in the sources
        if mode == "1":
            raise
        say(f"mypyc could not compile the pipeline ({exc!r}); building pure Python")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExtOrFallBack})
