"""Faults while writing: lost / duplicated / spurious occurrences, counted per fault.

A writer (tests/support/faults.py) creates Warning Events in a namespace of the case's own and
bumps their series counts by merge PATCH and by PUT, with label-only PATCHes in between that
must not alert, at ~100 ops/s, while a fault is injected: the daemon killed -9 at random
instants (mid-list, mid-delivery, right after a bump), kill -9 with an etcd compaction before
the restart (a real 410 on resume), compactions during a relist (an expired continue token),
kube-apiserver killed -9, etcd stopped and killed, the HA leader killed -9 with a compaction,
the state dir's disk full (a read-only remount is refused with EBUSY while the daemon holds
its files open, so "read-only" is not injected). The daemon runs as a subprocess with one
alert per occurrence (`aggregation.enabled: false`) to a `file` receiver, whose lines each cover the
event's totals (total - count, total]. At the end the namespace's events are LISTed: every
total in (0, final count] must be covered exactly once, and nothing else.

Profiles: the default (short) one runs in CI (>= 10k ops in all, a few minutes); set
KEW_FAULTS=long for >= 100k ops and >= 50 daemon kills. KEW_FAULTS_SEED=N replays a run: the
seed is printed with the table (the fault instants also depend on timing, so a replay is the
same sequence of fault kinds and writes, not the same interleaving).

Run: `pytest tests/e2e/test_fault_suite.py` (the table is printed at the end; add -s for a
row per case as it ends), `KEW_FAULTS=long pytest tests/e2e/test_fault_suite.py` (~35 min).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane.cluster import ControlPlane
from tests.support.faults import (
    LIST_STARTS,
    DaemonProcess,
    Tail,
    Tally,
    Writer,
    daemon_config,
    list_truth,
    tally,
    wait_until,
)
from tests.support.scenarios import unique_namespace

LONG = os.environ.get("KEW_FAULTS", "short") == "long"
SEED = int(os.environ.get("KEW_FAULTS_SEED") or random.SystemRandom().randrange(10**6))


@dataclass(frozen=True)
class Profile:
    rate: float  # writer ops/s
    prefill: int  # events created before the daemon's first start (a many-page first list)
    daemon_kills: int
    compact_kills: int
    relist_rounds: int
    apiserver_kills: int
    etcd_rounds: int
    ha_failovers: int
    disk_rounds: int
    settle: float  # seconds of writes between faults


SHORT = Profile(
    rate=100,
    prefill=500,
    daemon_kills=5,
    compact_kills=4,
    relist_rounds=2,
    apiserver_kills=2,
    etcd_rounds=1,
    ha_failovers=2,
    disk_rounds=1,
    settle=2.0,
)
LONG_PROFILE = Profile(
    rate=100,
    prefill=3000,
    daemon_kills=40,
    compact_kills=20,
    relist_rounds=8,
    apiserver_kills=8,
    etcd_rounds=5,
    ha_failovers=6,
    disk_rounds=3,
    settle=12.0,
)
P = LONG_PROFILE if LONG else SHORT

pytestmark = pytest.mark.timeout(3600 if LONG else 150)


@dataclass
class Injection:
    kind: str
    ended: float  # monotonic time the fault ended (the daemon restarted, the API came back)
    recovery: float | None = None
    repeating_lines: int = 0  # receiver lines after it that repeated a covered total


@dataclass
class Row:
    case: str
    tally: Tally
    ops: int
    seconds: float
    injections: list[Injection] = field(default_factory=list)
    detail: str = ""

    def recoveries(self) -> str:
        values = [i.recovery for i in self.injections if i.recovery is not None]
        if not values:
            return "-"
        return (
            f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}s"
            f" (n={len(values)})"
        )

    def line(self) -> str:
        t = self.tally
        return (
            f"{self.case:<52} {len(self.injections):>4} {self.ops:>7} {t.events:>6} "
            f"{t.occurrences:>7} {t.alerts:>7} {t.lost:>5} {t.duplicated:>5} "
            f"{t.spurious:>5}  {self.recoveries():<28} {self.seconds:>5.0f}s {self.detail}"
        )


HEADER = (
    f"{'fault':<52} {'inj':>4} {'ops':>7} {'events':>6} {'occurr':>7} {'alerts':>7} "
    f"{'lost':>5} {'dup':>5} {'spur':>5}  {'recovery min/med/max':<28} {'wall':>6}"
)
RESULTS: list[Row] = []
CONTINUE_EXPIRED = "list continue token expired, listing again"
DAEMON_KILLS = ("kill-9", "HA leader kill -9")


@pytest.fixture(scope="module", autouse=True)
def fault_table(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.monotonic()
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [
        "",
        f"fault suite: profile {'long' if LONG else 'short'}, seed {SEED} "
        f"(KEW_FAULTS_SEED={SEED} to replay), wall {time.monotonic() - started:.0f}s, "
        f"ops {sum(r.ops for r in RESULTS)}, daemon kills "
        f"{sum(1 for r in RESULTS for i in r.injections if i.kind.startswith(DAEMON_KILLS))}",
        HEADER,
        *(row.line() for row in RESULTS),
    ]
    for row in RESULTS:
        if row.tally.examples:
            lines.append(f"  {row.case}: examples {row.tally.examples}")
        repeats = [f"#{n} {i.kind}: {i.repeating_lines}" for n, i in enumerate(row.injections, 1)]
        if row.tally.repeating_lines:
            lines.append(f"  {row.case}: repeating lines after each fault: {', '.join(repeats)}")
    text = "\n".join(lines)
    if reporter is not None:
        reporter.write_line(text)
    else:
        print(text)


class Case:
    """One fault case: a namespace, a writer, the daemon(s), the receiver file's tail."""

    def __init__(self, plane: ControlPlane, tmp_path: Path, name: str) -> None:
        self.plane = plane
        self.name = name
        self.tmp = tmp_path
        self.rng = random.Random(f"{SEED}/{name}")
        self.namespace = unique_namespace()
        plane.create_namespace(self.namespace)
        self.alerts = tmp_path / "alerts.jsonl"
        self.writer = Writer(plane, self.namespace, self.rng.randrange(10**9), rate=P.rate)
        self.tail = Tail(self.alerts)
        self.daemons: list[DaemonProcess] = []
        self.injections: list[Injection] = []
        self.started = time.monotonic()
        self.list_seconds = 0.3  # a guess until a list was timed

    def listed(self, daemon: DaemonProcess, timeout: float = 60) -> None:
        """Wait for the daemon's list to finish; remember how long it took."""
        wait_until(lambda: not listing(daemon) or not daemon.alive, timeout, "the list")
        assert daemon.alive, f"{daemon.name} exited:\n{daemon.tail()}"
        durations = daemon.list_seconds()
        if durations:
            self.list_seconds = durations[-1]

    def daemon(self, state: dict[str, Any] | None = None, **kw: Any) -> DaemonProcess:
        home = self.tmp / f"d{len(self.daemons)}"
        config = daemon_config(self.namespace, home, self.alerts, state=state, **kw)
        proc = DaemonProcess(config, self.plane.kubeconfig, name=f"replica-{len(self.daemons)}")
        self.daemons.append(proc)
        return proc

    def prefill(self, creates: int) -> None:
        """Events written before the daemon first starts: its first list has many pages."""
        self.writer.create_share = 1.0
        self.writer.rate = max(P.rate, 200)
        with self.writer.running():
            wait_until(lambda: self.writer.stats.creates >= creates, 120, f"{creates} creates")
        self.writer.create_share = 0.35
        self.writer.rate = P.rate
        self.list_seconds = max(0.1, creates / 2500)  # a guess until a list was timed

    def settle(self, seconds: float | None = None) -> None:
        """Let writes go on for a while between faults (load, not a wait for a condition)."""
        time.sleep(self.rng.uniform(0.5, 1.5) * (P.settle if seconds is None else seconds))

    def ended(self, kind: str) -> Injection:
        injection = Injection(kind, time.monotonic())
        self.injections.append(injection)
        return injection

    def delivering(self, daemon: DaemonProcess, timeout: float = 60) -> None:
        """Wait for the daemon to deliver something new (the writer keeps writing)."""
        before = self.tail.count()
        wait_until(
            lambda: self.tail.count() > before or not daemon.alive,
            timeout,
            f"a delivery from {daemon.name}",
        )
        assert daemon.alive, f"{daemon.name} exited:\n{daemon.tail()}"

    def finish(self, detail: str = "", stop: list[DaemonProcess] | None = None) -> Row:
        """Stop writing, LIST the truth, wait until every occurrence is covered, stop the
        daemon(s) with SIGTERM (every alert they hold drained: a late duplicate would be in
        the file after that), and tally."""
        self.writer.stop()
        truth = list_truth(self.plane, self.namespace)
        # Not delivered in time: counted as lost below, with the daemon's log tail.
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: tally(self.tail_records(), truth).lost == 0,
                300 if LONG else 30,
                "every occurrence delivered",
                poll=0.2,
            )
        for daemon in stop if stop is not None else self.daemons:
            if daemon.alive:
                assert daemon.terminate(60) == 0, f"{daemon.name}:\n{daemon.tail()}"
        self.tail.poll()
        result = tally(self.tail.records, truth)
        if self.tail.torn:
            detail += f" torn receiver lines {len(self.tail.torn)}: {self.tail.torn[:2]!r}"
        for injection in self.injections:
            arrived = self.tail.first_after(injection.ended)
            injection.recovery = None if arrived is None else arrived - injection.ended
        # Which fault each repeating line followed (the last one that ended before it came).
        for index in result.repeating_lines:
            arrived = self.tail.arrived[index]
            after = [i for i in self.injections if i.ended <= arrived]
            if after:
                after[-1].repeating_lines += 1
        stats = self.writer.stats
        known = self.writer.known()
        drift = sum(1 for uid, n in known.items() if truth.get(uid) != n)
        row = Row(
            self.name,
            result,
            stats.ops,
            time.monotonic() - self.started,
            self.injections,
            detail + f" [creates {stats.creates} patch {stats.patch_bumps} put {stats.put_bumps}"
            f" noop {stats.noops} unknown {stats.unknown} refused {stats.refused}"
            f" 5xx {stats.server_errors} writer/list drift {drift}]",
        )
        RESULTS.append(row)
        print(HEADER, row.line(), sep="\n")
        return row

    def tail_records(self) -> list[dict[str, Any]]:
        self.tail.poll()
        return list(self.tail.records)

    def close(self) -> None:
        self.writer.stopping.set()
        self.writer.abandon.set()
        for daemon in self.daemons:
            daemon.ensure_stopped()


