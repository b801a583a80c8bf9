"""Support for the fault suite: a writer that keeps writing Events while things break, a tail
of the `file` receiver that timestamps each delivery, the daemon as a kill -9-able process,
and the count of lost / duplicated / spurious occurrences against the API's final list.

The writer talks to the real kube-apiserver over keep-alive HTTPS connections of its own (one
per thread; a fresh TLS handshake per request would cap it far below 100 ops/s on two cores)
with the ControlPlane's admin certificate. Every op whose outcome is unknown (the connection
died after the request may have reached the server) is followed by a GET of the object before
anything else is done with it, so the writer's idea of each count is re-based on the truth;
the verdict itself only trusts the LIST at the end.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import http.client
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.controlplane.cluster import ControlPlane

REPO = Path(__file__).resolve().parents[2]
JSON = dict[str, Any]
EVENTS = "/apis/events.k8s.io/v1/namespaces/{ns}/events"


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_until(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


# --- HTTP ---------------------------------------------------------------------------------


class Unknown(Exception):
    """The connection failed: the request may or may not have been applied."""


class Refused(Exception):
    """The request certainly did not reach the API (connect failed, or a 5xx before storage)."""


class Api:
    """One keep-alive HTTPS connection to the apiserver as the admin (use from one thread)."""

    def __init__(self, plane: ControlPlane, timeout: float = 10.0) -> None:
        self.plane = plane
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=str(plane.pki.ca_cert))
        self.context.load_cert_chain(str(plane.pki.admin_cert), str(plane.pki.admin_key))
        self.conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """(status, parsed body). Raises Refused when nothing was sent, Unknown when the
        connection died after the request went out."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if self.conn is None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.plane.apiserver_port, context=self.context, timeout=self.timeout
            )
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                raise Refused(str(exc)) from None
            self.conn = conn
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unknown(f"{type(exc).__name__}: {exc}") from None
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return resp.status, parsed


def event_total(event: JSON) -> int:
    """The event's occurrences so far, as the daemon reads them."""
    series = event.get("series") or {}
    count = series.get("count")
    if isinstance(count, int) and count > 0:
        return count
    legacy = event.get("deprecatedCount")
    if isinstance(legacy, int) and legacy > 0:
        return legacy
    return 1


def list_truth(plane: ControlPlane, namespace: str) -> dict[str, int]:
    """uid → series count of every Warning event in `namespace`, from a paged LIST."""
    api = Api(plane, timeout=30)
    truth: dict[str, int] = {}
    token = ""
    try:
        while True:
            query = "?limit=500&fieldSelector=type%3DWarning"
            if token:
                query += "&continue=" + token
            status, body = api.call("GET", EVENTS.format(ns=namespace) + query)
            assert status == 200, f"final LIST failed: {status} {body}"
            for item in body["items"]:
                truth[item["metadata"]["uid"]] = event_total(item)
            token = body["metadata"].get("continue") or ""
            if not token:
                return truth
    finally:
        api.close()


# --- the writer -----------------------------------------------------------------------------


@dataclass
class Tracked:
    name: str
    uid: str = ""
    count: int = 0  # what the writer last knew (re-read after an unknown outcome)
    obj: JSON | None = None


