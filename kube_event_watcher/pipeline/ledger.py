"""The seen-ledger: per event uid, the series count already turned into occurrences.

It is what makes relists, reconnects and restarts idempotent: an event seen again with the
same count yields nothing; a grown count yields exactly the increment. One ledger per watch
scope, so a relist of that scope can drop the uids the API no longer has.

It holds one entry per live event, up to ~1M in a large busy cluster (an hour of event TTL
at 300 events/s), and it is consulted once per event, so it is compact and cheap to ask:
the uids (36 ASCII characters: the API server's UUIDs) sit back to back in one
`bytearray`, with each one's `hash()` (low 32 bits) and count in `array`s and an
open-addressing index of entry numbers (~52 bytes a live event, against ~120 for a dict of
strings). A lookup hashes the uid string (C speed), compares stored hashes, and confirms
with the stored bytes: nothing is parsed per event (bench/RESULTS.md: ~2.5 µs less an
event than parsing each uid to 128 bits). Anything else (a uid of another length or not
ASCII, a count past 31 bits) goes to a plain dict, so every uid and count round-trips
exactly. The checkpoint keeps the 128-bit form (~27 bytes of JSON an event), converted in C
a chunk at a time.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

_WIDTH = 36  # a UUID's text: the API server's uids
# An entry's 32-bit word: the count in the low 31 bits, and in the top bit the relist
# generation in which the entry was last observed (see begin_relist).
_COUNT = (1 << 31) - 1
_GEN = 1 << 31
_MIN_SLOTS = 8
_LOW32 = (1 << 32) - 1
SNAPSHOT_FORMAT = "uuid128-v1"
_CHUNK = 65_536  # uids converted at once by snapshot(): ~2.4 MB of text


def _little_endian(values: array[int]) -> bytes:
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_little_endian(typecode: str, data: bytes) -> array[int]:
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


_DASHES = (8, 13, 18, 23)  # where a canonical UUID's text has its dashes
_CLEAR_TOP_BIT = bytes(b & 0x7F for b in range(256))  # a byte → the same without bit 7
_TOP_BIT = bytes(b & 0x80 for b in range(256))  # a byte → only its bit 7
_TOP_BYTE = 3 if sys.byteorder == "little" else 0  # where a 32-bit word's top byte is


def _uuid_halves(raw: bytes) -> array[int] | None:
    """Canonical (lowercase) UUIDs back to back → their 64-bit halves, high then low of
    each; None when any of them is not one. Whole-buffer operations, no per-uid Python."""
    count, rest = divmod(len(raw), _WIDTH)
    if rest or not count:
        return None
    dash = b"-" * count
    if any(raw[at::_WIDTH] != dash for at in _DASHES):
        return None
    digits = raw.replace(b"-", b"")
    if len(digits) != 32 * count or digits.lower() != digits:
        return None  # a dash out of place, or uppercase (it would not round-trip)
    try:
        halves = array("Q", binascii.unhexlify(digits))
    except binascii.Error:  # a character that is not hex
        return None
    if sys.byteorder == "little":  # unhexlify gave big-endian halves
        halves.byteswap()
    return halves


# Where each of a UUID's 32 hex digits goes in its 36 characters of text.
_DIGIT_PLACES = tuple(at for at in range(_WIDTH) if at not in _DASHES)
_SPLIT_UIDS = re.compile(f".{{{_WIDTH}}}", re.DOTALL).findall


def _uuid_texts(his: array[int], los: array[int]) -> str:
    """The canonical text of each (high, low) pair, back to back: built with whole-buffer
    operations (hexlify, strided slice assignment), no per-uid Python."""
    halves = array("Q", bytes(16 * len(his)))
    halves[0::2], halves[1::2] = his, los
    if sys.byteorder == "little":
        halves.byteswap()  # big-endian, so the hex digits come out in reading order
    digits = binascii.hexlify(halves.tobytes())
    text = bytearray(b"-" * (_WIDTH * len(his)))
    for digit, place in enumerate(_DIGIT_PLACES):
        text[place::_WIDTH] = digits[digit::32]
    return text.decode()


def _low_halves(values: array[int]) -> array[int]:
    """The low 32 bits of each 64-bit value, as an array("I")."""
    words = array("I", values.tobytes())
    return words[0::2] if sys.byteorder == "little" else words[1::2]


def _top_bits(words: array[int]) -> bytes:
    """Each 32-bit word's top byte with only its top bit kept: all zero when no word has
    bit 31 set."""
    with memoryview(words).cast("B") as octets:
        return bytes(octets[_TOP_BYTE::4]).translate(_TOP_BIT)


class SeenLedger:
    __slots__ = (
        "_changes",
        "_gen",
        "_grow_at",
        "_hash",
        "_index",
        "_mask",
        "_other",
        "_other_seen",
        "_uids",
        "_word",
    )

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self._other: dict[str, int] = {}
        self._other_seen: set[str] | None = None  # during a relist: `_other` uids observed
        # uid -> count (0: forgotten) changed since `take_changes`, once `track_changes` is on:
        # what an incremental checkpoint writes instead of the whole ledger.
        self._changes: dict[str, int] | None = None
        self._gen = 0
        self._uids = bytearray()
        # Each entry's hash(uid), its low 32 bits (the index uses fewer): this process's, never
        # saved. 32 bits are enough to rule out other uids; the stored bytes decide.
        self._hash = array("I")
        self._word = array("I")
        self._reindex()
        for uid, count in (counts or {}).items():
            self.observe(uid, count)

    # -- the table: dense entries, and an index of entry numbers (-1 = empty slot) -----------

    def _reindex(self) -> None:
        """Size the index for the entries (load 0.35 to 0.7) and fill it."""
        slots = _MIN_SLOTS
        while slots * 7 < len(self._word) * 20:
            slots *= 2
        index = self._index = array("i", [-1]) * slots
        mask = self._mask = slots - 1
        self._grow_at = slots * 7 // 10  # keep the index load under 0.7
        for entry, key in enumerate(self._hash):
            slot = key & mask
            while index[slot] >= 0:
                slot = (slot + 1) & mask
            index[slot] = entry

    def _find(self, uid: str) -> tuple[int, int]:
        """(slot, entry) of a table uid; entry is -1 when absent (slot is where it would go)."""
        raw, key = uid.encode(), hash(uid) & _LOW32
        mask, index, hashes, uids = self._mask, self._index, self._hash, self._uids
        slot = key & mask
        while True:
            entry = index[slot]
            if entry < 0 or (hashes[entry] == key and uids.startswith(raw, entry * _WIDTH)):
                return slot, entry
            slot = (slot + 1) & mask

    def _delete(self, slot: int, entry: int) -> None:
        mask, index, hashes, uids = self._mask, self._index, self._hash, self._uids
        # Backward-shift deletion in the index: no tombstones, probe chains stay whole.
        index[slot] = -1
        hole, probe = slot, (slot + 1) & mask
        while (moved := index[probe]) >= 0:
            home = hashes[moved] & mask
            if (probe - home) & mask >= (probe - hole) & mask:
                index[hole], index[probe] = moved, -1
                hole = probe
            probe = (probe + 1) & mask
        # Keep the entries dense: the last one moves into the freed place.
        last = len(self._word) - 1
        if entry != last:
            moving = uids[last * _WIDTH :].decode()
            uids[entry * _WIDTH : (entry + 1) * _WIDTH] = uids[last * _WIDTH :]
            self._word[entry], hashes[entry] = self._word[last], hashes[last]
            index[self._find(moving)[0]] = entry
        del uids[last * _WIDTH :]
        self._word.pop()
        hashes.pop()

    # -- the API ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._word) + len(self._other)

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, str) and self.seen_count(uid) is not None

    def seen_count(self, uid: str) -> int | None:
        if len(uid) == _WIDTH and uid.isascii():
            entry = self._find(uid)[1]
            if entry >= 0:
                return self._word[entry] & _COUNT
        return self._other.get(uid)

    def observe(self, uid: str, count: int) -> int:
        """Record `count` for `uid`; return how many of them are new (0 when none)."""
        # Once per event, so written for the interpreter: the probe and the append are
        # inlined, and the uid is encoded only when a slot holds an entry to compare.
        if (
            len(uid) != _WIDTH
            or not 0 < count <= _COUNT
            or not uid.isascii()
            or (self._other and uid in self._other)
        ):
            return self._observe_other(uid, count)
        index, mask, hashes = self._index, self._mask, self._hash
        key = hash(uid) & _LOW32
        slot = key & mask
        while (entry := index[slot]) >= 0:
            # The stored hash rules out other uids cheaply; the bytes decide.
            if hashes[entry] == key and self._uids.startswith(uid.encode(), entry * _WIDTH):
                words = self._word
                previous = words[entry] & _COUNT
                if count > previous:
                    words[entry] = count | self._gen
                    if self._changes is not None:
                        self._changes[uid] = count
                    return count - previous
                words[entry] = previous | self._gen
                return 0
            slot = (slot + 1) & mask
        if self._changes is not None:
            self._changes[uid] = count
        words = self._word
        index[slot] = len(words)
        self._uids += uid.encode()
        hashes.append(key)
        words.append(count | self._gen)
        if len(words) > self._grow_at:
            self._reindex()
        return count

    def _observe_other(self, uid: str, count: int) -> int:
        """Uids of another shape, and counts past 31 bits, live in a plain dict."""
        if self._other_seen is not None:
            self._other_seen.add(uid)
        previous = self._other.get(uid)
        if previous is None:
            previous = self.seen_count(uid)
            if previous is not None:  # in the table until its count outgrew it
                changes, self._changes = self._changes, None  # a move, not a forget
                self.forget(uid)
                self._changes = changes
                new = max(0, count - previous)
                count = max(previous, count)
            else:
                new = count
        elif count > previous:
            new = count - previous
        else:
            return 0
        self._other[uid] = count
        if new and self._changes is not None:
            self._changes[uid] = count
        return new

    def forget(self, uid: str) -> None:
        if self._changes is not None and uid in self:
            self._changes[uid] = 0
        if self._other.pop(uid, None) is not None:
            return
        if len(uid) == _WIDTH and uid.isascii():
            slot, entry = self._find(uid)
            if entry >= 0:
                self._delete(slot, entry)

    def items(self) -> Iterator[tuple[str, int]]:
        """Every (uid, count), in no particular order."""
        text = self._uids.decode()
        for entry, word in enumerate(self._word):
            yield text[entry * _WIDTH : (entry + 1) * _WIDTH], word & _COUNT
        yield from self._other.items()

    # -- relists --------------------------------------------------------------------------------

    def begin_relist(self) -> None:
        """A full relist starts: from now on `observe` marks what the API still has, and
        `end_relist` drops the rest. Costs nothing per entry (the generation bit flips),
        except when a relist starts over before it ended (an expired continue token)."""
        if self._other_seen is None:
            self._gen ^= _GEN
        else:  # what the abandoned pass marked is unmarked again
            words, unmarked = self._word, self._gen ^ _GEN
            for entry, word in enumerate(words):
                words[entry] = (word & _COUNT) | unmarked
        self._other_seen = set()

    def end_relist(self) -> int:
        """Drop every uid not observed since `begin_relist`; return how many were dropped."""
        gen = self._gen
        # The kept entry numbers in an array (4 bytes each), not a list: at 1M entries a list
        # of ints is ~40 MB more at the memory peak of a relist.
        keep = array("I", (i for i, word in enumerate(self._word) if word & _GEN == gen))
        dropped = len(self._word) - len(keep)
        if dropped and self._changes is not None:
            text, changes = self._uids, self._changes
            for entry, word in enumerate(self._word):
                if word & _GEN != gen:
                    changes[text[entry * _WIDTH : (entry + 1) * _WIDTH].decode()] = 0
        if dropped:
            uids, hashes, words = memoryview(self._uids), self._hash, self._word
            self._uids = bytearray().join(uids[i * _WIDTH : (i + 1) * _WIDTH] for i in keep)
            self._hash = array("I", (hashes[i] for i in keep))
            self._word = array("I", (words[i] for i in keep))
            uids.release()
            self._reindex()
        seen = self._other_seen or set()
        gone = [uid for uid in self._other if uid not in seen]
        for uid in gone:
            del self._other[uid]
            if self._changes is not None:
                self._changes[uid] = 0
        self._other_seen = None
        return dropped + len(gone)

    def retain_only(self, uids: Iterable[str]) -> int:
        """After a full relist: keep only the listed uids; return how many were dropped.
        (`begin_relist`/`end_relist` do the same without holding the listed uids.)"""
        self.begin_relist()
        for uid in uids:
            count = self.seen_count(uid)
            if count is not None:
                self.observe(uid, count)
        return self.end_relist()

    # -- incremental durable form ---------------------------------------------------------------

    def track_changes(self) -> None:
        """From now on remember which uids changed, for `take_changes`."""
        if self._changes is None:
            self._changes = {}

    def take_changes(self) -> dict[str, int]:
        """uid -> count (0: forgotten) for every uid changed since the last call: applied to
        the ledger as it was then (`apply_changes`), it gives the ledger as it is now."""
        changes = self._changes
        if changes is None:
            raise RuntimeError("track_changes() was not called")
        self._changes = {}
        return changes

    def apply_changes(self, changes: dict[str, int]) -> None:
        """Replay `take_changes` output (a checkpoint's journal) onto this ledger."""
        tracking, self._changes = self._changes, None
        try:
            for uid, count in changes.items():
                if type(count) is not int or count < 0:
                    raise ValueError(f"ledger change for {uid!r} is not a count: {count!r}")
                current = self.seen_count(uid)
                if current is not None and (count == 0 or count < current):
                    self.forget(uid)
                if count:
                    self.observe(uid, count)
        finally:
            self._changes = tracking

    # -- durable form ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready compact form: the table's UUIDs as their 128 bits, in two base64
        arrays of 64-bit halves (little-endian), the counts in a third, other uids as a
        mapping. ~27 bytes of JSON per event. Converted a chunk at a time with bytes
        operations only (strided slices, translate, unhexlify: all C), so a snapshot of 1M
        events costs no per-event Python and holds no second copy of the table."""
        his, los, words = array("Q"), array("Q"), array("I")
        other = dict(self._other)
        table, chunk = self._uids, _CHUNK * _WIDTH
        for start in range(0, len(table), chunk):
            raw = bytes(table[start : start + chunk])
            first = start // _WIDTH
            halves = _uuid_halves(raw)
            if halves is not None:
                his.extend(halves[0::2])
                los.extend(halves[1::2])
                words.extend(self._word[first : first + len(raw) // _WIDTH])
                continue
            for offset in range(0, len(raw), _WIDTH):  # some uid is not a canonical UUID
                one, word = raw[offset : offset + _WIDTH], self._word[first + offset // _WIDTH]
                halves = _uuid_halves(one)
                if halves is not None:
                    his.append(halves[0])
                    los.append(halves[1])
                    words.append(word)
                else:
                    other[one.decode()] = word & _COUNT
        if self._gen:  # store plain counts: clear the generation bit of our own copy
            with memoryview(words).cast("B") as octets:
                octets[_TOP_BYTE::4] = bytes(octets[_TOP_BYTE::4]).translate(_CLEAR_TOP_BIT)
        return {
            "format": SNAPSHOT_FORMAT,
            "hi": base64.b64encode(_little_endian(his)).decode(),
            "lo": base64.b64encode(_little_endian(los)).decode(),
            "count": base64.b64encode(_little_endian(words)).decode(),
            "other": other,
        }

    @property
    def _counts(self) -> dict[str, Any]:
        """What daemon.Checkpoint embeds in its JSON: the compact `snapshot()`."""
        return self.snapshot()

    def to_json(self) -> bytes:
        return orjson.dumps(self.snapshot())

    @classmethod
    def from_json(cls, data: bytes) -> SeenLedger:
        """Read `to_json` output, or a plain {uid: count} mapping (older checkpoints)."""
        return cls.from_document(orjson.loads(data))

    @classmethod
    def from_document(cls, doc: Any) -> SeenLedger:
        """`from_json` of a document already decoded (a checkpoint embeds the ledger)."""
        if isinstance(doc, dict) and doc.get("format") == SNAPSHOT_FORMAT:
            return cls._from_snapshot(doc)
        if not isinstance(doc, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in doc.items()
        ):
            raise ValueError("ledger snapshot is not a mapping of uid to count")
        return cls(doc)

    @classmethod
    def _from_snapshot(cls, doc: dict[str, Any]) -> SeenLedger:
        try:
            his = _from_little_endian("Q", base64.b64decode(doc["hi"], validate=True))
            los = _from_little_endian("Q", base64.b64decode(doc["lo"], validate=True))
            words = _from_little_endian("I", base64.b64decode(doc["count"], validate=True))
            other = doc["other"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"ledger snapshot is damaged ({exc!r})") from exc
        if not (len(his) == len(los) == len(words)) or 0 in words or any(_top_bits(words)):
            raise ValueError("ledger snapshot is damaged (array lengths or counts)")
        if not isinstance(other, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in other.items()
        ):
            raise ValueError("ledger snapshot is damaged (other uids)")
        text = _uuid_texts(his, los)
        uids = _SPLIT_UIDS(text)
        if len(set(uids)) != len(uids):
            raise ValueError("ledger snapshot is damaged (a uid twice)")
        ledger = cls()
        ledger._uids = bytearray(text.encode())
        ledger._hash = _low_halves(array("q", map(hash, uids)))
        ledger._word, ledger._other = words, dict(other)
        ledger._reindex()
        return ledger