def assert_clean(row: Row, daemons: list[DaemonProcess]) -> None:
    t = row.tally
    logs = "\n".join(f"--- {d.name} ---\n{d.tail(30)}" for d in daemons)
    assert t.clean, (
        f"{row.case} (seed {SEED}): lost {t.lost}, duplicated {t.duplicated}, "
        f"spurious {t.spurious}; examples {t.examples}\n{logs}"
    )


@pytest.fixture
def case(control_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest):
    c = Case(control_plane, tmp_path, request.node.name.removeprefix("test_"))
    with c.tail:
        try:
            yield c
        finally:
            c.close()


# --- daemon kill -9 -----------------------------------------------------------------------


def listing(daemon: DaemonProcess) -> bool:
    """Started (or relisting after a 410) and not yet done with the list."""
    return daemon.count("listed") == 0


def kill_at(case: Case, daemon: DaemonProcess, mode: str, *, first_list: bool = False) -> str:
    """Kill -9 `daemon` at an instant of kind `mode`; returns what the instant turned out to
    be (a "mid-list" kill that came after the list finished says so)."""
    rng = case.rng
    if mode == "mid-list":
        # The list began (the daemon logged its first start or the 410): kill at a random
        # fraction of how long the last list took, page by page.
        wait_until(
            lambda: any(daemon.count(e) for e in LIST_STARTS) or not daemon.alive,
            60,
            "a list to begin",
        )
        if first_list:
            # A first list delivers as it pages: the first delivery says it is under way.
            before = case.tail.count()
            wait_until(
                lambda: case.tail.count() > before or not listing(daemon) or not daemon.alive,
                60,
                "the first list's first delivery",
            )
            time.sleep(rng.uniform(0.0, 0.3) * case.list_seconds)
        else:
            time.sleep(rng.uniform(0.1, 0.9) * case.list_seconds)
        phase = "mid-list" if listing(daemon) else "after-list"
    elif mode == "mid-delivery":
        before = case.tail.count()
        wait_until(lambda: case.tail.count() > before, 30, "a delivery to kill during")
        time.sleep(rng.uniform(0, 0.01))
        phase = mode
    elif mode == "after-bump":
        since = time.monotonic()
        wait_until(lambda: case.writer.last_write > since, 30, "a write to kill after")
        phase = mode
    else:
        time.sleep(rng.uniform(0.1, 2.0))
        phase = "random"
    daemon.kill9()
    return phase


