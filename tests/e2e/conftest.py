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
from .engines.kafka.broker import KafkaBroker, KafkaUnavailable, find_jars
from .engines.nats.server import NatsServer, NatsServerError, build_nats_server

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


# -- the streaming engines (the streaming receivers' and the fleet's tests) -------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the module (~3 s to start); tests that stop it start it again."""
    try:
        jars = find_jars()
        running = KafkaBroker(jars, tmp_path_factory.mktemp("kafka"))
        running.format()
        running.start()
    except KafkaUnavailable as exc:
        _unavailable(f"no Apache Kafka broker for the kafka receiver's tests: {exc}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def up(broker: KafkaBroker) -> KafkaBroker:
    """The broker, started again if an earlier test left it stopped."""
    if broker.proc is None:
        broker.start()
    return broker


@pytest.fixture(scope="session")
def nats_binary() -> Path:
    try:
        return build_nats_server()
    except NatsServerError as exc:
        _unavailable(f"cannot build nats-server for the NATS tests: {exc}")


@pytest.fixture(scope="module")
def nats_server(
    nats_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatsServer]:
    """One server for the module; fault tests stop and start it, on its same store."""
    with NatsServer(nats_binary, tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def running(nats_server: NatsServer) -> Iterator[NatsServer]:
    """The module's server, started again after a test that stopped it."""
    yield nats_server
    if nats_server.proc is None:
        nats_server.start()