@dataclass
class WriterStats:
    creates: int = 0
    patch_bumps: int = 0
    put_bumps: int = 0
    noops: int = 0
    unknown: int = 0
    refused: int = 0
    conflicts: int = 0
    server_errors: int = 0

    @property
    def ops(self) -> int:
        return self.creates + self.patch_bumps + self.put_bumps + self.noops

    def add(self, other: WriterStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _Worker:
    """One writer thread: owns its events, so nothing about them needs a lock."""

    def __init__(self, writer: Writer, index: int) -> None:
        self.writer = writer
        self.index = index
        self.rng = random.Random(f"{writer.seed}/{index}")
        self.api = Api(writer.plane)
        self.events: list[Tracked] = []
        self.stats = WriterStats()
        self.serial = 0
        self.path = EVENTS.format(ns=writer.namespace)

    # Each request is retried with a bounded backoff until it has an answer; Unknown outcomes
    # are resolved by reading the object back (the caller does that: it knows what to read).
    def _call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> tuple[int, Any]:
        delay = 0.05
        while True:
            try:
                status, parsed = self.api.call(method, path, body, ctype)
            except Refused:
                self.stats.refused += 1
            else:
                if status < 500 and status != 429:
                    return status, parsed
                self.stats.server_errors += 1  # 5xx (etcd down, shutting down): not applied?
                if method != "GET":
                    # A 5xx on a write is not proof that nothing was stored (a timeout waiting
                    # for etcd can still commit): treat it like a lost connection.
                    raise Unknown(f"HTTP {status}")
            if self.writer.abandon.is_set():
                raise Unknown("writer abandoned")
            time.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 1.0)

    def _read(self, ev: Tracked) -> bool:
        """Re-read `ev` until the API answers; False when it does not exist."""
        while True:
            try:
                status, obj = self._call("GET", f"{self.path}/{ev.name}")
            except Unknown:
                if self.writer.abandon.is_set():
                    raise
                self.stats.unknown += 1
                continue
            if status == 404:
                return False
            assert status == 200, (status, obj)
            ev.uid = obj["metadata"]["uid"]
            ev.count = event_total(obj)
            ev.obj = obj
            return True

    def create(self) -> None:
        self.serial += 1
        ev = Tracked(name=f"w{self.index}-{self.serial}")
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": ev.name, "namespace": self.writer.namespace},
            "eventTime": now_micro(),
            "reportingController": "kube-event-watcher.e2e/faults",
            "reportingInstance": f"writer-{self.index}",
            "action": "Testing",
            "reason": "FaultSuite",
            "note": f"fault suite event {ev.name}",
            "type": "Warning",
            "regarding": {
                "kind": "Pod",
                "namespace": self.writer.namespace,
                "name": f"pod-{self.index}-{self.serial % 50}",
                "apiVersion": "v1",
            },
        }
        while True:
            try:
                status, obj = self._call("POST", self.path, body)
            except Unknown:
                self.stats.unknown += 1
                if self._read(ev):
                    break  # it was created after all
                continue
            if status == 409:  # our own earlier attempt got through
                if self._read(ev):
                    break
                continue
            assert status == 201, (status, obj)
            ev.uid, ev.count, ev.obj = obj["metadata"]["uid"], 1, obj
            break
        self.events.append(ev)
        self.stats.creates += 1
        self.writer.note_write(ev.uid)

    def bump(self, ev: Tracked, *, put: bool) -> None:
        step = 1 if self.rng.random() < 0.8 else self.rng.randint(2, 4)
        while True:
            target = ev.count + step
            series = {"count": max(target, 2), "lastObservedTime": now_micro()}
            if put:
                assert ev.obj is not None
                body = dict(ev.obj)
                body["series"] = series
                status_obj = self._try_write("PUT", f"{self.path}/{ev.name}", body, ev)
            else:
                status_obj = self._try_write(
                    "PATCH",
                    f"{self.path}/{ev.name}",
                    {"series": series},
                    ev,
                    "application/merge-patch+json",
                )
            if status_obj is None:
                return  # the outcome was unknown; the re-read told us where we are
            status, obj = status_obj
            if status == 409:
                self.stats.conflicts += 1
                self._read(ev)
                continue
            assert status == 200, (status, obj)
            ev.count, ev.obj = event_total(obj), obj
            if put:
                self.stats.put_bumps += 1
            else:
                self.stats.patch_bumps += 1
            self.writer.note_write(ev.uid)
            return

    def noop(self, ev: Tracked) -> None:
        patch = {"metadata": {"labels": {"fault-suite/touched": str(self.rng.randrange(10**6))}}}
        result = self._try_write(
            "PATCH", f"{self.path}/{ev.name}", patch, ev, "application/merge-patch+json"
        )
        if result is not None:
            status, obj = result
            assert status == 200, (status, obj)
            ev.obj = obj
            self.stats.noops += 1

    def _try_write(
        self, method: str, path: str, body: Any, ev: Tracked, ctype: str = "application/json"
    ) -> tuple[int, Any] | None:
        try:
            return self._call(method, path, body, ctype)
        except Unknown:
            self.stats.unknown += 1
            self._read(ev)  # know the true count before doing anything else with it
            return None

    def step(self) -> None:
        w = self.writer
        roll = self.rng.random()
        if not self.events or roll < w.create_share:
            self.create()
            return
        ev = self.rng.choice(self.events[-w.hot :])
        roll = self.rng.random()
        if roll < 0.4:
            self.bump(ev, put=False)
        elif roll < 0.8:
            self.bump(ev, put=True)
        else:
            self.noop(ev)

    def run(self) -> None:
        w = self.writer
        interval = w.threads / w.rate
        next_at = time.monotonic()
        try:
            while not w.stopping.is_set() and w.budget_left():
                self.step()
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    w.stopping.wait(pause)
                else:
                    next_at = time.monotonic()  # behind (an outage): do not burst to catch up
        except Unknown:
            pass  # abandoned at the end of a run that could not reach the API
        except BaseException as exc:
            w.errors.append(exc)
            raise
        finally:
            self.api.close()


