"""Fleet mode's end-to-end latency on the real kube-apiserver: event created → an edge
watches it and publishes the occurrence (Kafka 4.4 or NATS 2.15, started here) → the
central instance reads, routes and delivers it to a loopback webhook. The reference, in the
same run and interleaved: one instance watching and delivering directly (`single`). Reports
create → receive latency (p50/p90/p99/max), lost and duplicated, and the CPU of the
subject's processes (edge + central together) per alert; then fleet / single ratios.

    .venv/bin/python -m bench.bench_fleet --rate 100 --seconds 30 --rounds 3

Not a test: tests/e2e/test_fleet.py proves the behaviour, this measures it;
tests/e2e/test_bench_fleet_smoke.py runs it briefly so it does not rot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.bench_latency import (
    Load,
    Receiver,
    Run,
    Subject,
    cpu_seconds,
    daemon_command,
    quantile,
    wait_ready,
    wait_received,
)
from tests.e2e.controlplane.cluster import ControlPlane, find_binaries
from tests.e2e.engines.kafka.broker import KafkaBroker, find_jars
from tests.e2e.engines.nats.server import NatsServer, build_nats_server

SUBJECTS = ("single", "fleet-kafka", "fleet-nats")


def _common(work: Path) -> dict[str, Any]:
    return {
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
        "state": {"backend": "file", "path": str(work / "state")},
        "log": {"level": "warning", "format": "json"},
        "ops": {"listen": "127.0.0.1:0"},
    }


def webhook(hook: str) -> dict[str, Any]:
    return {
        "name": "hook",
        "type": "webhook",
        "url": hook,
        "rate_limit": {"per_minute": 6_000_000, "burst": 100_000},
    }


@dataclass
class Engines:
    kafka: str  # bootstrap host:port
    nats: str  # nats:// URL


def bus_keys(subject: str, engines: Engines, name: str) -> dict[str, Any]:
    if subject == "fleet-kafka":
        return {"type": "kafka", "bootstrap_servers": [engines.kafka], "topic": name}
    return {
        "type": "nats",
        "servers": [engines.nats],
        "subject": f"kew.{name}.{{cluster}}",
        "stream": name.upper(),
        "create_stream": {"duplicate_window": "10m"},
    }


class Chain:
    """The processes of one subject (an edge and a central, or a single instance), started
    and stopped together; Subject's readiness probe goes through the whole chain."""

    def __init__(self, parts: list[Subject]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)

    async def start(self) -> None:
        for part in reversed(self.parts):  # the central first: it is reading when edges send
            await part.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.parts]

    @property
    def started(self) -> float:
        return min(p.started for p in self.parts)

    @property
    def running(self) -> bool:
        return all(p.running for p in self.parts)

    def log_tail(self, chars: int = 2000) -> str:
        return "\n".join(f"{p.name}: {p.log_tail(chars)}" for p in self.parts)

    async def stop(self) -> None:
        for part in self.parts:
            await part.stop()


def chain_for(
    subject: str, plane: ControlPlane, engines: Engines, namespace: str, hook: str, root: Path
) -> Chain:
    edge_work, central_work = root / "edge", root / "central"
    edge_work.mkdir()
    central_work.mkdir()
    source = {"namespaces": [namespace], "field_selector": "type=Warning"}
    if subject == "single":
        config = {**_common(edge_work), "sources": [source], "receivers": [webhook(hook)]}
        return Chain(
            [Subject("single", daemon_command(config, edge_work, plane.kubeconfig), edge_work)]
        )
    name = f"f{namespace.rsplit('-', 1)[-1]}{subject[6]}"
    bus = bus_keys(subject, engines, name)
    edge = {
        **_common(edge_work),
        "clusters": [{"name": "east", "kubeconfig": str(plane.kubeconfig)}],
        "sources": [source],
        "receivers": [{"name": "fleet", "records": "occurrences", **bus}],
    }
    central = {**_common(central_work), "fleet": {"consume": bus}, "receivers": [webhook(hook)]}
    return Chain(
        [
            Subject("edge", daemon_command(edge, edge_work, plane.kubeconfig), edge_work),
            Subject(
                "central", daemon_command(central, central_work, plane.kubeconfig), central_work
            ),
        ]
    )


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        await admin.close()


@dataclass
class Result:
    subject: str
    round: int
    sent: int
    lost: int
    dup: int
    latencies_ms: list[float]
    cpu_ms_per_alert: float

    def row(self) -> str:
        lat = self.latencies_ms
        return (
            f"| {self.subject} | {self.round} | {self.sent} | {self.lost} | {self.dup} "
            f"| {quantile(lat, 0.5):.1f} | {quantile(lat, 0.9):.1f} | {quantile(lat, 0.99):.1f} "
            f"| {max(lat, default=float('nan')):.1f} | {self.cpu_ms_per_alert:.2f} |"
        )


