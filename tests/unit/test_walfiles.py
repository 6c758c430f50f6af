"""walfiles: which WAL files an archive batch stores and a restore fetches ahead (issue 14), as tables."""

from __future__ import annotations

import pytest
from pgdock_agent import walfiles

S = "0000000100000000000000"


@pytest.mark.parametrize(("name", "after"), [
    ("000000010000000000000001", "000000010000000000000002"),
    ("0000000100000000000000FF", "000000010000000100000000"),  # the last segment of a log: the next log's first
    ("00000002000000AB000000FE", "00000002000000AB000000FF"),
])
def test_next_segment(name: str, after: str) -> None:
    assert walfiles.next_segment(name) == after


@pytest.mark.parametrize(("name", "ready", "jobs", "batch"), [
    (f"{S}01", [], 4, [f"{S}01"]),
    (f"{S}01", [f"{S}03", f"{S}01", f"{S}02"], 4, [f"{S}01", f"{S}02", f"{S}03"]),
    (f"{S}01", [f"{S}05", f"{S}04", f"{S}03", f"{S}02"], 3, [f"{S}01", f"{S}02", f"{S}03"]),
    (f"{S}01", [f"{S}02"], 1, [f"{S}01"]),
    (f"{S}01", [f"{S}02"], 0, [f"{S}01"]),  # never less than the file asked for
    ("00000002.history", [f"{S}07.partial", "000000020000000000000007"], 3,
     ["00000002.history", f"{S}07.partial", "000000020000000000000007"]),
])
def test_archive_batch_is_the_asked_file_then_the_oldest_ready(name: str, ready: list[str], jobs: int,
                                                               batch: list[str]) -> None:
    assert walfiles.archive_batch(name, ready, jobs) == batch


@pytest.mark.parametrize(("name", "jobs", "batch"), [
    (f"{S}0A", 3, [f"{S}0A", f"{S}0B", f"{S}0C"]),
    (f"{S}0A", 1, [f"{S}0A"]),
    ("00000003.history", 4, ["00000003.history"]),  # asked for once, out of order: alone
    (f"{S}0A.partial", 4, [f"{S}0A.partial"]),
])
def test_prefetch_batch_follows_the_timeline(name: str, jobs: int, batch: list[str]) -> None:
    assert walfiles.prefetch_batch(name, jobs) == batch


def test_stale_markers_are_those_postgres_no_longer_waits_for() -> None:
    assert walfiles.stale_markers([f"{S}01", f"{S}02", f"{S}09"], [f"{S}02", f"{S}03"]) == [f"{S}01", f"{S}09"]


@pytest.mark.parametrize(("name", "before"), [
    ("000000010000000000000002", "000000010000000000000001"),
    ("000000010000000100000000", "0000000100000000000000FF"),
])
def test_previous_segment(name: str, before: str) -> None:
    assert walfiles.previous_segment(name) == before
    assert walfiles.next_segment(before) == name


def test_the_restore_spool_keeps_what_recovery_asks_next_and_the_last_segment_replayed() -> None:
    held = [f"{S}01", f"{S}02", f"{S}03", f"{S}04", f"{S}05.part", f"{S}09"]
    assert walfiles.stale_prefetched(held, f"{S}03", 2) == [f"{S}01", f"{S}05.part", f"{S}09"]
    assert walfiles.stale_prefetched(held, "00000002.history", 2) == []  # history asks keep the window
