"""Fixtures for the end-to-end tests: one real kube-apiserver + etcd for the whole run.

The binaries are built (or found in the cache) once collection is done, outside any test,
because a cold build takes far longer than the per-test timeout. When they cannot be built
the e2e tests are skipped, or fail when ``$CI`` is set so that CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .controlplane.cluster import ControlPlane, ControlPlaneError, find_binaries

E2E_DIR = Path(__file__).resolve().parent
_BINARIES = pytest.StashKey[Path | ControlPlaneError]()


def _is_e2e(item: pytest.Item) -> bool:
    return E2E_DIR in item.path.parents


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection looks at the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(_is_e2e(item) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "e2e: building or reusing kube-apiserver and etcd "
            "(tests/e2e/controlplane/build.sh; a cold build takes many minutes)"
        )
    try:
        session.config.stash[_BINARIES] = find_binaries()
    except ControlPlaneError as exc:
        session.config.stash[_BINARIES] = exc


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A started ControlPlane shared by the whole run; stopped at the end, pass or fail."""
    binaries = request.config.stash.get(_BINARIES, None)
    if binaries is None:
        try:
            binaries = find_binaries()
        except ControlPlaneError as exc:
            binaries = exc
    if isinstance(binaries, ControlPlaneError):
        message = f"cannot build kube-apiserver/etcd for the e2e tests: {binaries}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with ControlPlane(binaries) as plane:
        yield plane
