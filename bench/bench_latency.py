"""End-to-end latency and catch-up on the real kube-apiserver, ours and
kubernetes-event-exporter side by side.

Latency mode: a load generator creates events.k8s.io/v1 Events at a fixed rate (then a
burst) over keep-alive HTTPS connections with the admin client certificate; the subject (our
daemon as a subprocess, or the peer's binary) delivers them to a webhook receiver on
loopback. Reports create → receive latency (p50/p90/p99/max), the burst's drain time, events
lost and duplicated, CPU seconds (and per alert) and peak RSS of the subject.

Catch-up mode (`--catchup N ...`): the subject is started, delivers a probe event, is stopped
(SIGTERM; ours writes its checkpoint), N events are created while it is down, as fast as the
apiserver takes them, and it is started again on the same state dir. Reports, from the
restart, the time to the first and to the last of the N delivered, lost, duplicated, CPU
seconds and peak RSS of the restarted process, and its progress curve; for ours, from its
log, whether it resumed by a watch from its checkpoint or relisted.

Runs are interleaved (ours, peer, ours, peer, ...), each in a namespace of its own so no run
sees another's events. The output is markdown for bench/RESULTS.md, with the ratios ours /
peer of each round (min / median / max). The figures go to bench/latency.json (each mode
replaces its own section) and are drawn into bench/latency.png when matplotlib is installed
(the `bench` extra; `--plot-only` redraws). Not a test: tests/e2e/test_bench_latency_smoke.py
runs both modes briefly so they do not rot.

    .venv/bin/python -m bench.bench_latency --rate 200 --seconds 60 --burst 2000 --rounds 2
    .venv/bin/python -m bench.bench_latency --catchup 20000 100000 --rounds 2 --connections 32

The peer is built by bench/peer/build.sh (skipped with a note when that fails, or with
--no-peer). Latency is measured from just before the create request is sent to the arrival
of the webhook call naming the event; the create round trip alone is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web

from tests.e2e.controlplane.cluster import ControlPlane, find_binaries, rfc3339_micro

ROOT = Path(__file__).resolve().parent.parent
PEER_BUILD = ROOT / "bench" / "peer" / "build.sh"
FIGURES = ROOT / "bench" / "latency.json"  # and latency.png beside it
NAME = re.compile(rb"lat-[a-z0-9]+-\d+")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the webhook receiver --------------------------------------------------------------------


class Receiver:
    """Loopback webhook: records when each event name first (and again) arrived, per path."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        self.requests += 1
        for name in set(NAME.findall(body)):
            self.arrivals.setdefault(name.decode(), []).append(now)
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{subject}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- the subjects ----------------------------------------------------------------------------


def daemon_command(config: dict[str, object], work: Path, kubeconfig: Path) -> list[str]:
    """`kube-event-watcher run` of this venv with `config` written into `work`; under
    cProfile when $KEW_BENCH_PROFILE names the output file."""
    path = work / "config.yaml"
    path.write_bytes(orjson.dumps(config))  # JSON is YAML
    args = ["run", "-c", str(path), "--kubeconfig", str(kubeconfig)]
    profile = os.environ.get("KEW_BENCH_PROFILE")
    if profile:
        return [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            profile,
            "-m",
            "kube_event_watcher.cli",
            *args,
        ]
    return [str(Path(sys.executable).with_name("kube-event-watcher")), *args]


def ours_command(
    plane: ControlPlane,
    work: Path,
    namespace: str,
    hook: str,
    log_level: str = "warning",
    batch_size: int = 1,
    fsync: bool = True,
) -> list[str]:
    config = {
        "sources": [{"namespaces": [namespace], "field_selector": "type=Warning"}],
        "state": {"backend": "file", "path": str(work / "state"), "fsync": fsync},
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
        "receivers": [
            {
                "name": "hook",
                "type": "webhook",
                "url": hook,
                "rate_limit": {"per_minute": 6_000_000, "burst": 100_000},
                # 1: one alert a request, as the peer sends; above: what is ready together.
                "batch_size": batch_size,
            }
        ],
        "log": {"level": log_level, "format": "json"},
        "ops": {"listen": "127.0.0.1:0"},  # other runs on this machine may hold the default
    }
    return daemon_command(config, work, plane.kubeconfig)


