"""Fixtures for the end-to-end tests: one real kube-apiserver + etcd for the whole run, and
(for the tests that ask) a local cluster: controller-manager, scheduler and kwok nodes.

The binaries are built (or found in the cache) once collection is done, outside any test,
because a cold build takes far longer than the per-test timeout. When they cannot be built
the e2e tests are skipped, or fail when ``$CI`` is set so that CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from .controlplane.cluster import (
    ControlPlane,
    ControlPlaneError,
    find_binaries,
    missing_binaries,
)
from .controlplane.localcluster import LOCAL_CLUSTER_BINARIES, LocalCluster

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
            "e2e: building or reusing etcd, kube-apiserver, kube-scheduler, "
            "kube-controller-manager, kubectl, kwok and helm "
            "(tests/e2e/controlplane/build.sh; a cold build takes many minutes)"
        )
    try:
        session.config.stash[_BINARIES] = find_binaries()
    except ControlPlaneError as exc:
        session.config.stash[_BINARIES] = exc


def _unavailable(message: str) -> NoReturn:
    """Skip, or fail when ``$CI`` is set so that CI cannot pass by skipping."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _binaries(request: pytest.FixtureRequest, names: tuple[str, ...]) -> Path:
    binaries = request.config.stash.get(_BINARIES, None)
    if binaries is None:
        try:
            binaries = find_binaries()
        except ControlPlaneError as exc:
            binaries = exc
    if isinstance(binaries, ControlPlaneError):
        _unavailable(f"cannot build {'/'.join(names)} for the e2e tests: {binaries}")
    missing = missing_binaries(binaries, names)
    if missing:
        _unavailable(
            f"{binaries} lacks {', '.join(missing)} (tests/e2e/controlplane/build.sh builds them)"
        )
    return binaries


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A started ControlPlane shared by the whole run; stopped at the end, pass or fail."""
    with ControlPlane(_binaries(request, ("kube-apiserver", "etcd"))) as plane:
        yield plane


@pytest.fixture(scope="session")
def kubectl(request: pytest.FixtureRequest) -> Path:
    """kubectl built from the control plane's k8s.io/kubernetes (not whatever is on PATH)."""
    return _binaries(request, ("kubectl",)) / "kubectl"


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    """helm built from the pinned helm.sh/helm/v3 (not whatever is on PATH)."""
    return _binaries(request, ("helm",)) / "helm"


@pytest.fixture(scope="module")
def local_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A started LocalCluster (its own control plane, controller-manager, scheduler, kwok
    with two fake Nodes) for one test module: its crash loops keep the CPU busy, so it is
    stopped when the module is done rather than at the end of the run (~7 s to start)."""
    with LocalCluster(_binaries(request, LOCAL_CLUSTER_BINARIES)) as cluster:
        yield cluster