class Writer:
    """A small pool of threads creating Warning Events, bumping their series counts (merge
    PATCH and PUT) and touching labels (no-op updates that must not alert), at about `rate`
    ops/s in total, until stopped or `max_ops` is reached."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        seed: int,
        *,
        rate: float = 100.0,
        threads: int = 4,
        max_ops: int = 10**9,
        create_share: float = 0.35,
        hot: int = 200,
    ) -> None:
        self.plane = plane
        self.namespace = namespace
        self.seed = seed
        self.rate = rate
        self.threads = threads
        self.max_ops = max_ops
        self.create_share = create_share
        self.hot = hot
        self.stopping = threading.Event()
        self.abandon = threading.Event()
        self.errors: list[BaseException] = []
        self.last_write = 0.0
        self._ops_lock = threading.Lock()
        self._ops = 0
        self.workers = [_Worker(self, i) for i in range(threads)]
        self._threads: list[threading.Thread] = []

    def budget_left(self) -> bool:
        with self._ops_lock:
            self._ops += 1
            return self._ops <= self.max_ops

    def note_write(self, uid: str) -> None:
        self.last_write = time.monotonic()

    @property
    def stats(self) -> WriterStats:
        total = WriterStats()
        for worker in self.workers:
            total.add(worker.stats)
        return total

    def start(self) -> Writer:
        self.stopping.clear()
        self._threads = [
            threading.Thread(target=w.run, name=f"writer-{w.index}", daemon=True)
            for w in self.workers
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop and wait; an op in flight is finished (its retries continue while the API is
        back), and abandoned only after `timeout`."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        if any(t.is_alive() for t in self._threads):
            self.abandon.set()
            for thread in self._threads:
                thread.join(15)
        if self.errors:
            raise AssertionError(f"the writer failed: {self.errors[0]!r}") from self.errors[0]

    @contextlib.contextmanager
    def running(self) -> Iterator[Writer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def known(self) -> dict[str, int]:
        return {ev.uid: ev.count for w in self.workers for ev in w.events}


# --- deliveries -------------------------------------------------------------------------------


class Tail:
    """Reads a `file` receiver's JSON lines as they are appended and notes when each arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[JSON] = []
        self.arrived: list[float] = []
        self.torn: list[bytes] = []
        self._offset = 0
        self._partial = b""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tail", daemon=True)

    def __enter__(self) -> Tail:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.poll()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(0.02)

    def poll(self) -> None:
        with self._lock:
            try:
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
            except FileNotFoundError:
                return
            if not chunk:
                return
            self._offset += len(chunk)
            now = time.monotonic()
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    self.torn.append(line[:200])  # a write torn by a kill: reported
                    continue
                self.records.append(record)
                self.arrived.append(now)

    def count(self) -> int:
        with self._lock:
            return len(self.records)

    def first_after(self, when: float) -> float | None:
        with self._lock:
            for arrived in self.arrived:
                if arrived > when:
                    return arrived
        return None


@dataclass
class Tally:
    alerts: int = 0
    occurrences: int = 0  # the truth: sum of final counts
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    spurious: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    # Index (in the receiver's file) of each line that covered a total already covered.
    repeating_lines: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.spurious == 0