def restart(case: Case, daemon: DaemonProcess, kind: str) -> None:
    time.sleep(case.rng.uniform(0, 1.0))  # down for a moment, while the writes go on
    daemon.start()
    case.ended(kind)


def test_daemon_kill_9_at_random_instants(case: Case) -> None:
    case.prefill(P.prefill)
    daemon = case.daemon(page_size=10)  # a first list of many pages, to be killed in
    phases: list[str] = []
    with case.writer.running():
        daemon.start()
        # The first list of a full namespace, page by page: killed in the middle of it.
        phases.append(kill_at(case, daemon, "mid-list", first_list=True))
        restart(case, daemon, f"kill-9 {phases[-1]} (first list)")
        case.delivering(daemon)
        modes = ["mid-delivery", "after-bump", "random"]
        for i in range(P.daemon_kills - 1):
            case.settle()
            mode = modes[i % len(modes)] if i < len(modes) else case.rng.choice(modes)
            phases.append(kill_at(case, daemon, mode))
            restart(case, daemon, f"kill-9 {phases[-1]}")
            case.delivering(daemon)
        case.settle()
    row = case.finish("phases " + ",".join(phases))
    assert_clean(row, case.daemons)


def test_daemon_kill_9_without_fsync_loses_and_repeats_nothing(case: Case) -> None:
    """`state.fsync: false`: the journal and the spools stay in the page cache, which a
    process's kill -9 does not take with it; every kind of kill still ends clean."""
    home = case.tmp / "nofsync"
    daemon = case.daemon(
        state={
            "backend": "file",
            "path": str(home / "state"),
            "commit_interval": "1s",
            "fsync": False,
        }
    )
    phases: list[str] = []
    with case.writer.running():
        daemon.start()
        case.delivering(daemon)
        for mode in ("mid-delivery", "after-bump", "random"):
            case.settle()
            phases.append(kill_at(case, daemon, mode))
            restart(case, daemon, f"kill-9 {phases[-1]} (no fsync)")
            case.delivering(daemon)
        case.settle()
    row = case.finish("no fsync; phases " + ",".join(phases))
    assert_clean(row, case.daemons)