def peer_command(
    binary: Path,
    plane: ControlPlane,
    work: Path,
    namespace: str,
    hook: str,
    max_age: int = 60,
) -> list[str]:
    # omitLookup: our enrichment is off too (and the regarded Pods do not exist, so each
    # lookup would be a 404). maxEventAgeSeconds: what the peer's informer finds (listed at
    # start or watched) older than this it drops, so it must exceed create → delivery.
    config = {
        "logLevel": "error",
        "logFormat": "json",
        "namespace": namespace,
        "maxEventAgeSeconds": max_age,
        "kubeQPS": 1000,
        "kubeBurst": 1000,
        "omitLookup": True,
        "route": {"routes": [{"match": [{"receiver": "hook"}]}]},
        "receivers": [{"name": "hook", "webhook": {"endpoint": hook}}],
    }
    path = work / "peer.yaml"
    path.write_bytes(orjson.dumps(config))
    return [
        str(binary),
        "-conf",
        str(path),
        "-kubeconfig",
        str(plane.kubeconfig),
        "-metrics-address",
        "127.0.0.1:0",
    ]


# After a restart the peer sends what its list finds younger than maxEventAgeSeconds: an hour
# (the apiserver's default --event-ttl) covers any create phase, and each run's namespace is
# fresh, so that list holds the run's events and its probes only.
PEER_CATCHUP_AGE = 3600


def subject_command(
    subject: str,
    peer: Path | None,
    plane: ControlPlane,
    work: Path,
    namespace: str,
    hook: str,
    catchup: bool = False,
    batch_size: int = 1,
    fsync: bool = True,
) -> list[str]:
    """The command line of `subject` ("ours" or "peer"); in catch-up mode ours logs at info,
    which says how it resumed (watch from its checkpoint, or a relist)."""
    if subject == "ours":
        level = "info" if catchup else "warning"
        return ours_command(plane, work, namespace, hook, level, batch_size, fsync)
    assert peer is not None
    return peer_command(peer, plane, work, namespace, hook, PEER_CATCHUP_AGE if catchup else 60)


def build_peer() -> Path | None:
    try:
        done = subprocess.run(
            ["bash", str(PEER_BUILD)], capture_output=True, text=True, timeout=1800, check=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"peer: build failed, running ours only ({exc})", file=sys.stderr)
        return None
    return Path(done.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Run:
    subject: str
    namespace: str
    sent: dict[str, float] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)
    create_seconds: list[float] = field(default_factory=list)
    failed_creates: int = 0
    ready_seconds: float = 0.0
    cpu: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0


class Subject:
    """A subject's process: started (and started again) with the same command and work dir,
    output appended to work/subject.log, stopped with SIGTERM."""

    def __init__(self, name: str, command: list[str], work: Path) -> None:
        self.name = name
        self.command = command
        self.log_path = work / "subject.log"
        self.state = work / "state"  # ours: checkpoint journal and spool (the peer keeps none)
        self._process: asyncio.subprocess.Process | None = None
        self.started = 0.0  # time.time() just before the last start

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "not started"
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        self.started = time.time()
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.command, stdout=log, stderr=subprocess.STDOUT
            )

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    async def wait_ready(
        self, load: Load, receiver: Receiver, run: Run, tag: str, timeout: float = 60.0
    ) -> float:
        return await wait_ready(self, load, receiver, run, tag, timeout)

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        process = self.process
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
        return process.returncode


class Started(Protocol):
    name: str
    started: float

    @property
    def running(self) -> bool: ...

    def log_tail(self, chars: int = 2000) -> str: ...


async def wait_ready(
    subject: Started,
    load: Load,
    receiver: Receiver,
    run: Run,
    tag: str,
    timeout: float = 60.0,
    wait: float = 1.0,
) -> float:
    """Seconds from start until a probe event created after it was delivered; retried, as
    the watch may open after the first probe was created and the subject skip it as old.
    Probes are not counted among the run's events."""
    probe = 0
    while True:
        name = f"lat-probe{tag}x-{probe}"
        run.probes.append(name)
        await load.create(run, name, record=False)
        await wait_received(receiver, [name], timeout=wait, quiet=wait)
        if name in receiver.arrivals:
            return time.time() - subject.started
        if not subject.running or time.time() - subject.started > timeout:
            raise RuntimeError(
                f"{subject.name} did not deliver a probe event: {subject.log_tail()}"
            )
        probe += 1