async def one_run(
    subject: str,
    index: int,
    plane: ControlPlane,
    engines: Engines,
    receiver: Receiver,
    load: Load,
    args: argparse.Namespace,
) -> Result:
    stamp = f"{os.getpid() % 1000}{int(time.time() * 1000) % 100000}"
    run = Run(subject, f"bench-{subject}-{index}-{stamp}")
    plane.create_namespace(run.namespace)
    hook = f"http://127.0.0.1:{receiver.port}/{subject}"
    with tempfile.TemporaryDirectory(prefix=f"kew-fleet-{subject}-") as tmp:
        chain = chain_for(subject, plane, engines, run.namespace, hook, Path(tmp))
        if subject == "fleet-kafka":
            name = f"f{run.namespace.rsplit('-', 1)[-1]}k"
            await create_topic(engines.kafka, name)
        await chain.start()
        try:
            await wait_ready(chain, load, receiver, run, f"{subject[0]}{index}", 90, wait=2.0)
            await asyncio.sleep(1.0)
            cpu = sum(cpu_seconds(pid) for pid in chain.pids)
            await load.steady(run, f"s{subject[-1]}{index}", args.rate, args.seconds)
            await wait_received(receiver, list(run.sent), timeout=60)
            cpu = sum(cpu_seconds(pid) for pid in chain.pids) - cpu
        finally:
            await chain.stop()
    latencies, lost, dup = [], 0, 0
    for name, sent in run.sent.items():
        arrived = receiver.arrivals.get(name)
        if not arrived:
            lost += 1
            continue
        dup += len(arrived) - 1
        latencies.append((arrived[0] - sent) * 1000)
    per_alert = cpu * 1000 / max(len(run.sent), 1)
    return Result(subject, index, len(run.sent), lost, dup, latencies, per_alert)


def ratios(results: list[Result]) -> list[str]:
    lines = [
        "| fleet / single, per round | p50 | p99 | CPU per alert |",
        "| --- | --- | --- | --- |",
    ]
    for subject in SUBJECTS[1:]:
        p50s, p99s, cpus = [], [], []
        for single in (r for r in results if r.subject == "single"):
            other = next(r for r in results if r.subject == subject and r.round == single.round)
            p50s.append(quantile(other.latencies_ms, 0.5) / quantile(single.latencies_ms, 0.5))
            p99s.append(quantile(other.latencies_ms, 0.99) / quantile(single.latencies_ms, 0.99))
            cpus.append(other.cpu_ms_per_alert / single.cpu_ms_per_alert)

        def mmm(values: list[float]) -> str:
            return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}x"

        lines.append(f"| {subject} | {mmm(p50s)} | {mmm(p99s)} | {mmm(cpus)} |")
    return lines


@contextmanager
def engines_running(root: Path) -> Iterator[Engines]:
    with ExitStack() as stack:
        broker = KafkaBroker(find_jars(), root / "kafka")
        broker.format()
        broker.start()
        stack.callback(broker.stop)
        nats = stack.enter_context(NatsServer(build_nats_server(), root / "nats"))
        yield Engines(broker.bootstrap, nats.url)


async def bench(args: argparse.Namespace, plane: ControlPlane, engines: Engines) -> list[Result]:
    receiver = Receiver()
    await receiver.start()
    load = Load(plane, args.connections)
    results: list[Result] = []
    try:
        for index in range(args.rounds):
            for subject in SUBJECTS:  # interleaved: single, fleet-kafka, fleet-nats, ...
                result = await one_run(subject, index, plane, engines, receiver, load, args)
                results.append(result)
                print(result.row(), file=sys.stderr)
    finally:
        await load.close()
        await receiver.stop()
    print(
        "| subject | round | sent | lost | dup | p50 ms | p90 ms | p99 ms | max ms "
        "| CPU ms/alert (all its processes) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        print(result.row())
    print()
    print("\n".join(ratios(results)))
    return results


def main(
    argv: list[str] | None = None,
    plane: ControlPlane | None = None,
    engines: Engines | None = None,
) -> list[Result]:
    """Run the bench and print its tables; on `plane` and `engines` when given (the e2e
    smoke test's), else on ones of its own."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="creates per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if plane is not None and engines is not None:
        return asyncio.run(bench(args, plane, engines))
    with tempfile.TemporaryDirectory(prefix="kew-fleet-bench-") as tmp:
        root = Path(tmp)
        with ControlPlane(find_binaries()) as own, engines_running(root) as started:
            return asyncio.run(bench(args, own, started))


if __name__ == "__main__":
    main()