def compact_and_restart(case: Case, daemon: DaemonProcess, phase: str) -> None:
    time.sleep(case.rng.uniform(0.1, 0.5))
    case.plane.compact_etcd()
    restart(case, daemon, f"kill-9 {phase} + compaction")
    wait_until(
        lambda: daemon.count("resourceVersion expired, relisting") > 0 or not daemon.alive,
        60,
        "a 410 on resume",
    )
    assert daemon.alive, daemon.tail()


def test_daemon_kill_9_then_compaction_before_restart(case: Case) -> None:
    """Every restart resumes from a compacted resourceVersion: a real 410, then a relist of
    the whole namespace page by page (50 a page); one kill lands during such a relist."""
    case.prefill(P.prefill)
    daemon = case.daemon()
    phases: list[str] = []
    with case.writer.running():
        daemon.start()
        case.listed(daemon)
        case.delivering(daemon)
        for i in range(P.compact_kills):
            case.settle()
            phases.append(kill_at(case, daemon, "after-bump" if i % 2 == 0 else "mid-delivery"))
            compact_and_restart(case, daemon, phases[-1])
            if i % 2 == 1:
                # Killed again during the relist that this 410 started.
                phases.append(kill_at(case, daemon, "mid-list"))
                compact_and_restart(case, daemon, phases[-1])
            case.listed(daemon)
            case.delivering(daemon)
        case.settle()
    row = case.finish("phases " + ",".join(phases))
    assert_clean(row, case.daemons)


