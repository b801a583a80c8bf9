"""The container image on the real kube-apiserver (issue #17): `podman run` of $KEW_IMAGE
(`.ci/build-image` builds localhost/kube-event-watcher:ci) as UID 65532 with a read-only root,
a tmpfs /tmp, the config and kubeconfig mounted read-only and a state volume, on the host's
network to reach the test apiserver on 127.0.0.1. Warning events become lines of the file
receiver's file on the volume; SIGTERM (to `podman run`, which passes it on to the daemon,
PID 1 in the container) stops it with exit 0; a second container on the same volume
delivers only what is new.

Skipped unless KEW_IMAGE names an image. With $CI set, a podman that cannot run it, or an
image it does not have, fails the test instead. podman is `.ci/podman` (the settings this
sandbox needs), or $KEW_PODMAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import yaml

from tests.e2e.controlplane.cluster import ControlPlane, free_port
from tests.support.process import eventually, records, stop_daemon

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KEW_IMAGE", "")
PODMAN = os.environ.get("KEW_PODMAN") or str(ROOT / ".ci" / "podman")
UID = 65532
CONFIG_DIR = "/etc/kube-event-watcher"  # mounted read-only
STATE_DIR = "/var/lib/kube-event-watcher"  # the image's VOLUME and STATE_DIRECTORY

pytestmark = pytest.mark.skipif(
    not IMAGE,
    reason="KEW_IMAGE is not set (.ci/build-image builds localhost/kube-event-watcher:ci)",
)


def _unavailable(message: str) -> NoReturn:
    """Skip, or fail when ``$CI`` is set so that CI cannot pass by skipping."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def image() -> str:
    """$KEW_IMAGE, once podman answers and has it."""
    if shutil.which(PODMAN) is None:
        _unavailable(f"podman ({PODMAN}) is not installed; .ci/build-image installs it")
    try:
        found = subprocess.run(
            [PODMAN, "image", "exists", IMAGE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"podman ({PODMAN}) does not answer: {exc}")
    if found.returncode != 0:
        said = f": {found.stderr.strip()}" if found.stderr.strip() else ""
        _unavailable(
            f"podman has no image {IMAGE} (exit {found.returncode}{said}); "
            "build it with .ci/build-image"
        )
    return IMAGE


@dataclass
class Container:
    """The daemon's files on the host: the mounted config dir and the state volume."""

    image: str
    config_dir: Path
    state_dir: Path
    ops_port: int

    @property
    def log(self) -> Path:
        return self.config_dir.parent / "container.log"

    @property
    def alerts(self) -> Path:
        return self.state_dir / "alerts.jsonl"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.subprocess.Process]:
        """`podman run` of the image in the foreground, its output in `log`; SIGTERM when the
        block ends, and podman must exit 0 (the daemon's own exit code). Killed and removed
        when the block fails."""
        name = f"kew-e2e-{uuid.uuid4().hex[:8]}"
        with self.log.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                PODMAN,
                "run",
                "--rm",
                "--name",
                name,
                "--network",
                "host",
                "--user",
                f"{UID}:{UID}",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--volume",
                f"{self.config_dir}:{CONFIG_DIR}:ro",
                "--volume",
                f"{self.state_dir}:{STATE_DIR}",
                self.image,
                "run",
                "-c",
                f"{CONFIG_DIR}/config.yaml",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            yield proc
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await asyncio.to_thread(
                subprocess.run, [PODMAN, "rm", "--force", name], capture_output=True, timeout=60
            )
            raise
        await stop_daemon(proc)

    def get_ops(self, path: str) -> int:
        """The HTTP status of the daemon's ops endpoint `path` (0: not listening yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            with err:
                return err.code
        except OSError:
            return 0

    async def ready(self, proc: asyncio.subprocess.Process) -> None:
        await eventually(
            lambda: self.get_ops("/readyz") == 200, "the container's /readyz", self.log, proc
        )

    async def delivered(self, proc: asyncio.subprocess.Process, uids: set[str]) -> list[str]:
        """The event uids in the alerts file, once all of `uids` are among them."""

        def check() -> list[str] | None:
            found = [r["event"]["uid"] for r in records(self.alerts) if "event" in r]
            return found if uids <= set(found) else None

        return await eventually(check, f"delivery of {uids}", self.log, proc)


@pytest.fixture
def container(image: str, control_plane: ControlPlane, tmp_path: Path) -> Container:
    """The config (Warning events of one cluster to a file on the state volume), the
    test apiserver's kubeconfig, and a state directory the image's user owns."""
    config_dir = tmp_path / "etc"
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)  # the container's user reads it (tmp_path is root's, 0700)
    kubeconfig = config_dir / "kubeconfig"
    shutil.copyfile(control_plane.kubeconfig, kubeconfig)
    ops_port = free_port()
    config = {
        "clusters": [{"name": "image-e2e", "kubeconfig": f"{CONFIG_DIR}/kubeconfig"}],
        "sources": [{"field_selector": "type=Warning", "startup_max_age": "10m"}],
        "receivers": [{"name": "archive", "type": "file", "path": f"{STATE_DIR}/alerts.jsonl"}],
        "aggregation": {"enabled": False},  # one alert per event, to count
        "state": {"backend": "file", "commit_interval": "100ms"},  # path: STATE_DIRECTORY
        "ops": {"listen": f"127.0.0.1:{ops_port}"},
    }
    (config_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in config_dir.iterdir():
        path.chmod(0o644)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chown(state_dir, UID, UID)
    return Container(image, config_dir, state_dir, ops_port)


async def test_the_image_delivers_warnings_to_its_volume_and_stops_on_sigterm(
    container: Container, control_plane: ControlPlane
) -> None:
    ns = f"e2e-image-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(ns)

    def warning(name: str, reason: str) -> str:
        return control_plane.pod_warning(ns, name, reason)

    before = warning("web-0", "BackOff")  # found by the first list (startup_max_age: 10m)
    async with container.running() as proc:
        await container.delivered(proc, {before})
        await container.ready(proc)
        assert container.get_ops("/healthz") == 200
        during = warning("web-1", "FailedMount")  # seen by the watch
        await container.delivered(proc, {during})
    # Written by the image's user, on the volume; the checkpoint is there too.
    assert container.alerts.stat().st_uid == UID
    assert {p.stat().st_uid for p in container.state_dir.iterdir()} == {UID}
    assert len(list(container.state_dir.iterdir())) >= 2, sorted(container.state_dir.iterdir())

    # A new container on the same volume: nothing again, only what is new.
    async with container.running() as proc:
        after = warning("web-2", "Unhealthy")
        delivered = await container.delivered(proc, {after})
    assert [u for u in delivered if u in {before, during, after}] == [before, during, after]
    alerts = records(container.alerts)
    assert {r["cluster"] for r in alerts} == {"image-e2e"}
    assert {r["type"] for r in alerts} == {"Warning"}
    log = container.log.read_text()
    assert "Traceback" not in log
    assert "read-only file system" not in log.lower()