# --- the load --------------------------------------------------------------------------------


def event_body(namespace: str, name: str) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": rfc3339_micro(),
            "reportingController": "bench.kube-event-watcher/load",
            "reportingInstance": "load-1",
            "action": "Testing",
            "reason": "BackOff",
            "note": f"Back-off restarting failed container app in pod {name}",
            "type": "Warning",
            "regarding": {
                "kind": "Pod",
                "namespace": namespace,
                "name": f"pod-{name}",
                "uid": f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
                "apiVersion": "v1",
            },
        }
    )


class Load:
    def __init__(self, plane: ControlPlane, connections: int) -> None:
        context = ssl.create_default_context(cafile=str(plane.pki.ca_cert))
        context.load_cert_chain(str(plane.pki.admin_cert), str(plane.pki.admin_key))
        self.connections = connections
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ssl=context),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.server = plane.server

    async def create(self, run: Run, name: str, record: bool = True) -> None:
        url = f"{self.server}/apis/events.k8s.io/v1/namespaces/{run.namespace}/events"
        body = event_body(run.namespace, name)
        start = time.time()
        if record:
            run.sent[name] = start
        try:
            async with self.session.post(
                url, data=body, headers={"content-type": "application/json"}
            ) as response:
                await response.read()
                ok = response.status == 201
        except aiohttp.ClientError:
            ok = False
        if not ok:
            run.failed_creates += 1
            run.sent.pop(name, None)
            return
        run.create_seconds.append(time.time() - start)

    async def steady(self, run: Run, tag: str, rate: float, seconds: float) -> None:
        """`rate` creates a second for `seconds`, each started on its own schedule."""
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.create(run, f"lat-{tag}-{i}")))
        await asyncio.gather(*tasks)

    async def burst(self, run: Run, tag: str, count: int) -> None:
        """`count` creates at once (each one's latency counts its wait for a connection)."""
        await asyncio.gather(*(self.create(run, f"lat-{tag}-{i}") for i in range(count)))

    async def flood(self, run: Run, tag: str, count: int) -> None:
        """`count` creates as fast as the apiserver takes them: one worker per connection,
        each sending its next create when the last one is answered."""
        numbers = iter(range(count))

        async def worker() -> None:
            for i in numbers:
                await self.create(run, f"lat-{tag}-{i}")

        await asyncio.gather(*(worker() for _ in range(self.connections)))

    async def close(self) -> None:
        await self.session.close()


async def wait_received(
    receiver: Receiver, names: list[str], timeout: float, quiet: float = 3.0
) -> None:
    """Until every name arrived, or nothing new arrived for `quiet` seconds (or `timeout`)."""
    deadline = time.time() + timeout
    last = (-1, time.time())
    while time.time() < deadline:
        got = sum(1 for n in names if n in receiver.arrivals)
        if got == len(names):
            return
        if got != last[0]:
            last = (got, time.time())
        elif time.time() - last[1] > quiet:
            return
        await asyncio.sleep(0.05)


# --- latency: a steady rate, then a burst ----------------------------------------------------


@dataclass
class Harness:
    """What every run shares: the apiserver, the webhook receiver, the load, the peer."""

    plane: ControlPlane
    receiver: Receiver
    load: Load
    peer: Path | None
    args: argparse.Namespace

    @contextlib.contextmanager
    def subject(
        self, subject: str, index: int, catchup: bool = False
    ) -> Iterator[tuple[Run, Subject]]:
        """A run of `subject` in a namespace of its own, created now, and its process (not
        started) with a work dir that lasts as long as the context."""
        stamp = f"{os.getpid() % 10000}-{int(time.time() * 1000) % 100000}"
        run = Run(subject, f"bench-{subject}-{index}-{stamp}")
        self.plane.create_namespace(run.namespace)
        hook = f"http://127.0.0.1:{self.receiver.port}/{subject}"
        with tempfile.TemporaryDirectory(prefix=f"kew-bench-{subject}-") as tmp:
            work = Path(tmp)
            command = subject_command(
                subject,
                self.peer,
                self.plane,
                work,
                run.namespace,
                hook,
                catchup,
                self.args.batch_size,
                not self.args.no_fsync,
            )
            yield run, Subject(subject, command, work)


