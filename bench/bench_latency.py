"""End-to-end latency on the real kube-apiserver, ours and kubernetes-event-exporter side by side.

A load generator creates events.k8s.io/v1 Events at a fixed rate (then a burst) over
keep-alive HTTPS connections with the admin client certificate; the subject (our daemon as a
subprocess, or the peer's binary) delivers them to a webhook receiver on loopback. Reports
create → receive latency (p50/p90/p99/max), events lost and duplicated, CPU seconds and peak
RSS of the subject. Runs are interleaved (ours, peer, ours, peer, ...), each in its own
namespace so no run sees another's events. Not a test: figures go to bench/RESULTS.md
(tests/e2e/test_bench_latency_smoke.py runs it for 2 seconds so it does not rot).

    .venv/bin/python -m bench.bench_latency --rate 200 --seconds 60 --burst 2000 --rounds 2

The peer is built by bench/peer/build.sh (skipped with a note when that fails, or with
--no-peer). Latency is measured from just before the create request is sent to the arrival
of the webhook call naming the event; the create round trip alone is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from tests.e2e.controlplane.cluster import ControlPlane, find_binaries, rfc3339_micro

ROOT = Path(__file__).resolve().parent.parent
PEER_BUILD = ROOT / "bench" / "peer" / "build.sh"
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
        return [sys.executable, "-m", "cProfile", "-o", profile, "-m", "watcher.cli", *args]
    return [str(Path(sys.executable).with_name("kube-event-watcher")), *args]


def ours_command(plane: ControlPlane, work: Path, namespace: str, hook: str) -> list[str]:
    config = {
        "sources": [{"namespaces": [namespace], "field_selector": "type=Warning"}],
        "state": {"backend": "file", "path": str(work / "state")},
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
        "receivers": [
            {
                "name": "hook",
                "type": "webhook",
                "url": hook,
                "rate_limit": {"per_minute": 6_000_000, "burst": 100_000},
            }
        ],
        "log": {"level": "warning", "format": "json"},
    }
    return daemon_command(config, work, plane.kubeconfig)


def peer_command(
    binary: Path, plane: ControlPlane, work: Path, namespace: str, hook: str
) -> list[str]:
    # omitLookup: our enrichment is off too (and the regarded Pods do not exist, so each
    # lookup would be a 404); maxEventAgeSeconds wide enough that no fresh event is dropped.
    config = {
        "logLevel": "error",
        "logFormat": "json",
        "namespace": namespace,
        "maxEventAgeSeconds": 60,
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


# --- the load --------------------------------------------------------------------------------


@dataclass
class Run:
    subject: str
    namespace: str
    sent: dict[str, float] = field(default_factory=dict)
    create_seconds: list[float] = field(default_factory=list)
    failed_creates: int = 0
    ready_seconds: float = 0.0
    cpu: float = 0.0
    cpu_idle: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0


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
        """`count` creates as fast as the connections take them."""
        await asyncio.gather(*(self.create(run, f"lat-{tag}-{i}") for i in range(count)))

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


async def one_run(
    plane: ControlPlane,
    receiver: Receiver,
    load: Load,
    subject: str,
    peer: Path | None,
    index: int,
    args: argparse.Namespace,
) -> Run:
    namespace = f"bench-{subject}-{index}-{os.getpid() % 10000}-{int(time.time() * 1000) % 100000}"
    plane.create_namespace(namespace)
    run = Run(subject, namespace)
    hook = f"http://127.0.0.1:{receiver.port}/{subject}"
    with tempfile.TemporaryDirectory(prefix=f"kew-bench-{subject}-") as tmp:
        work = Path(tmp)
        command = (
            ours_command(plane, work, namespace, hook)
            if subject == "ours"
            else peer_command(peer, plane, work, namespace, hook)  # type: ignore[arg-type]
        )
        log = (work / "subject.log").open("wb")
        started = time.time()
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            # Ready = a probe event created after start arrives; retried, as the watch
            # may open after the first probe was created and the subject skip it as old.
            probe = 0
            while True:
                name = f"lat-probe{index}x-{probe}"
                await load.create(run, name, record=False)
                await wait_received(receiver, [name], timeout=1.0, quiet=1.0)
                if name in receiver.arrivals:
                    break
                if process.returncode is not None or time.time() - started > 60:
                    raise RuntimeError(
                        f"{subject} did not deliver a probe event: "
                        + (work / "subject.log").read_text()[-2000:]
                    )
                probe += 1
            run.ready_seconds = time.time() - started
            await asyncio.sleep(1.0)
            cpu_start = cpu_seconds(process.pid)
            run.cpu_idle = 0.0
            await load.steady(run, f"s{subject[0]}{index}", args.rate, args.seconds)
            if args.burst:
                await load.burst(run, f"b{subject[0]}{index}", args.burst)
            await wait_received(receiver, list(run.sent), timeout=args.drain)
            run.cpu = cpu_seconds(process.pid) - cpu_start
            run.rss_kib = status_kib(process.pid, "VmRSS")
            run.hwm_kib = status_kib(process.pid, "VmHWM")
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
            log.close()
    return run


# --- the report ------------------------------------------------------------------------------


@dataclass
class Figures:
    subject: str
    sent: int
    lost: int
    duplicated: int
    p50: float
    p90: float
    p99: float
    worst: float
    create_p50: float
    cpu: float
    hwm_mib: float
    ready: float


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(run: Run, receiver: Receiver, phase: str = "") -> Figures:
    """The run's figures; with `phase` ("s" steady, "b" burst) only that phase's events."""
    latencies, lost, duplicated = [], 0, 0
    marker = f"lat-{phase}"
    sent_in_phase = {n: t for n, t in run.sent.items() if n.startswith(marker)}
    for name, sent in sent_in_phase.items():
        arrived = receiver.arrivals.get(name)
        if not arrived:
            lost += 1
            continue
        duplicated += len(arrived) - 1
        latencies.append(arrived[0] - sent)
    return Figures(
        f"{run.subject} {dict(s='steady', b='burst').get(phase, '')}".strip(),
        len(sent_in_phase),
        lost,
        duplicated,
        quantile(latencies, 0.5) * 1000,
        quantile(latencies, 0.9) * 1000,
        quantile(latencies, 0.99) * 1000,
        max(latencies, default=float("nan")) * 1000,
        quantile(run.create_seconds, 0.5) * 1000,
        run.cpu,
        run.hwm_kib / 1024,
        run.ready_seconds,
    )


def table(rows: list[Figures]) -> str:
    out = [
        "| run | sent | lost | dup | p50 ms | p90 ms | p99 ms | max ms | create p50 ms "
        "| CPU s | peak RSS MiB | ready s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in rows:
        out.append(
            f"| {f.subject} | {f.sent} | {f.lost} | {f.duplicated} | {f.p50:.1f} | {f.p90:.1f} "
            f"| {f.p99:.1f} | {f.worst:.1f} | {f.create_p50:.1f} | {f.cpu:.2f} "
            f"| {f.hwm_mib:.1f} | {f.ready:.2f} |"
        )
    return "\n".join(out)


def ratios(rows: list[Figures]) -> str:
    def med(subject: str, attr: str) -> float:
        values = [getattr(f, attr) for f in rows if f.subject == subject]
        return statistics.median(values) if values else float("nan")

    out = []
    for phase in ("steady", "burst"):
        for attr in ("p50", "p99", "lost", "duplicated", "cpu", "hwm_mib"):
            ours, peer = med(f"ours {phase}", attr), med(f"peer {phase}", attr)
            if ours == ours and peer == peer:  # not NaN: both ran this phase
                ratio = f"{ours / peer:.2f}x" if peer else "-"
                out.append(f"{phase} {attr}: ours {ours:.2f} / peer {peer:.2f} = {ratio}")
    return "\n".join(out)


async def bench(args: argparse.Namespace, plane: ControlPlane) -> list[Figures]:
    peer = None if args.no_peer else build_peer()
    subjects = ["ours", "peer"] if peer is not None else ["ours"]
    receiver = Receiver()
    await receiver.start()
    rows: list[Figures] = []
    load = Load(plane, args.connections)
    try:
        for index in range(args.rounds):
            for subject in subjects:
                run = await one_run(plane, receiver, load, subject, peer, index, args)
                for phase in ("s", "b") if args.burst else ("s",):
                    rows.append(figures(run, receiver, phase))
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
    finally:
        await load.close()
        await receiver.stop()
    return rows


def main(argv: list[str] | None = None, plane: ControlPlane | None = None) -> list[Figures]:
    """Run the bench and print its tables; on `plane` when given (the e2e smoke test's),
    else on a ControlPlane of its own."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0, help="creates per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=2000, help="then this many at once")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for stragglers")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if plane is None:
        with ControlPlane(find_binaries()) as own:
            rows = asyncio.run(bench(args, own))
    else:
        rows = asyncio.run(bench(args, plane))
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(table(rows))
    if any(f.subject.startswith("peer") for f in rows):
        print("medians, ours / peer (CPU and RSS are per run, shown on both phases):")
        print(ratios(rows))
    return rows


if __name__ == "__main__":
    main()