def test_compaction_during_a_relist_expires_the_continue_token(case: Case) -> None:
    """SIGTERM (a clean checkpoint), compaction, restart: the resume gets 410 and relists
    page by page, and etcd is compacted again while it pages, so its continue token expires
    ("list continue token expired, listing again")."""
    case.prefill(P.prefill * 2)
    daemon = case.daemon(page_size=20)  # a longer relist, more pages to land in
    expired = 0
    with case.writer.running():
        daemon.start()
        case.listed(daemon)
        for _ in range(P.relist_rounds):
            case.settle()
            assert daemon.terminate() == 0
            case.plane.compact_etcd()
            daemon.start()
            wait_until(
                lambda: daemon.count("resourceVersion expired, relisting") > 0 or not daemon.alive,
                60,
                "a 410 on resume",
            )
            # It pages through the namespace now: compact etcd under it (at most twice a
            # relist, so that it can finish), each at a random point of a list's duration.
            for _ in range(2):
                if not listing(daemon):
                    break
                before = daemon.count(CONTINUE_EXPIRED)
                time.sleep(case.rng.uniform(0.1, 0.7) * case.list_seconds)
                case.plane.compact_etcd()
                wait_until(
                    lambda b=before: daemon.count(CONTINUE_EXPIRED) > b or not listing(daemon),
                    30,
                    "the relist to notice the compaction or finish",
                )
            case.ended("compaction mid-relist")
            case.listed(daemon)
            expired += daemon.count(CONTINUE_EXPIRED)
            case.delivering(daemon)
        case.settle()
    row = case.finish(f"continue tokens expired {expired}")
    assert expired >= 1, "no compaction landed during a relist: the relist was too short"
    assert_clean(row, case.daemons)


def test_apiserver_kill_9(case: Case) -> None:
    case.prefill(P.prefill)
    daemon = case.daemon()
    with case.writer.running():
        daemon.start()
        case.listed(daemon)
        for _ in range(P.apiserver_kills):
            case.settle()
            case.plane.restart_apiserver(kill=True)
            case.ended("apiserver kill -9")
            case.delivering(daemon)
        case.settle()
    row = case.finish()
    assert_clean(row, case.daemons)


def test_etcd_stopped_and_killed(case: Case) -> None:
    case.prefill(P.prefill)
    daemon = case.daemon()
    with case.writer.running():
        daemon.start()
        case.listed(daemon)
        for _ in range(P.etcd_rounds):
            for how in ("stop", "kill"):
                case.settle()
                if how == "kill":
                    case.plane.kill_etcd()
                else:
                    case.plane._etcd.stop(kill=False)  # SIGTERM; no public helper for it
                time.sleep(case.rng.uniform(1.0, 3.0))  # writes fail (5xx) meanwhile
                case.plane.start_etcd()
                case.ended(f"etcd {how}")
                case.delivering(daemon)
        case.settle()
    row = case.finish()
    assert_clean(row, case.daemons)


# --- HA -------------------------------------------------------------------------------------


def test_ha_leader_kill_9_with_compaction(case: Case) -> None:
    """Two replicas with a Lease and the ConfigMap checkpoint, one shared `file` receiver: the
    leader is killed -9 while events are bumped, etcd is compacted, the standby takes over
    (410 on resume, relist), the killed one comes back as the standby."""
    lease = "kew-fault-leader"
    state = {
        "backend": "configmap",
        "namespace": case.namespace,
        "configmap": "kew-fault-state",
        "commit_interval": "200ms",
    }
    ha = {
        "ha": {
            "enabled": True,
            "namespace": case.namespace,
            "lease": lease,
            "lease_duration": "4s",
            "renew_deadline": "3s",
            "retry_period": "500ms",
        }
    }
    replicas = [
        case.daemon(state={**state, "path": str(case.tmp / f"s{i}")}, extra=ha) for i in (0, 1)
    ]

    def holder() -> str:
        try:
            got = case.plane.get(
                f"/apis/coordination.k8s.io/v1/namespaces/{case.namespace}/leases/{lease}"
            )
        except Exception:
            return ""
        return str(got["spec"].get("holderIdentity") or "")

    case.prefill(P.prefill)
    with case.writer.running():
        replicas[0].start()
        wait_until(lambda: holder() == replicas[0].name, 30, "replica-0 to lead")
        wait_until(lambda: replicas[0].count("listed") > 0, 60, "replica-0 to list")
        replicas[1].start()
        wait_until(
            lambda: replicas[1].count("standing by: the lease is held by another replica") > 0,
            30,
            "replica-1 to stand by",
        )
        leader, standby = replicas
        for _ in range(P.ha_failovers):
            case.settle()
            since = time.monotonic()
            wait_until(lambda s=since: case.writer.last_write > s, 30, "a bump to kill after")
            leader.kill9()
            case.plane.compact_etcd()
            wait_until(lambda s=standby: holder() == s.name, 30, f"{standby.name} to take over")
            case.ended("HA leader kill -9 + compaction")
            case.delivering(standby)
            leader.start()
            wait_until(
                lambda d=leader: d.count("standing by: the lease is held by another replica") > 0,
                30,
                f"{leader.name} to stand by",
            )
            leader, standby = standby, leader
        case.settle()
    row = case.finish(stop=[standby, leader])
    assert_clean(row, case.daemons)