async def one_run(harness: Harness, subject: str, index: int) -> Run:
    load, receiver, args = harness.load, harness.receiver, harness.args
    with harness.subject(subject, index) as (run, process):
        await process.start()
        try:
            run.ready_seconds = await process.wait_ready(load, receiver, run, str(index))
            await asyncio.sleep(1.0)
            cpu_start = cpu_seconds(process.pid)
            await load.steady(run, f"s{subject[0]}{index}", args.rate, args.seconds)
            if args.burst:
                await load.burst(run, f"b{subject[0]}{index}", args.burst)
            await wait_received(receiver, list(run.sent), timeout=args.drain)
            run.cpu = cpu_seconds(process.pid) - cpu_start
            run.rss_kib = status_kib(process.pid, "VmRSS")
            run.hwm_kib = status_kib(process.pid, "VmHWM")
        finally:
            await process.stop()
    return run


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample(values: list[float], points: int = 400) -> list[float]:
    """At most `points` of the sorted `values`, evenly spaced by rank (min and max kept)."""
    ordered = sorted(values)
    if len(ordered) <= points:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (points - 1))] for i in range(points)]


@dataclass
class Figures:
    """One phase ("steady" or "burst") of a latency run."""

    HEADER = (
        "run",
        "sent",
        "lost",
        "dup",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "drain s",
        "create p50 ms",
        "CPU s",
        "CPU ms/alert",
        "peak RSS MiB",
        "ready s",
    )
    who: str
    phase: str
    round: int
    sent: int
    lost: int
    duplicated: int
    p50: float
    p90: float
    p99: float
    worst: float
    drain: float  # first create of the phase → last of its events received, seconds
    create_p50: float
    cpu: float
    cpu_per_alert: float  # ms, the run's CPU over the alerts it delivered in both phases
    hwm_mib: float
    ready: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def subject(self) -> str:
        return f"{self.who} {self.phase}"

    @property
    def group(self) -> str:
        return self.phase

    def cells(self) -> list[str]:
        return [
            self.subject,
            str(self.sent),
            str(self.lost),
            str(self.duplicated),
            f"{self.p50:.1f}",
            f"{self.p90:.1f}",
            f"{self.p99:.1f}",
            f"{self.worst:.1f}",
            f"{self.drain:.2f}",
            f"{self.create_p50:.1f}",
            f"{self.cpu:.2f}",
            f"{self.cpu_per_alert:.2f}",
            f"{self.hwm_mib:.1f}",
            f"{self.ready:.2f}",
        ]


PHASES = {"s": "steady", "b": "burst"}


def figures(run: Run, receiver: Receiver, phase: str = "s", index: int = 0) -> Figures:
    """The figures of one phase ("s" steady, "b" burst) of `run`."""
    latencies, lost, duplicated, last = [], 0, 0, float("nan")
    marker = f"lat-{phase}"
    sent_in_phase = {n: t for n, t in run.sent.items() if n.startswith(marker)}
    for name, sent in sent_in_phase.items():
        arrived = receiver.arrivals.get(name)
        if not arrived:
            lost += 1
            continue
        duplicated += len(arrived) - 1
        latencies.append(arrived[0] - sent)
        last = arrived[0] if last != last else max(last, arrived[0])
    delivered = sum(1 for name in run.sent if name in receiver.arrivals)
    return Figures(
        who=run.subject,
        phase=PHASES[phase],
        round=index,
        sent=len(sent_in_phase),
        lost=lost,
        duplicated=duplicated,
        p50=quantile(latencies, 0.5) * 1000,
        p90=quantile(latencies, 0.9) * 1000,
        p99=quantile(latencies, 0.99) * 1000,
        worst=max(latencies, default=float("nan")) * 1000,
        drain=last - min(sent_in_phase.values(), default=float("nan")) if not lost else math.nan,
        create_p50=quantile(run.create_seconds, 0.5) * 1000,
        cpu=run.cpu,
        cpu_per_alert=run.cpu / delivered * 1000 if delivered else math.nan,
        hwm_mib=run.hwm_kib / 1024,
        ready=run.ready_seconds,
        latencies_ms=[round(v * 1000, 3) for v in sample(latencies)],
    )


