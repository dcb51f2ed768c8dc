"""Acknowledged data survives: torn appends, damaged records, the state lock, rebuild reports."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from otel_llm_eval.sidecar.ingest import journal as journal_mod
from otel_llm_eval.sidecar.ingest.journal import FileJournal
from otel_llm_eval.sidecar.startup import StartupError
from otel_llm_eval.sidecar.store import Store

D = b"\x02" * 32


def _disk_full_after(monkeypatch, n_bytes: int) -> None:
    """The next os.write writes `n_bytes` and then fails with ENOSPC (a disk filling up mid-record)."""
    real = os.write
    state = {"armed": True}

    def write(fd, data):
        if state["armed"]:
            state["armed"] = False
            real(fd, bytes(data[:n_bytes]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(journal_mod.os, "write", write)


@pytest.mark.parametrize("torn_bytes", [0, 3, 30, 60, 500])
def test_a_failed_append_leaves_nothing_behind_and_every_later_acknowledged_record_replays(tmp_path, monkeypatch,
                                                                                           torn_bytes):
    j = FileJournal(str(tmp_path / "j"))
    j.append(D, "traces", "t", "", b"first")
    _disk_full_after(monkeypatch, torn_bytes)
    with pytest.raises(OSError):
        j.append(D, "traces", "t", "", b"x" * 1000)  # never acknowledged
    j.append(D, "traces", "t", "", b"second")
    j.append(D, "traces", "t", "", b"third")
    j.close()
    again = FileJournal(str(tmp_path / "j"))
    assert [r[5] for r in again.records_after(0)] == [b"first", b"second", b"third"]
    assert again.damaged == 0


def _flip(path, offset_from_record: int, record_index: int) -> None:
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data)) if data[i:i + 4] == journal_mod.MAGIC]
    data[starts[record_index] + offset_from_record] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where,offset", [
    ("a byte of the content type", journal_mod._HEAD.size + 8),
    ("the length field's low byte", 7),
    ("a byte of the body", journal_mod._HEAD.size + 40),
    ("the seq", 12),
])
def test_a_damaged_record_is_quarantined_counted_and_the_records_after_it_still_replay(tmp_path, where, offset,
                                                                                     caplog):
    j = FileJournal(str(tmp_path / "j"))
    for i in range(4):
        j.append(D, "traces", "application/x-protobuf", "gzip", b"body-%d-" % i + b"z" * 64)
    j.close()
    (seg,) = [p for p in (tmp_path / "j").iterdir() if p.suffix == ".seg"]
    _flip(seg, offset, 1)
    with caplog.at_level(logging.ERROR):
        again = FileJournal(str(tmp_path / "j"))
    assert again.damaged == 1
    assert [r[5][:7] for r in again.records_after(0)] == [b"body-0-", b"body-2-", b"body-3-"]
    (q,) = again.quarantined
    assert os.path.exists(q) and str(seg) in caplog.text and q in caplog.text


def test_a_sidecar_starts_over_a_damaged_journal_and_counts_what_it_quarantined(tmp_path):
    from otel_llm_eval.sidecar.server import build

    db = str(tmp_path / "s.db")
    j = FileJournal(db + ".journal")
    for i in range(3):
        j.append(D, "feedback", "application/json", "", b'{"trace_id": "%032x", "name": "x", "value": 1}' % (i + 1))
    j.close()
    (seg,) = [p for p in (tmp_path / "s.db.journal").iterdir() if p.suffix == ".seg"]
    _flip(seg, journal_mod._HEAD.size + 3, 0)  # a byte of the signal name
    sc = build({"plugins": []}, db_path=db, environ={})
    try:
        assert sc.rejected_snapshot().get("journal_damaged") == 1
        assert [r[0] for r in sc._replay] == [2, 3]
    finally:
        sc.store.close()


def test_a_second_process_on_the_same_state_is_refused_with_the_path_and_the_holders_pid(tmp_path):
    first = Store(str(tmp_path / "s.db"))
    try:
        with pytest.raises(StartupError) as e:
            Store(str(tmp_path / "s.db"))
        assert str(tmp_path / "s.db") in str(e.value) and f"pid {os.getpid()}" in str(e.value)
    finally:
        first.close()
    Store(str(tmp_path / "s.db")).close()  # released on close


@pytest.mark.parametrize("case,expect", [
    ("the state file was deleted after some segments were pruned", "NOT restored"),
    ("the state file was deleted and the whole journal is still there", "all 3 journaled requests"),
])
def test_a_start_over_a_missing_state_says_what_the_journal_restored_and_what_it_could_not(tmp_path, case, expect,
                                                                                         caplog):
    from otel_llm_eval.sidecar.server import build

    db = str(tmp_path / "s.db")
    j = FileJournal(db + ".journal", segment_bytes=10)  # one record per segment
    for i in range(3):
        j.append(D, "feedback", "application/json", "", b'{"trace_id": "%032x", "name": "x", "value": 1}' % (i + 1))
    if "pruned" in case:
        j.prune(2)
    j.close()
    with caplog.at_level(logging.WARNING):
        sc = build({"plugins": []}, db_path=db, environ={})
    try:
        assert expect in (sc.restore_report or "") and db in caplog.text
    finally:
        sc.store.close()


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("case", ["no request comes after the old ones", "requests keep coming"])
def test_raw_request_bodies_do_not_outlive_the_journal_age_bound_once_applied(tmp_path, monkeypatch, case):
    clock = _Clock()
    monkeypatch.setattr(journal_mod.time, "monotonic", clock)
    j = FileJournal(str(tmp_path / "j"), max_age_seconds=60)
    j.append(D, "traces", "t", "", b"raw prompt: my password is hunter2")
    assert not j.retire_old_segment(1)  # young: kept
    clock.t += 61
    assert not j.retire_old_segment(0)  # old but not applied yet: kept (it is what a restart replays)
    if case == "requests keep coming":
        j.append(D, "traces", "t", "", b"newer")  # rotates: the old segment is closed
        j.prune(1)
    else:
        assert j.retire_old_segment(1)
    bodies = b"".join(p.read_bytes() for p in (tmp_path / "j").glob("*.seg"))
    assert b"hunter2" not in bodies
    assert [r[5] for r in j.records_after(1)] == ([b"newer"] if case == "requests keep coming" else [])
    j.close()
