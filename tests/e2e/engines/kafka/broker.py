"""A real Apache Kafka broker for the tests: one KRaft node (broker and controller in one
JVM) on free loopback ports, from the jars fetch.sh caches; it can be stopped and started
again on the same data dir (the broker-down and broker-restart tests)."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.e2e.controlplane.cluster import free_port, tail

HERE = Path(__file__).resolve().parent
FETCH_SCRIPT = HERE / "fetch.sh"
MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"  # `kafka-storage.sh format` runs this class
LOG4J = """\
Configuration:
  Appenders:
    Console: {name: out, target: SYSTEM_OUT, PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: out}]}
    Logger: [{name: kafka.server.KafkaRaftServer, level: INFO}]
"""


class KafkaUnavailable(Exception):
    """The jars cannot be fetched or the broker does not start."""


def find_jars() -> Path:
    """The cache dir fetch.sh fills (fetching when it is not there yet)."""
    if shutil.which("java") is None:
        raise KafkaUnavailable("'java' is not on PATH (Kafka 4.x needs Java 17 or newer)")
    try:
        proc = subprocess.run(
            ["bash", str(FETCH_SCRIPT)], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaUnavailable(f"running {FETCH_SCRIPT} failed: {exc}") from exc
    if proc.returncode != 0:
        raise KafkaUnavailable(f"{FETCH_SCRIPT} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def cluster_id() -> str:
    """A KRaft cluster id: a UUID in URL-safe base64 without padding (`random-uuid`). Like
    Kafka's Uuid.randomUuid, never one that starts with "-": the storage tool's argument
    parser would read it as an option (1 start in 32 failed that way)."""
    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not made.startswith("-"):
            return made


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class KafkaBroker:
    """`with KafkaBroker(jars, dir) as broker:` a formatted, started single-node cluster."""

    def __init__(self, jars: Path, directory: Path, partitions: int = 3) -> None:
        self.jars, self.dir = jars, directory
        self.port, self.controller_port = free_port(), free_port()
        self.log = directory / "broker.log"
        self.partitions = partitions
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # a short-lived test broker: start fast
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
            "-cp",
            f"{self.jars}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.flush.interval.messages": "9223372036854775807",
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        (self.dir / "log4j2.yaml").write_text(LOG4J)
        return path

    def format(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        proc = subprocess.run(
            self._java(STORAGE_TOOL, "format", "-t", cluster_id(), "-c", str(config)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise KafkaUnavailable(f"{STORAGE_TOOL} format failed: {proc.stdout}{proc.stderr}")

    def start(self, deadline: float = 60.0) -> None:
        """Start the JVM (same ports, same data) and wait until it takes connections."""
        assert self.proc is None, "already running"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self._java(MAIN, str(self.dir / "server.properties"), heap="512m"),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        end = time.monotonic() + deadline
        while not accepts(self.port):
            if self.proc.poll() is not None:
                self.proc = None
                raise KafkaUnavailable(f"the broker exited; its log:\n{tail(self.log)}")
            if time.monotonic() > end:
                self.stop()
                raise KafkaUnavailable(f"no broker on {self.bootstrap} after {deadline:g}s")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL, and wait until the port is free."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> KafkaBroker:
        self.format()
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
