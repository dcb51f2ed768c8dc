"""The append-only request journal: replay after the applied seq, torn tails, pruning."""

from __future__ import annotations

import os

from otel_llm_eval.sidecar.ingest.journal import FileJournal

D = b"\x01" * 32


def test_records_after_the_applied_seq_are_replayed_in_order_with_their_fields(tmp_path):
    j = FileJournal(str(tmp_path / "j"))
    seqs = [j.append(D, "traces", "application/x-protobuf", "gzip", b"body-%d" % i) for i in range(5)]
    j.close()
    assert seqs == [1, 2, 3, 4, 5]
    again = FileJournal(str(tmp_path / "j"))
    assert again.last_seq == 5
    assert again.records_after(3) == [(4, D, "traces", "application/x-protobuf", "gzip", b"body-3"),
                                      (5, D, "traces", "application/x-protobuf", "gzip", b"body-4")]
    assert again.append(D, "logs", "application/json", "", b"{}") == 6  # a new segment, seqs go on


def test_a_torn_last_record_is_ignored_it_was_never_acknowledged(tmp_path):
    j = FileJournal(str(tmp_path / "j"))
    j.append(D, "traces", "t", "", b"complete")
    j.append(D, "traces", "t", "", b"x" * 1000)
    j.close()
    (seg,) = os.listdir(tmp_path / "j")
    path = tmp_path / "j" / seg
    path.write_bytes(path.read_bytes()[:-10])  # the process died inside write()
    again = FileJournal(str(tmp_path / "j"))
    assert [r[5] for r in again.records_after(0)] == [b"complete"]


def test_segments_are_deleted_once_every_record_in_them_is_applied_but_never_the_current_one(tmp_path):
    j = FileJournal(str(tmp_path / "j"), segment_bytes=100)
    for i in range(6):
        j.append(D, "traces", "t", "", b"y" * 80)  # one record per segment
    assert len(os.listdir(tmp_path / "j")) == 6
    j.prune(4)
    assert [r[0] for r in j.records_after(0)] == [5, 6]
    j.prune(6)
    assert [r[0] for r in j.records_after(0)] == [6]  # the segment being written stays


def test_seqs_never_go_below_what_the_state_applied_even_if_the_journal_directory_is_lost(tmp_path):
    j = FileJournal(str(tmp_path / "fresh"), min_seq=41)
    assert j.append(D, "traces", "t", "", b"z") == 42
    assert [r[0] for r in j.records_after(41)] == [42]