def tally(records: list[JSON], truth: dict[str, int]) -> Tally:
    """Each alert covers the totals (total - count, total] of its event; compare with the
    final counts. A total covered twice is a duplicate, one never covered is lost, one above
    the final count (or of an event not in the list) is spurious."""
    covered: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    result = Tally(events=len(truth), occurrences=sum(truth.values()))
    examples: dict[str, list[str]] = {"lost": [], "duplicated": [], "spurious": []}
    for index, record in enumerate(records):
        if record.get("status", "firing") != "firing" or "event" not in record:
            continue
        result.alerts += 1
        total = int(record["event"]["total"])
        count = int(record["count"])
        uid = record["event"]["uid"]
        repeats = False
        for n in range(total - count + 1, total + 1):
            repeats = repeats or covered[uid][n] > 0
            covered[uid][n] += 1
        if repeats:
            result.repeating_lines.append(index)
    for uid, counter in covered.items():
        final = truth.get(uid)
        for n, times in counter.items():
            if final is None or n > final or n < 1:
                result.spurious += times
                examples["spurious"].append(f"{uid}#{n}")
            elif times > 1:
                result.duplicated += times - 1
                examples["duplicated"].append(f"{uid}#{n}x{times}")
    for uid, final in truth.items():
        counter = covered.get(uid, collections.Counter())
        for n in range(1, final + 1):
            if n not in counter:
                result.lost += 1
                examples["lost"].append(f"{uid}#{n}")
    result.examples = {k: v[:5] for k, v in examples.items() if v}
    return result


# --- the daemon as a process --------------------------------------------------------------


def daemon_config(
    namespace: str,
    home: Path,
    alerts: Path,
    *,
    state: JSON | None = None,
    extra: JSON | None = None,
    page_size: int = 50,
) -> Path:
    config: JSON = {
        "sources": [
            {
                "namespaces": [namespace],
                "field_selector": "type=Warning",
                "page_size": page_size,
                "startup_max_age": "1h",
            }
        ],
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
        "receivers": [{"name": "archive", "type": "file", "path": str(alerts), "remember": 10**6}],
        "state": state or {"backend": "file", "path": str(home / "state"), "commit_interval": "1s"},
        "ops": {"listen": ""},
        "log": {"format": "json", "level": "info"},
        **(extra or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


LIST_STARTS = ("first start: skipping events from before now", "resourceVersion expired, relisting")


class DaemonProcess:
    """`python -m kube_event_watcher.cli run -c CONFIG --kubeconfig KC`, kill -9-able, log in
    home/."""

    def __init__(self, config: Path, kubeconfig: Path, name: str = "daemon") -> None:
        self.config = config
        self.kubeconfig = kubeconfig
        self.name = name
        self.log = config.parent / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0
        self._lines: list[JSON] = []

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f'{{"event": "== start {self.starts} =="}}\n'.encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kube_event_watcher.cli",
                    "run",
                    "-c",
                    str(self.config),
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={
                    **os.environ,
                    "KUBECONFIG": "",
                    "POD_NAME": self.name,
                    "PYTHONFAULTHANDLER": "1",
                },
                cwd=REPO,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait; a daemon that does not exit within `timeout` is sent SIGABRT
        (faulthandler is on: every thread's stack goes to its log) and the test fails."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            self.ensure_stopped()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.0f}s of SIGTERM; its stacks at "
                f"SIGABRT ({self.log}):\n{self.tail(80)}"
            ) from None

    def ensure_stopped(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def lines(self) -> list[JSON]:
        """The log's JSON lines so far (read incrementally)."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._log_offset)
                chunk = f.read()
        except FileNotFoundError:
            return self._lines
        end = chunk.rfind(b"\n") + 1
        self._log_offset += end
        for line in chunk[:end].splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = {"event": line.decode(errors="replace")}
            if isinstance(parsed, dict):
                self._lines.append(parsed)
        return self._lines

    def count(self, event: str, since_start: bool = True) -> int:
        lines = self.since_start() if since_start else self.lines()
        return sum(1 for line in lines if line.get("event") == event)

    def since_start(self) -> list[JSON]:
        lines = self.lines()
        marker = f"== start {self.starts} =="
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].get("event") == marker:
                return lines[i:]
        return lines

    def list_seconds(self) -> list[float]:
        """How long each list of this start took (its first start or 410 → "listed"), from
        the log's timestamps."""
        out: list[float] = []
        began: float | None = None
        for line in self.since_start():
            stamp = line.get("timestamp")
            if not isinstance(stamp, str):
                continue
            when = dt.datetime.fromisoformat(stamp).timestamp()
            if line.get("event") in LIST_STARTS:
                began = when
            elif line.get("event") == "listed" and began is not None:
                out.append(when - began)
                began = None
        return out

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
