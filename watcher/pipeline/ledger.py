"""The seen-ledger: per event uid, the series count already turned into occurrences.

It is what makes relists, reconnects and restarts idempotent: an event seen again with the
same count yields nothing; a grown count yields exactly the increment. One ledger per watch
scope, so a relist of that scope can drop the uids the API no longer has.

It holds one entry per live event, up to ~1M in a large busy cluster (an hour of event TTL
at 300 events/s), so it is compact: the API server's uids are lowercase UUIDs, kept as the
two 64-bit halves of their 128 bits in an open-addressing table of `array`s (~20 bytes a
slot, ~40 a live entry) instead of a dict of 36-character strings (~130 bytes an entry).
Anything else (a uid of another shape, a count past 32 bits) goes to a plain dict, so every
uid and count round-trips exactly.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator

import orjson

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
_LOW = (1 << 64) - 1
# A slot's 32-bit word: the count in the low 31 bits (0 = empty slot), and in the top bit
# the relist generation in which the entry was last observed (see begin_relist).
_COUNT = (1 << 31) - 1
_GEN = 1 << 31
_MIN_SLOTS = 8


def _key(uid: str) -> int | None:
    """The uid's 128 bits, or None when it is not a canonical (lowercase) UUID."""
    if len(uid) == 36 and _UUID(uid):
        return int(uid.replace("-", ""), 16)
    return None


def _uid(key: int) -> str:
    h = f"{key:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class SeenLedger:
    __slots__ = ("_gen", "_hi", "_lo", "_mask", "_other", "_other_seen", "_used", "_word")

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self._other: dict[str, int] = {}
        self._other_seen: set[str] | None = None  # during a relist: `_other` uids observed
        self._gen = 0
        self._allocate(_MIN_SLOTS)
        for uid, count in (counts or {}).items():
            self.observe(uid, count)

    def _allocate(self, slots: int) -> None:
        self._hi = array("Q", bytes(8 * slots))
        self._lo = array("Q", bytes(8 * slots))
        self._word = array("I", bytes(4 * slots))
        self._mask = slots - 1
        self._used = 0

    # -- the table (linear probing; deletion shifts entries back, so no tombstones) ----------

    def _slot(self, key: int) -> tuple[int, bool]:
        """The slot holding `key` (True) or the empty slot where it would go (False)."""
        hi, lo = key >> 64, key & _LOW
        mask, his, los, words = self._mask, self._hi, self._lo, self._word
        slot = hash(key) & mask
        while words[slot]:
            if los[slot] == lo and his[slot] == hi:
                return slot, True
            slot = (slot + 1) & mask
        return slot, False

    def _put(self, slot: int, key: int, word: int) -> None:
        self._hi[slot] = key >> 64
        self._lo[slot] = key & _LOW
        self._word[slot] = word
        self._used += 1
        if self._used * 10 > (self._mask + 1) * 7:  # keep the load under 0.7
            self._rebuild(list(self._entries()), (self._mask + 1) * 2)

    def _entries(self) -> Iterator[tuple[int, int]]:
        """(key, word) of every occupied slot."""
        his, los = self._hi, self._lo
        for slot, word in enumerate(self._word):
            if word:
                yield (his[slot] << 64) | los[slot], word

    def _rebuild(self, entries: list[tuple[int, int]], slots: int) -> None:
        self._allocate(max(_MIN_SLOTS, slots))
        his, los, words = self._hi, self._lo, self._word
        for key, word in entries:
            slot, _ = self._slot(key)
            his[slot], los[slot], words[slot] = key >> 64, key & _LOW, word
        self._used = len(entries)

    def _delete(self, slot: int) -> None:
        mask, his, los, words = self._mask, self._hi, self._lo, self._word
        words[slot] = 0
        self._used -= 1
        hole, probe = slot, (slot + 1) & mask
        while words[probe]:
            home = hash((his[probe] << 64) | los[probe]) & mask
            # Move the entry back into the hole unless its home lies cyclically after the
            # hole (then the hole does not break its probe chain).
            if (probe - home) & mask >= (probe - hole) & mask:
                his[hole], los[hole], words[hole] = his[probe], los[probe], words[probe]
                words[probe] = 0
                hole = probe
            probe = (probe + 1) & mask

    # -- the API ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._used + len(self._other)

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, str) and self.seen_count(uid) is not None

    def seen_count(self, uid: str) -> int | None:
        key = _key(uid)
        if key is not None:
            slot, found = self._slot(key)
            if found:
                return self._word[slot] & _COUNT
        return self._other.get(uid)

    def observe(self, uid: str, count: int) -> int:
        """Record `count` for `uid`; return how many of them are new (0 when none)."""
        # Once per event: the table lookup is inlined (no _key/_slot calls), ~1 µs.
        if not (len(uid) == 36 and 0 < count <= _COUNT and _UUID(uid)) or (
            self._other and uid in self._other
        ):
            return self._observe_other(uid, count)
        key = int(uid.replace("-", ""), 16)
        hi, lo = key >> 64, key & _LOW
        mask, his, los, words = self._mask, self._hi, self._lo, self._word
        slot = hash(key) & mask
        while True:
            word = words[slot]
            if not word:
                self._put(slot, key, count | self._gen)
                return count
            if los[slot] == lo and his[slot] == hi:
                break
            slot = (slot + 1) & mask
        previous = word & _COUNT
        if count > previous:
            words[slot] = count | self._gen
            return count - previous
        words[slot] = previous | self._gen
        return 0

    def _observe_other(self, uid: str, count: int) -> int:
        """Uids that are not UUIDs, and counts past 31 bits, live in a plain dict."""
        if self._other_seen is not None:
            self._other_seen.add(uid)
        previous = self._other.get(uid)
        if previous is None:
            previous = self.seen_count(uid)
            if previous is not None:  # in the table until its count outgrew it
                self.forget(uid)
                self._other[uid] = max(previous, count)
                return max(0, count - previous)
            self._other[uid] = count
            return count
        if count > previous:
            self._other[uid] = count
            return count - previous
        return 0

    def forget(self, uid: str) -> None:
        if self._other.pop(uid, None) is not None:
            return
        key = _key(uid)
        if key is not None:
            slot, found = self._slot(key)
            if found:
                self._delete(slot)

    def items(self) -> Iterator[tuple[str, int]]:
        """Every (uid, count), in no particular order."""
        for key, word in self._entries():
            yield _uid(key), word & _COUNT
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
            for slot, word in enumerate(words):
                if word:
                    words[slot] = (word & _COUNT) | unmarked
        self._other_seen = set()

    def end_relist(self) -> int:
        """Drop every uid not observed since `begin_relist`; return how many were dropped."""
        gen = self._gen
        live = [(key, word) for key, word in self._entries() if word & _GEN == gen]
        dropped = self._used - len(live)
        if dropped:
            slots = _MIN_SLOTS
            while slots * 7 < len(live) * 20:  # room to grow, at a load of ~0.35
                slots *= 2
            self._rebuild(live, slots)
        seen = self._other_seen or set()
        gone = [uid for uid in self._other if uid not in seen]
        for uid in gone:
            del self._other[uid]
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

    @property
    def _counts(self) -> dict[str, int]:
        """The ledger as a plain dict (what daemon.Checkpoint serialises); prefer `to_json`."""
        return dict(self.items())

    def to_json(self) -> bytes:
        return orjson.dumps(dict(self.items()))

    @classmethod
    def from_json(cls, data: bytes) -> SeenLedger:
        counts = orjson.loads(data)
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in counts.items()
        ):
            raise ValueError("ledger snapshot is not a mapping of uid to count")
        return cls(counts)