# --- catch-up: events created while the subject is down, delivered after its restart ---------


Sample = tuple[float, int, float, float]  # seconds since start, delivered, RSS MiB, state MiB


@dataclass
class CatchUp:
    """One catch-up run: times are seconds since the restart (the process's spawn)."""

    HEADER = (
        "run",
        "events",
        "create/s",
        "first s",
        "all s",
        "lost",
        "dup",
        "re-sent",
        "CPU s",
        "CPU ms/alert",
        "peak RSS MiB",
        "webhook calls",
        "harness CPU s",
        "resumed by",
    )
    who: str
    events: int
    round: int
    create_rate: float
    first: float
    done: float  # every event delivered (NaN when some were lost)
    lost: int
    duplicated: int
    resent: int  # probe events, delivered before the stop, sent again after the restart
    cpu: float  # of the restarted process, from its start until every event was delivered
    hwm_mib: float
    calls: int  # webhook requests after the restart (a call may carry several alerts)
    harness_cpu: float  # this process (receiver, sampling) meanwhile: near 1 s/s, it bounds
    resumed: str
    curve: list[Sample] = field(default_factory=list, repr=False)
    milestones: list[tuple[float, str]] = field(default_factory=list, repr=False)

    @property
    def subject(self) -> str:
        return f"{self.who} catch-up"

    @property
    def group(self) -> str:
        return f"catch-up {self.events}"

    @property
    def cpu_per_alert(self) -> float:
        delivered = self.events - self.lost
        return self.cpu / delivered * 1000 if delivered else math.nan

    def cells(self) -> list[str]:
        return [
            self.subject,
            str(self.events),
            f"{self.create_rate:.0f}",
            f"{self.first:.2f}",
            f"{self.done:.2f}",
            str(self.lost),
            str(self.duplicated),
            str(self.resent),
            f"{self.cpu:.2f}",
            f"{self.cpu_per_alert:.3f}",
            f"{self.hwm_mib:.1f}",
            str(self.calls),
            f"{self.harness_cpu:.2f}",
            self.resumed,
        ]


def tree_mib(path: Path) -> float:
    """The size of the files below `path` (0 when there is none), MiB."""
    total = 0
    for parent, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a temp file renamed away meanwhile
                total += os.stat(os.path.join(parent, name)).st_size
    return total / 2**20


async def follow(
    process: Subject, receiver: Receiver, count: int, timeout: float, quiet: float
) -> list[Sample]:
    """(seconds since start, events delivered, RSS MiB, state dir MiB) every 0.2 s until
    `count` new names arrived, nothing new for `quiet` seconds, `timeout`, or the process
    exited. The state dir's size shows our spool filling (intake) and being compacted."""
    baseline = len(receiver.arrivals)  # only this run's subject is up: new names are its own
    curve: list[Sample] = []
    last = (-1, time.time())
    while process.running:
        now = time.time()
        got = len(receiver.arrivals) - baseline
        rss = status_kib(process.pid, "VmRSS") / 1024
        curve.append((round(now - process.started, 3), got, rss, round(tree_mib(process.state), 2)))
        if got >= count or now - process.started > timeout:
            break
        if got != last[0]:
            last = (got, now)
        elif now - last[1] > quiet:
            break
        await asyncio.sleep(0.2)
    return curve


def log_milestones(text: str, started: float) -> list[tuple[float, str]]:
    """Our daemon's JSON log lines (info and up), as (seconds since `started`, message)."""
    found: list[tuple[float, str]] = []
    for line in text.splitlines():
        try:
            entry = orjson.loads(line)
            when = dt.datetime.fromisoformat(entry["timestamp"]).timestamp()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        found.append((round(when - started, 3), str(entry.get("event", "?"))))
    return found[:100]


def how_resumed(milestones: list[tuple[float, str]]) -> str:
    """How our daemon caught up after the restart, from its log."""
    said = {message for _, message in milestones}
    if "first start: skipping events from before now" in said:
        return "first start (no checkpoint!)"
    if "resourceVersion expired, relisting" in said or "list continue token expired" in said:
        return "relist (410)"
    if "listed" in said:
        return "relist"
    if "resuming from checkpoint" in said:
        return "watch from checkpoint"
    return "?"


