"""Append-only request journal: what the sidecar acknowledged but may not have flushed yet.

Segment files `<db>.journal/<first seq>.seg` hold records
`b"OLJ2" | u32 length | u64 seq | 32-byte SHA-256 | u32 CRC-32 | u8+signal | u8+content type |
u8+encoding | body`, the CRC covering length, seq, digest and everything after it.
HTTP handlers append (a plain `write`: the bytes are in the OS page cache when the 200 goes out,
so they survive a kill -9 of the process; not a power cut); the ingest worker applies records in
seq order; the state flush stores the last applied seq in SQLite in the same transaction as the
state, then `prune` deletes segments that are entirely applied. At start, `records_after(seq)`
returns what must be replayed. Writes are serialized by the caller.

Guarantees (see docs/reliability.md):
- `append` returns only once the whole record is written; when a write fails (disk full) the
  segment is truncated back to its last whole record and the error is raised, so the request is
  not acknowledged and no later record sits behind a torn one. If even the truncation fails the
  segment is abandoned and the next append starts a new one.
- Replay never trusts a record whose CRC does not match: it skips it, copies its bytes to
  `<db>.journal/quarantine/` (logged with the path, counted in `damaged`) and resynchronizes
  on the next record marker, so one damaged record never hides the records after it.
- A record cut short at the very end of the newest segment (the process died inside `write`) is
  ignored without counting: its request never got a 200, so the exporter retries it.
- Records written by the previous format (`OLJ1`, no CRC) are still read.
- The segment being written is closed after `max_age_seconds` (`state.journal_max_age_seconds`)
  and deleted once applied, also when no request comes: raw prompts in request bodies are not
  kept on disk indefinitely.

Kept out of SQLite because copying a megabyte body into the database (and deleting it a second
later) cost about as much as evaluating the spans in it.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from typing import Callable, Iterator

log = logging.getLogger(__name__)

MAGIC = b"OLJ2"
OLD_MAGIC = b"OLJ1"
_HEAD = struct.Struct(">4sIQ32sI")   # magic, length, seq, digest, crc
_OLD_HEAD = struct.Struct(">4sIQ32s")
SEGMENT_BYTES = 64 * 1024 * 1024
MAX_AGE_SECONDS = 900.0

Record = tuple  # (seq, digest, signal, content_type, encoding, body)


def _crc(length: int, seq: int, digest: bytes, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">IQ32s", length, seq, digest)))


def _encode(seq: int, digest: bytes, signal: str, content_type: str, encoding: str, body: bytes) -> bytes:
    meta = b"".join(bytes([len(x)]) + x for x in (signal.encode()[:255], content_type.encode()[:255],
                                                   encoding.encode()[:255]))
    payload = meta + body
    return _HEAD.pack(MAGIC, len(payload), seq, digest, _crc(len(payload), seq, digest, payload)) + payload


def _fields(payload: bytes) -> tuple[str, str, str, bytes]:
    """(signal, content type, encoding, body); raises ValueError/IndexError on a bad payload."""
    fields, p = [], 0
    for _ in range(3):
        n = payload[p]
        fields.append(payload[p + 1:p + 1 + n].decode())
        p += 1 + n
    if p > len(payload):
        raise ValueError("metadata runs past the record")
    return fields[0], fields[1], fields[2], payload[p:]


def _next_marker(data: bytes, start: int) -> int:
    """Offset of the next record marker at or after `start`, or len(data)."""
    found = [i for i in (data.find(MAGIC, start), data.find(OLD_MAGIC, start)) if i >= 0]
    return min(found) if found else len(data)


def decode_segment(data: bytes, on_damage: Callable[[int, int], None] | None = None) -> Iterator[Record]:
    """Whole records in `data`. A damaged stretch [start, end) is reported to `on_damage` and
    skipped; a record cut off at the end of `data` is dropped silently (a torn tail)."""
    pos = 0
    while pos + _OLD_HEAD.size <= len(data):
        magic = data[pos:pos + 4]
        rec = None
        if magic == MAGIC and pos + _HEAD.size <= len(data):
            _, length, seq, digest, crc = _HEAD.unpack_from(data, pos)
            start = pos + _HEAD.size
            if start + length > len(data) and _next_marker(data, pos + 1) == len(data):
                return  # torn tail: never acknowledged
            payload = data[start:start + length]
            if len(payload) == length and _crc(length, seq, digest, payload) == crc:
                try:
                    rec = (seq, digest, *_fields(payload))
                except (ValueError, IndexError):
                    rec = None
            end = start + length
        elif magic == OLD_MAGIC:
            _, length, seq, digest = _OLD_HEAD.unpack_from(data, pos)
            start = pos + _OLD_HEAD.size
            if start + length > len(data) and _next_marker(data, pos + 1) == len(data):
                return
            try:
                rec = (seq, digest, *_fields(data[start:start + length]))
            except (ValueError, IndexError):
                rec = None
            end = start + length
        else:
            end = pos
        if rec is not None and end <= len(data):
            yield rec
            pos = end
            continue
        nxt = _next_marker(data, pos + 1)
        if on_damage is not None:
            on_damage(pos, nxt)
        pos = nxt
    # fewer bytes than a header left: a torn tail


class FileJournal:
    def __init__(self, directory: str, *, min_seq: int = 0, segment_bytes: int = SEGMENT_BYTES,
                 max_age_seconds: float = MAX_AGE_SECONDS):
        """`min_seq`: the last seq the state says it applied (seqs never go back below it).
        `max_age_seconds`: the segment being written is closed once it is this old, so request
        bodies (raw prompts) are never kept longer than that plus the time to apply them.

        Scans every segment once: damaged records are quarantined and counted in `damaged`."""
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_age_seconds = max_age_seconds
        os.makedirs(directory, exist_ok=True)
        self._fd: int | None = None
        self._fd_seq = 0          # first seq of the segment being written
        self._opened = 0.0        # time.monotonic() when it was opened
        self._size = 0
        self.last_seq = min_seq
        #: damaged records found at start (quarantined, never replayed), and where they went
        self.damaged = 0
        self.quarantined: list[str] = []
        for first in self._segments():
            for rec in self._read(first, quarantine=True):
                self.last_seq = max(self.last_seq, rec[0])

    def _path(self, first_seq: int) -> str:
        return os.path.join(self.directory, f"{first_seq:020d}.seg")

    def _segments(self) -> list[int]:
        out = []
        for name in os.listdir(self.directory):
            if name.endswith(".seg") and name[:-4].isdigit():
                out.append(int(name[:-4]))
        return sorted(out)

    def _read(self, first: int, *, quarantine: bool = False) -> list[Record]:
        path = self._path(first)
        with open(path, "rb") as f:
            data = f.read()

        def damaged(start: int, end: int) -> None:
            if not quarantine:
                return
            qdir = os.path.join(self.directory, "quarantine")
            os.makedirs(qdir, exist_ok=True)
            qpath = os.path.join(qdir, f"{first:020d}.seg.{start}-{end}.bad")
            with open(qpath, "wb") as q:
                q.write(data[start:end])
            self.damaged += 1
            self.quarantined.append(qpath)
            log.error("journal record damaged in %s (bytes %d-%d): skipped, its bytes copied to %s; the "
                      "records after it are replayed", path, start, end, qpath)

        return list(decode_segment(data, damaged))

    def append(self, digest: bytes, signal: str, content_type: str, encoding: str, body: bytes) -> int:
        """Write one whole record and return its seq; on OSError nothing of it stays. Caller serializes calls."""
        seq = self.last_seq + 1
        if self._fd is not None and (self._size >= self.segment_bytes
                                     or time.monotonic() - self._opened >= self.max_age_seconds):
            os.close(self._fd)
            self._fd = None
        if self._fd is None:
            self._fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fd_seq, self._opened = seq, time.monotonic()
            self._size = os.fstat(self._fd).st_size
        data = _encode(seq, digest, signal, content_type, encoding, body)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            self._truncate_back()
            raise
        self._size += len(data)
        self.last_seq = seq
        return seq

    def _truncate_back(self) -> None:
        """Remove a partly written record; if that fails too, abandon the segment (replay resyncs)."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            log.error("could not truncate a partly written journal record in %s; starting a new segment",
                      self.directory)
            try:
                os.close(self._fd)
            finally:
                self._fd = None

    def records_after(self, seq: int) -> list[Record]:
        out = []
        for first in self._segments():
            for rec in self._read(first):
                if rec[0] > seq:
                    out.append(rec)
        out.sort(key=lambda r: r[0])
        return out

    def prune(self, applied_seq: int) -> None:
        """Delete segments whose every record is applied (never the one being written)."""
        segments = self._segments()
        for first, nxt in zip(segments, segments[1:]):
            if nxt - 1 <= applied_seq:
                try:
                    os.unlink(self._path(first))
                except FileNotFoundError:
                    pass

    def retire_old_segment(self, applied_seq: int) -> bool:
        """Close and delete the segment being written when it is older than `max_age_seconds` and
        every record in it is applied (nobody writes for a while: its bodies must not stay
        forever). True when it did. Caller serializes this with `append`."""
        if self._fd is None or time.monotonic() - self._opened < self.max_age_seconds \
                or self.last_seq > applied_seq:
            return False
        os.close(self._fd)
        self._fd = None
        try:
            os.unlink(self._path(self._fd_seq))
        except FileNotFoundError:
            pass
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
