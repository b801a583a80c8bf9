"""The file state backend: a journal whose commits are all-or-nothing across documents,
whose changes replay in order, and which starts afresh from the state once it outgrows it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kube_event_watcher.state.file import JOURNAL, MAGIC, FileStore, encode_record


async def _reopen(directory: Path) -> FileStore:
    return FileStore(str(directory))


async def test_a_commit_of_several_documents_and_changes_reads_back(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    assert store.wants_full(), "no journal yet: the first commit is the full state"
    await store.save({"a": b"A1", "b": b"B1"}, full=True)
    await store.save({"b": b"B2"}, {"a": b"a-change-1"})
    await store.save({}, {"a": b"a-change-2", "c": b"c-change"})
    again = await _reopen(tmp_path)
    assert await again.load("a") == b"A1"
    assert await again.load_changes("a") == [b"a-change-1", b"a-change-2"]
    assert await again.load("b") == b"B2"
    assert await again.load_changes("b") == []
    assert await again.load("c") is None
    assert await again.load_changes("c") == [b"c-change"]


async def test_a_new_full_version_supersedes_earlier_changes(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    await store.save({"a": b"A1"}, full=True)
    await store.save({}, {"a": b"x"})
    await store.save({"a": b"A2"})
    again = await _reopen(tmp_path)
    assert await again.load("a") == b"A2"
    assert await again.load_changes("a") == []


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
async def test_a_commit_torn_by_a_crash_never_happened(tmp_path: Path, cut: int) -> None:
    store = FileStore(str(tmp_path))
    await store.save({"a": b"A1", "b": b"B1"}, full=True)
    size = (tmp_path / JOURNAL).stat().st_size
    await store.save({"b": b"B2"}, {"a": b"a-change"})
    # The crash lands `cut` bytes into the second commit's record.
    os.truncate(tmp_path / JOURNAL, size + cut)
    again = await _reopen(tmp_path)
    assert await again.load("b") == b"B1", "neither document of the torn commit is seen"
    assert await again.load_changes("a") == []
    assert again.torn_bytes == cut
    # The next commit goes where the torn one began, and reads back whole.
    await again.save({"b": b"B3"}, {"a": b"after"})
    third = await _reopen(tmp_path)
    assert await third.load("b") == b"B3"
    assert await third.load_changes("a") == [b"after"]
    assert third.torn_bytes == 0


async def test_a_damaged_record_ends_the_journal_there(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    await store.save({"a": b"A1"}, full=True)
    at = (tmp_path / JOURNAL).stat().st_size
    await store.save({}, {"a": b"one"})
    await store.save({}, {"a": b"two"})
    data = bytearray((tmp_path / JOURNAL).read_bytes())
    data[at + 12] ^= 0xFF  # a bit flip inside the first change record
    (tmp_path / JOURNAL).write_bytes(bytes(data))
    again = await _reopen(tmp_path)
    assert await again.load("a") == b"A1"
    assert await again.load_changes("a") == [], "nothing after a record that fails its CRC"


async def test_it_asks_for_a_full_commit_once_the_log_outgrows_the_state(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), rebase_bytes=1000)
    await store.save({"a": b"x" * 100}, full=True)
    commits = 0
    while not store.wants_full():
        await store.save({}, {"a": b"c" * 50})
        commits += 1
    per_commit = len(encode_record({}, {"a": b"c" * 50}))
    assert commits == 1000 // per_commit + 1  # just past max(rebase_bytes, base) bytes
    await store.save({"a": b"y" * 100}, full=True)
    assert not store.wants_full()
    assert (tmp_path / JOURNAL).stat().st_size < 200, "the full commit started a new journal"
    again = await _reopen(tmp_path)
    assert await again.load("a") == b"y" * 100
    assert await again.load_changes("a") == []


async def test_a_failed_write_is_cut_off_and_the_next_commit_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path))
    await store.save({"a": b"A1"}, full=True)
    good = (tmp_path / JOURNAL).read_bytes()
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_disk(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        await store.save({}, {"a": b"lost"})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (tmp_path / JOURNAL).read_bytes() == good, "the partial record is cut off"
    again = await _reopen(tmp_path)
    assert await again.load_changes("a") == []


async def test_an_unknown_outcome_makes_the_next_commit_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path))
    await store.save({"a": b"A1"}, full=True)

    def broken(fd: int, *args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    monkeypatch.setattr(os, "ftruncate", broken)
    with pytest.raises(OSError, match="Input/output"):
        await store.save({}, {"a": b"maybe"})
    assert store.wants_full(), "a record that may be half on disk: start a new journal"


async def test_a_directory_of_the_old_layout_is_read_and_migrated(tmp_path: Path) -> None:
    (tmp_path / "aggregation.json").write_bytes(b'{"old": 1}')
    (tmp_path / "watch.default._all.1234.json").write_bytes(b'{"rv": 5}')
    store = FileStore(str(tmp_path))
    assert await store.load("aggregation") == b'{"old": 1}'
    assert await store.load("watch.default._all.1234") == b'{"rv": 5}'
    assert store.wants_full()
    await store.save({"aggregation": b"new", "watch.default._all.1234": b"w"}, full=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL]
    assert (tmp_path / JOURNAL).read_bytes().startswith(MAGIC)


async def test_a_file_that_is_not_a_journal_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / JOURNAL).write_bytes(b"something else")
    store = FileStore(str(tmp_path))
    with pytest.raises(ValueError, match="not a kube-event-watcher state journal"):
        await store.load("a")


async def test_unsafe_document_names_are_refused(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    with pytest.raises(ValueError, match="not a safe name"):
        await store.save({"../x": b""}, full=True)


@pytest.mark.parametrize("full", [False, True])
async def test_what_must_be_durable_first_runs_before_the_record_or_stops_it(
    tmp_path: Path, full: bool
) -> None:
    """`before` (the spools' fsync) runs in the journal's thread ahead of the record; when it
    fails the commit is not written, so no checkpoint covers alerts that are not durable."""
    store = FileStore(str(tmp_path))
    await store.save({"a": b"A1"}, full=True)
    seen: list[bytes | None] = []

    def before() -> None:
        seen.append(_journal_bytes(tmp_path))

    await store.save({"a": b"A2"}, full=full, before=before)
    assert seen and b"A2" not in (seen[0] or b""), "ran before the record was written"

    def failing() -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        await store.save({"a": b"A3"}, full=full, before=failing)
    assert await (await _reopen(tmp_path)).load("a") == b"A2"


def _journal_bytes(directory: Path) -> bytes | None:
    path = directory / JOURNAL
    return path.read_bytes() if path.exists() else None