async def catchup_run(harness: Harness, subject: str, index: int, events: int) -> CatchUp:
    """Start the subject, see it deliver a probe, stop it, create `events` while it is down,
    start it again on the same state and measure until it delivered them all."""
    load, receiver, args = harness.load, harness.receiver, harness.args
    tag = f"c{subject[0]}{index}n{events}"
    with harness.subject(subject, index, catchup=True) as (run, process):
        await process.start()
        try:
            await process.wait_ready(load, receiver, run, tag)
        finally:
            code = await process.stop()
        if code != 0 and subject == "ours":
            raise RuntimeError(f"ours exited with {code} on SIGTERM: {process.log_tail()}")
        probes_before = sum(len(receiver.arrivals.get(p, ())) for p in run.probes)
        started = time.perf_counter()
        await load.flood(run, tag, events)
        create_rate = len(run.sent) / (time.perf_counter() - started)
        if run.failed_creates:
            print(f"{subject}: {run.failed_creates} creates failed", file=sys.stderr)
        log_offset = process.log_path.stat().st_size
        calls, harness_cpu = receiver.requests, time.process_time()
        await process.start()
        try:
            curve = await follow(
                process, receiver, len(run.sent), args.catchup_timeout, args.catchup_quiet
            )
            cpu = cpu_seconds(process.pid) if process.running else math.nan
            hwm = status_kib(process.pid, "VmHWM") if process.running else 0
            calls, harness_cpu = receiver.requests - calls, time.process_time() - harness_cpu
            await asyncio.sleep(1.0)  # duplicates, if any, come with the rest
        finally:
            await process.stop()
        with process.log_path.open("rb") as log:
            log.seek(log_offset)
            text = log.read().decode(errors="replace")
    firsts, duplicated = [], 0
    for name in run.sent:
        arrived = receiver.arrivals.get(name)
        if arrived:
            firsts.append(arrived[0])
            duplicated += len(arrived) - 1
    lost = len(run.sent) - len(firsts)
    milestones = log_milestones(text, process.started) if subject == "ours" else []
    return CatchUp(
        who=subject,
        events=len(run.sent),
        round=index,
        create_rate=create_rate,
        first=min(firsts, default=math.nan) - process.started,
        done=max(firsts) - process.started if firsts and not lost else math.nan,
        lost=lost,
        duplicated=duplicated,
        resent=sum(len(receiver.arrivals.get(p, ())) for p in run.probes) - probes_before,
        cpu=cpu,
        hwm_mib=hwm / 1024,
        calls=calls,
        harness_cpu=harness_cpu,
        resumed=how_resumed(milestones) if subject == "ours" else "informer list",
        curve=curve,
        milestones=milestones,
    )


# --- the report ------------------------------------------------------------------------------

Row = Figures | CatchUp

# The ratios reported, ours / peer in the same round, and the goals of issue #16 for them.
RATIOS: dict[str, list[tuple[str, Callable[[Any], float], str]]] = {
    "steady": [
        ("p50 ms", lambda f: f.p50, ""),
        ("p99 ms", lambda f: f.p99, "≤ 1.0x"),
        ("CPU ms/alert (run)", lambda f: f.cpu_per_alert, "≤ 1.0x"),
        ("peak RSS MiB (run)", lambda f: f.hwm_mib, ""),
    ],
    "burst": [
        ("p99 ms", lambda f: f.p99, ""),
        ("drain s", lambda f: f.drain, "≤ 1.0x"),
    ],
    "catch-up": [
        ("first s", lambda c: c.first, ""),
        ("all delivered s", lambda c: c.done, "≤ 1.0x"),
        ("CPU s", lambda c: c.cpu, "≤ 1.0x"),
        ("CPU ms/alert", lambda c: c.cpu_per_alert, "≤ 1.0x"),
        ("peak RSS MiB", lambda c: c.hwm_mib, "ours ≤ 150 MiB"),
    ],
}


