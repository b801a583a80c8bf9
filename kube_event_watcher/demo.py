"""`kube-event-watcher demo`: a local cluster with broken workloads, to see what the tool does.

The cluster is the one the e2e tests use (``tests/e2e/controlplane``): etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from pinned Go modules, and kwok playing the
kubelets of fake Nodes. So the demo needs a source checkout and Go >= 1.26; the first build
takes about a quarter of an hour, later starts take seconds. This module builds and starts
that cluster (as child processes) and writes the config the daemon runs with; the CLI runs
the daemon itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Say = Callable[[str], None]
CONTROLPLANE = Path("tests") / "e2e" / "controlplane"
INTRO = (
    "kube-event-watcher demo: starting a local cluster (etcd, kube-apiserver, "
    "kube-controller-manager, kube-scheduler, kwok nodes) with broken workloads, then "
    "watching it. To watch your own cluster instead: kube-event-watcher run "
    "--kubeconfig FILE (or set KUBECONFIG)."
)


class DemoError(RuntimeError):
    """The demo cluster could not be built or started; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DemoCluster:
    kubeconfig: Path
    scenarios: tuple[str, ...]
    workdir: Path


def source_tree() -> Path:
    """The checkout this package runs from (the cluster is built from its tests/ tree)."""
    tree = Path(__file__).resolve().parents[1]
    if not (tree / CONTROLPLANE / "build.sh").is_file():
        raise DemoError(
            f"the demo builds its cluster from a source checkout ({CONTROLPLANE}/build.sh), "
            f"and there is none at {tree}: clone the repository and run `make demo` there"
        )
    return tree


async def build(tree: Path, say: Say) -> Path:
    """Run build.sh (cached per version), telling `say` each step; the binaries' dir."""
    script = tree / CONTROLPLANE / "build.sh"
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(script),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its go builds too are stopped as one group if cancelled
    )
    try:
        return await _built(process, script, say)
    except BaseException:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            await process.wait()
        raise


async def _built(process: asyncio.subprocess.Process, script: Path, say: Say) -> Path:
    assert process.stdout is not None and process.stderr is not None
    tail: list[str] = []

    async def progress(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            tail[:] = [*tail[-19:], line]
            if line.startswith("[build.sh"):
                say("build: " + line.split("] ", 1)[-1])

    stderr_task = asyncio.create_task(progress(process.stderr))
    out = await process.stdout.read()
    await stderr_task
    if await process.wait() != 0:
        raise DemoError(f"{script} failed; its last output:\n" + "\n".join(tail))
    return Path(out.decode().strip().splitlines()[-1])


@contextlib.asynccontextmanager
async def local_cluster(say: Say, *, workdir: Path | None = None) -> AsyncIterator[DemoCluster]:
    """Build (if needed) and start the local cluster with every broken workload applied;
    stop it and everything it started on exit (it also stops by itself if this process dies:
    it watches its stdin)."""
    tree = source_tree()
    say("building or reusing the cluster binaries (the first build takes about 15 minutes)")
    bin_dir = await build(tree, say)
    root = workdir or Path(tempfile.mkdtemp(prefix="kew-demo-"))
    log_path = root / "cluster.log"
    say(f"starting the cluster (work dir {root})")
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.e2e.controlplane.serve",
            "--bin",
            str(bin_dir),
            "--workdir",
            str(root / "cluster"),
            "--scenarios",
            cwd=tree,  # `-m` puts it on sys.path, so `tests` imports
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the daemon first
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        ready = await _wait_ready(process, say, log_path)
        yield DemoCluster(
            Path(ready["kubeconfig"]), tuple(ready.get("scenarios") or ()), root / "cluster"
        )
    finally:
        say("stopping the cluster")
        await _stop(process)


async def _wait_ready(
    process: asyncio.subprocess.Process, say: Say, log_path: Path
) -> dict[str, Any]:
    assert process.stdout is not None
    async for raw in process.stdout:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if message.get("ready"):
            result: dict[str, Any] = message
            return result
        if "step" in message:
            say(str(message["step"]))
    code = await process.wait()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
    raise DemoError(f"the local cluster exited ({code}) before it was ready:\n{tail}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()  # serve.py stops at EOF on its stdin
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 60)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def demo_config(kubeconfig: Path, state_dir: Path) -> dict[str, Any]:
    """The daemon's config for the demo: the local cluster, enrichment on (from the object
    cache), the Pod and Node detectors on with short graces (so the stuck-Terminating Pod
    and the NotReady Node show up within the minute: 20 s instead of 5 m and 1 m),
    alerts on stdout soon (10 s group wait instead of 30 s), state kept in memory, no HTTP
    port."""
    return {
        "clusters": [{"name": "demo", "kubeconfig": str(kubeconfig)}],
        # The workloads break while the daemon starts: take what happened in the last minutes.
        "sources": [{"field_selector": "type=Warning", "startup_max_age": "10m"}],
        "aggregation": {"group": {"wait": "10s", "interval": "1m"}},
        "enrichment": {"enabled": True, "watch_objects": True},
        # The workloads break as the daemon starts: report what is wrong already, too.
        "detectors": {
            "enabled": True,
            "terminating_after": "20s",
            "node_condition_after": "20s",
            "check_interval": "2s",
            "report_existing": True,
        },
        "receivers": [{"name": "console", "type": "stdout", "format": "message"}],
        "state": {"backend": "memory", "path": str(state_dir)},
        "ops": {"listen": ""},
        "log": {"level": "warning"},
    }


def write_config(kubeconfig: Path, directory: Path) -> Path:
    path = directory / "demo-config.yaml"
    path.write_text(yaml.safe_dump(demo_config(kubeconfig, directory), sort_keys=False))
    return path