# --- disk faults ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs for the daemon's state dir (spool + checkpoint); unmounted afterwards.
    Large enough for the spool of the first list (~1.3 kB an alert), which the filler then
    fills up: the long profile's 3000-event first list alone would fill 4 MiB."""
    mount = tmp_path / "statefs"
    mount.mkdir()
    proc = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={64 if LONG else 16}m,mode=0700",
            "tmpfs",
            str(mount),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        message = f"cannot mount a tmpfs for the disk faults: {proc.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros until the file system is full; the file is the space to free later."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


STUCK_AFTER = 45 if LONG else 20
DISK_ERRORS = (
    "cannot spool the alerts; retrying",
    "checkpoint write failed; alerts wait for it, nothing is lost; will retry",
)


def test_state_disk_full_then_freed(case: Case, small_disk: Path) -> None:
    case.prefill(P.prefill)
    daemon = case.daemon(
        state={"backend": "file", "path": str(small_disk), "commit_interval": "1s"}
    )
    errors_seen: dict[str, int] = {}
    stuck: list[int] = []  # the faults after which nothing was delivered with space back
    with case.writer.running():
        daemon.start()
        case.listed(daemon)
        case.delivering(daemon)
        for _ in range(P.disk_rounds):
            # Full: the spool cannot take the new alerts; nothing may be lost or skipped.
            case.settle()
            before = {e: daemon.count(e) for e in DISK_ERRORS}
            filler = fill(small_disk)
            wait_until(
                lambda b=before: (
                    any(daemon.count(e) > b[e] for e in DISK_ERRORS) or not daemon.alive
                ),
                30,
                "a clear error about the full disk",
            )
            case.settle(P.settle)  # writes go on against a full disk
            assert daemon.alive, f"the daemon died on a full disk:\n{daemon.tail()}"
            errors_seen["full"] = sum(daemon.count(e) for e in DISK_ERRORS)
            filler.unlink()
            case.ended("state disk full")
            # The spool's retry doubles its wait from 0.5 s (at most 30 s): after a full disk
            # of P.settle seconds, no delivery within STUCK_AFTER means the daemon is stuck.
            before_free = case.tail.count()
            try:
                wait_until(lambda b=before_free: case.tail.count() > b, STUCK_AFTER, "a delivery")
            except AssertionError:
                stuck.append(len(case.injections))
            # Full again, and killed -9 while full: whatever never reached the spool must not
            # be covered by a checkpoint either; after space is back a restart sends it.
            case.settle()
            before = {e: daemon.count(e) for e in DISK_ERRORS}
            filler = fill(small_disk)
            wait_until(
                lambda b=before: (
                    any(daemon.count(e) > b[e] for e in DISK_ERRORS) or not daemon.alive
                ),
                30,
                "a clear error about the full disk",
            )
            case.settle(P.settle / 2)
            assert daemon.alive, f"the daemon died on a full disk:\n{daemon.tail()}"
            errors_seen["before kill"] = sum(daemon.count(e) for e in DISK_ERRORS)
            daemon.kill9()
            filler.unlink()
            restart(case, daemon, "kill-9 on a full disk")
            case.delivering(daemon)
        case.settle()
    assert daemon.starts == 1 + P.disk_rounds and daemon.alive, "it must ride out a full disk"
    row = case.finish(f"errors logged {errors_seen}; stuck after fault #{stuck or '-'}")
    assert not stuck, (
        f"no delivery within {STUCK_AFTER} s after space was back (fault #{stuck}): the "
        f"delivery lane stopped (seed {SEED})\n{daemon.tail(30)}"
    )
    assert_clean(row, case.daemons)
