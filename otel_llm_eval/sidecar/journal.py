"""Append-only request journal: what the sidecar acknowledged but may not have flushed yet.

Segment files `<db>.journal/<first seq>.seg` hold records
`b"OLJ1" | u32 length | u64 seq | 32-byte SHA-256 | u8+signal | u8+content type | u8+encoding | body`.
HTTP handlers append (a plain `write`: the bytes are in the OS page cache when the 200 goes out,
so they survive a kill -9 of the process; not a power cut); the ingest worker applies records in
seq order; the state flush stores the last applied seq in SQLite in the same transaction as the
state, then `prune` deletes segments that are entirely applied. At start, `records_after(seq)`
returns what must be replayed; a torn last record (the process died inside `write`) is ignored —
its request never got a 200, so the exporter retries it. Writes are serialized by the caller.

Kept out of SQLite because copying a megabyte body into the database (and deleting it a second
later) cost about as much as evaluating the spans in it.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator

MAGIC = b"OLJ1"
_HEAD = struct.Struct(">4sIQ32s")
SEGMENT_BYTES = 64 * 1024 * 1024


def _encode(seq: int, digest: bytes, signal: str, content_type: str, encoding: str, body: bytes) -> bytes:
    meta = b"".join(bytes([len(x)]) + x for x in (signal.encode()[:255], content_type.encode()[:255],
                                                   encoding.encode()[:255]))
    return _HEAD.pack(MAGIC, len(meta) + len(body), seq, digest) + meta + body


def _decode_segment(path: str) -> Iterator[tuple[int, bytes, str, str, str, bytes]]:
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + _HEAD.size <= len(data):
        magic, length, seq, digest = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        if magic != MAGIC or start + length > len(data):
            return  # torn tail: never acknowledged
        fields, p = [], start
        for _ in range(3):
            n = data[p]
            fields.append(data[p + 1:p + 1 + n].decode())
            p += 1 + n
        yield seq, digest, fields[0], fields[1], fields[2], data[p:start + length]
        pos = start + length


class FileJournal:
    def __init__(self, directory: str, *, min_seq: int = 0, segment_bytes: int = SEGMENT_BYTES):
        """`min_seq`: the last seq the state says it applied (seqs never go back below it)."""
        self.directory = directory
        self.segment_bytes = segment_bytes
        os.makedirs(directory, exist_ok=True)
        self._fd: int | None = None
        self._size = 0
        self.last_seq = min_seq
        for first in self._segments():
            for rec in _decode_segment(self._path(first)):
                self.last_seq = max(self.last_seq, rec[0])

    def _path(self, first_seq: int) -> str:
        return os.path.join(self.directory, f"{first_seq:020d}.seg")

    def _segments(self) -> list[int]:
        out = []
        for name in os.listdir(self.directory):
            if name.endswith(".seg") and name[:-4].isdigit():
                out.append(int(name[:-4]))
        return sorted(out)

    def append(self, digest: bytes, signal: str, content_type: str, encoding: str, body: bytes) -> int:
        """Write one record; its seq. Caller serializes calls."""
        seq = self.last_seq + 1
        if self._fd is None or self._size >= self.segment_bytes:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = 0
        data = _encode(seq, digest, signal, content_type, encoding, body)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self.last_seq = seq
        return seq

    def records_after(self, seq: int) -> list[tuple[int, bytes, str, str, str, bytes]]:
        out = []
        for first in self._segments():
            for rec in _decode_segment(self._path(first)):
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

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
