"""The daemon as a user runs it: a subprocess, a config file, signals, a JSON-lines file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import yaml

from kube_event_watcher.state.file import JOURNAL, decode_records
from tests.conftest import RunningDouble, write_kubeconfig
from tests.support.process import eventually, records, start_daemon, stop_daemon


def write_config(tmp_path: Path, archive: Path, state: Path) -> Path:
    config = {
        "receivers": [{"name": "archive", "type": "file", "path": str(archive)}],
        "state": {"backend": "file", "path": str(state), "commit_interval": "100ms"},
        "log": {"format": "json"},
        "ops": {"listen": "127.0.0.1:0"},
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def wait_lines(
    path: Path, count: int, proc: asyncio.subprocess.Process
) -> list[dict[str, object]]:
    """The archive's records once it has at least `count` lines."""
    return await eventually(
        lambda: (lines := records(path)) and len(lines) >= count and lines,
        f"{count} lines in {path.name}",
        path.parent / "daemon.log",
        proc,
    )


async def test_sigterm_flushes_and_exits_zero_then_resumes(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api = api_double.api
    archive, state = tmp_path / "alerts.jsonl", tmp_path / "state"
    config = write_config(tmp_path, archive, state)
    proc = await start_daemon(config, api_double.kubeconfig)
    await api.wait_watches(1, timeout=30)
    first = [await api.create_event("default", "BackOff", f"web-{i}") for i in range(3)]
    await wait_lines(archive, 3, proc)
    await stop_daemon(proc, timeout=20)
    journal = (state / JOURNAL).read_bytes()
    records, _, _ = decode_records(journal)
    names = {name for record in records for _, name, _ in record}
    assert any(n.startswith("watch.") for n in names), "the checkpoint was written at shutdown"

    later = await api.create_event("default", "BackOff", "web-late")
    await api.repeat_event(first[0], count=2)
    proc = await start_daemon(config, api_double.kubeconfig)
    lines = await wait_lines(archive, 5, proc)
    await stop_daemon(proc, timeout=20)
    uids = [line["event"]["uid"] for line in lines]  # type: ignore[index]
    assert uids[:3] == [e["metadata"]["uid"] for e in first]
    assert sorted(uids[3:]) == sorted([later["metadata"]["uid"], first[0]["metadata"]["uid"]])
    assert len(lines) == 5
    record = lines[0]
    assert record["reason"] == "BackOff" and record["type"] == "Warning"
    assert record["regarding"] == {  # type: ignore[comparison-overlap]
        "kind": "Pod",
        "namespace": "default",
        "name": "web-0",
        "uid": first[0]["regarding"]["uid"],
        "fieldPath": "",
    }


async def test_sigkill_then_restart_repeats_nothing(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api = api_double.api
    archive, state = tmp_path / "alerts.jsonl", tmp_path / "state"
    config = write_config(tmp_path, archive, state)
    proc = await start_daemon(config, api_double.kubeconfig)
    await api.wait_watches(1, timeout=30)
    burst = [await api.create_event("default", "OOMKilling", f"p-{i}") for i in range(20)]
    await wait_lines(archive, 20, proc)
    proc.kill()  # no chance to flush: the checkpoint may be behind what was delivered
    await proc.wait()
    after = [await api.create_event("default", "OOMKilling", f"q-{i}") for i in range(3)]
    proc = await start_daemon(config, api_double.kubeconfig)
    lines = await wait_lines(archive, 23, proc)
    marker = await api.create_event("default", "Marker", "m")
    lines = await wait_lines(archive, 24, proc)
    await stop_daemon(proc, timeout=20)
    uids = [line["event"]["uid"] for line in lines]  # type: ignore[index]
    expected = [e["metadata"]["uid"] for e in [*burst, *after, marker]]
    assert sorted(uids) == sorted(expected)
    assert len(uids) == len(set(uids)) == 24


async def test_exec_credential_plugin_token_is_used(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    plugin = tmp_path / "plugin.py"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": api_double.api.token, "expirationTimestamp": "2099-01-01T00:00:00Z"},
    }
    plugin.write_text(f"import sys\nsys.stdout.write({orjson.dumps(credential).decode()!r})\n")
    kubeconfig = write_kubeconfig(
        tmp_path / "kc-exec",
        api_double.url,
        api_double.ca_file.read_bytes(),
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(plugin)],
                "interactiveMode": "Never",
            }
        },
    )
    archive, state = tmp_path / "alerts.jsonl", tmp_path / "state"
    proc = await start_daemon(write_config(tmp_path, archive, state), kubeconfig)
    await api_double.api.wait_watches(1, timeout=30)
    event = await api_double.api.create_event("default", "BackOff", "web")
    lines = await wait_lines(archive, 1, proc)
    await stop_daemon(proc, timeout=20)
    assert lines[0]["event"]["uid"] == event["metadata"]["uid"]  # type: ignore[index]


async def test_a_bad_config_exits_2_and_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("sources:\n  - namespaces: default\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kube_event_watcher.cli",
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "sources[0].namespaces: expected a list of names, got 'default'" in err.decode()
