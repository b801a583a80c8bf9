"""A real OpenTelemetry Collector for the tests: built by build.sh (cached), started with
the OTLP receiver (HTTP) on a free loopback port and the file exporter writing what it
received as OTLP/JSON lines, which `log_lines` reads back.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"


class CollectorError(RuntimeError):
    pass


def find_collector(timeout: float = 1800) -> Path:
    """The collector binary: build.sh builds it once per version, then just names it."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CollectorError(f"running {BUILD_SCRIPT} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise CollectorError(f"{BUILD_SCRIPT} exited with {proc.returncode}:\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "otelcol"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def decode_value(value: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a Python value."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "boolValue" in value:
        return value["boolValue"]
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [decode_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return decode_attributes(value["kvlistValue"].get("values", []))
    return None


def decode_attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: decode_value(kv.get("value", {})) for kv in pairs}


@dataclass(frozen=True)
class LogLine:
    """One log record the collector exported, with its resource and scope."""

    resource: dict[str, Any]
    scope: dict[str, Any]
    record: dict[str, Any]
    attributes: dict[str, Any]

    @property
    def body(self) -> Any:
        return decode_value(self.record.get("body", {}))


def log_lines(path: Path) -> list[LogLine]:
    """Every log record in the file exporter's output, in order (complete lines only)."""
    if not path.exists():
        return []
    complete, _, _ = path.read_bytes().rpartition(b"\n")
    out = []
    for line in complete.splitlines():
        if not line.strip():
            continue
        for resource_logs in orjson.loads(line).get("resourceLogs", []):
            resource = decode_attributes(resource_logs.get("resource", {}).get("attributes", []))
            for scope_logs in resource_logs.get("scopeLogs", []):
                scope = scope_logs.get("scope", {})
                for record in scope_logs.get("logRecords", []):
                    attributes = decode_attributes(record.get("attributes", []))
                    out.append(LogLine(resource, scope, record, attributes))
    return out


class Collector:
    """One collector process; `stop` and `start` again keep its port and output file."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.output = workdir / "otlp-logs.jsonl"
        self.log = workdir / "otelcol.log"
        self.config = workdir / "otelcol.yaml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            yaml.safe_dump(
                {
                    "receivers": {
                        "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{self.port}"}}}
                    },
                    "exporters": {
                        "file": {
                            "path": str(self.output),
                            "format": "json",
                            "flush_interval": "50ms",
                        }
                    },
                    "service": {
                        # No metrics server of its own (it would take port 8888).
                        "telemetry": {"metrics": {"level": "none"}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}},
                    },
                }
            )
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", f"file:{self.config}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Receivers start last (after the exporters): an open port means ready.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CollectorError(f"the collector exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise CollectorError(f"the collector did not listen within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def lines(self) -> list[LogLine]:
        return log_lines(self.output)