def table(rows: Sequence[Row]) -> str:
    """A markdown table of `rows` (all of one kind)."""
    header = type(rows[0]).HEADER
    align = ["---"] + ["---:"] * (len(header) - 1)
    if header[-1] == "resumed by":
        align[-1] = "---"
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(out)


def ratio_table(rows: Sequence[Row]) -> str:
    """Ours / peer for each metric: medians of both, and min / median / max of the ratios of
    the rounds (each round's ours and peer ran back to back, so machine speed cancels)."""

    def fmt(value: float) -> str:
        return "-" if value != value else f"{value:.2f}"

    out = [
        "| group | metric | ours (median) | peer (median) | ours/peer min | median | max | goal |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for group in dict.fromkeys(row.group for row in rows):
        members = [row for row in rows if row.group == group]
        metrics = RATIOS["catch-up" if group.startswith("catch-up") else group]
        for label, value, goal in metrics:
            ours = {r.round: value(r) for r in members if r.who == "ours"}
            peer = {r.round: value(r) for r in members if r.who == "peer"}
            pairs = [ours[i] / peer[i] for i in ours if peer.get(i)]
            pairs = [p for p in pairs if p == p]
            if not pairs:
                continue
            if goal:
                met = (
                    max(ours.values()) <= 150
                    if goal.endswith("MiB")
                    else statistics.median(pairs) <= 1.0
                )
                goal += " met" if met else " **not met**"
            out.append(
                f"| {group} | {label} | {fmt(median(ours.values()))} "
                f"| {fmt(median(peer.values()))} | {min(pairs):.2f}x "
                f"| {statistics.median(pairs):.2f}x | {max(pairs):.2f}x | {goal} |"
            )
    return "\n".join(out) if len(out) > 2 else ""


def median(values: Iterable[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else math.nan


# --- the figures: JSON beside the PNG, so the plot can be remade -----------------------------


def figures_json(rows: Sequence[Row]) -> dict[str, Any]:
    if rows and isinstance(rows[0], CatchUp):
        return {
            "catchup": [
                {
                    "subject": r.who,
                    "events": r.events,
                    "round": r.round,
                    "first": r.first,
                    "done": r.done,
                    "hwm_mib": r.hwm_mib,
                    "cpu": r.cpu,
                    "curve": r.curve,
                    "milestones": r.milestones,
                }
                for r in rows
                if isinstance(r, CatchUp)
            ]
        }
    return {
        "latency": [
            {"subject": r.who, "phase": r.phase, "round": r.round, "latencies_ms": r.latencies_ms}
            for r in rows
            if isinstance(r, Figures)
        ]
    }


def save_figures(path: Path, rows: Sequence[Row], command: list[str]) -> None:
    """Replace this mode's section of the figures JSON at `path` (the other mode's stays),
    then redraw the PNG beside it."""
    data: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {}
    section = figures_json(rows)
    for key in section:
        data[key] = section[key]
        data[f"{key}_run"] = {
            "command": " ".join(["python -m bench.bench_latency", *command]),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg()[0],
        }
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    print(f"figures: {path}")
    plot(path)


COLORS = {"ours": "tab:blue", "peer": "tab:orange"}


def plot(path: Path) -> None:
    """Draw `path` (the figures JSON) into the PNG beside it: latency ECDFs of the steady and
    burst phases, catch-up progress and RSS since the restart. Skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        print(
            "plot: skipped, matplotlib is not installed "
            "(.venv/bin/pip install -e '.[bench]', then --plot-only to draw it)"
        )
        return
    data = orjson.loads(path.read_bytes())
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    for ax, phase in zip(axes[0], ("steady", "burst"), strict=True):
        runs = [r for r in data.get("latency", []) if r["phase"] == phase and r["latencies_ms"]]
        for r in runs:
            values = r["latencies_ms"]
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(
                values,
                ys,
                where="post",
                color=COLORS[r["subject"]],
                alpha=0.9 if r["round"] == 0 else 0.5,
                label=f"{r['subject']} (round {r['round'] + 1})",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("create → webhook received, ms (log)")
        ax.set_ylabel("fraction of events")
        ax.set_title(f"latency, {phase} phase")
        ax.grid(True, which="both", alpha=0.3)
        if runs:
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
    catchup = data.get("catchup", [])
    styles = ["-", "--", ":", "-."]
    sizes = sorted({r["events"] for r in catchup})
    for r in catchup:
        times = [p[0] for p in r["curve"]]
        style = dict(
            color=COLORS[r["subject"]],
            linestyle=styles[sizes.index(r["events"]) % len(styles)],
            alpha=0.9 if r["round"] == 0 else 0.5,
            label=f"{r['subject']} {r['events']} (round {r['round'] + 1})",
        )
        axes[1][0].plot(times, [p[1] for p in r["curve"]], **style)
        axes[1][1].plot(times, [p[2] for p in r["curve"]], **style)
        if r["subject"] == "ours":
            style.update(linewidth=0.8, alpha=0.6, label=f"{style['label']}: state dir")
            axes[1][1].plot(times, [p[3] for p in r["curve"]], **style)
    axes[1][0].set_title("catch-up after a restart: events delivered")
    axes[1][0].set_ylabel("events delivered")
    axes[1][1].set_title("catch-up after a restart: RSS (thin: our state dir on disk)")
    axes[1][1].set_ylabel("MiB")
    for ax in axes[1]:
        ax.set_xlabel("seconds since the restart")
        ax.grid(True, alpha=0.3)
        if catchup:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "not run (--catchup N)", ha="center", transform=ax.transAxes)
    runs = {k: v for k, v in data.items() if k.endswith("_run")}
    fig.suptitle(
        "kube-event-watcher vs kubernetes-event-exporter on one kube-apiserver\n"
        + "\n".join(f"{v['command']}  ({v['at']})" for v in runs.values()),
        fontsize=9,
    )
    fig.tight_layout()
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print(f"plot: {png}")


# --- the driver ------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, plane: ControlPlane) -> list[Row]:
    peer = None if args.no_peer else build_peer()
    subjects = ["ours", "peer"] if peer is not None else ["ours"]
    receiver = Receiver()
    await receiver.start()
    rows: list[Row] = []
    load = Load(plane, args.connections)
    harness = Harness(plane, receiver, load, peer, args)
    try:
        for index in range(args.rounds):
            for events in args.catchup or [0]:
                for subject in subjects:  # interleaved: ours, peer, ours, peer, ...
                    new: list[Row]
                    if events:
                        new = [await catchup_run(harness, subject, index, events)]
                    else:
                        run = await one_run(harness, subject, index)
                        phases = ("s", "b") if args.burst else ("s",)
                        new = [figures(run, receiver, phase, index) for phase in phases]
                    rows += new
                    for row in new:
                        print(table([row]).splitlines()[-1], file=sys.stderr)
    finally:
        await load.close()
        await receiver.stop()
    return rows


def main(argv: list[str] | None = None, plane: ControlPlane | None = None) -> list[Row]:
    """Run the bench and print its markdown tables; on `plane` when given (the e2e smoke
    test's), else on a ControlPlane of its own."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0, help="creates per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=2000, help="then this many at once")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for stragglers")
    parser.add_argument(
        "--catchup",
        type=int,
        nargs="+",
        metavar="N",
        help="catch-up mode instead of latency: N events created while the subject is down",
    )
    parser.add_argument("--catchup-timeout", type=float, default=900.0)
    parser.add_argument(
        "--catchup-quiet", type=float, default=60.0, help="give up after this long without progress"
    )
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="our webhook's batch_size (1: one alert a request, as the peer sends)",
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="our state.fsync: false (the page cache only)"
    )
    parser.add_argument(
        "--figures",
        type=Path,
        default=FIGURES,
        help="the figures JSON (this mode's section is replaced); the PNG is drawn beside it",
    )
    parser.add_argument("--no-plot", action="store_true", help="neither JSON nor PNG")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from --figures")
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(args.figures)
        return []
    load_before = os.getloadavg()
    if plane is None:
        with ControlPlane(find_binaries()) as own:
            rows = asyncio.run(bench(args, own))
    else:
        rows = asyncio.run(bench(args, plane))
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(table(rows))
    ratios = ratio_table(rows)
    if ratios:
        print()
        print(ratios)
    if not args.no_plot:
        save_figures(args.figures, rows, sys.argv[1:] if argv is None else argv)
    return rows


if __name__ == "__main__":
    main()
