"""Which WAL files move together: the decisions behind parallel archiving and restore prefetch.

PostgreSQL hands archive_command and restore_command one file at a time and waits for each. Run one
barman-cloud process per file and every 16 MB segment pays for a Python start and a boto3 import
(~0.7 s here), so the archive fell 79 s behind a `pgbench -i` and a point-in-time restore replayed
one download at a time. pgdock moves a batch instead (as pgBackRest's archive-async and CloudNativePG's
wal.maxParallel do): the file asked for plus the next ones, in parallel, in one process. Files stored
ahead are remembered by an empty marker in the archive spool, and reported stored when PostgreSQL asks
for them; files fetched ahead wait in the restore spool. Only names are decided here (pure functions,
unit-tested); archive.py and restore_wal.py do the moving.
"""

from __future__ import annotations

import re

SEGMENT = re.compile(r"^[0-9A-F]{24}$")
"""A WAL segment's name: timeline, log and segment number, 8 hex digits each."""
SEGMENTS_PER_LOG = 0x100
"""Segment numbers per log with the default 16 MB segments. With larger segments a guess past the end
of a log names a file that does not exist: that prefetch finds nothing, and nothing else changes."""


def next_segment(name: str) -> str:
    """The segment after `name` on the same timeline."""
    timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16) + 1
    if seg == SEGMENTS_PER_LOG:
        log, seg = log + 1, 0
    return f"{timeline:08X}{log:08X}{seg:08X}"


def archive_batch(name: str, ready: list[str], size: int) -> list[str]:
    """`name` (asked for by PostgreSQL) and up to size - 1 other files PostgreSQL has marked ready, oldest
    first as PostgreSQL itself would ask for them (history files sort before their timeline's segments)."""
    return [name] + sorted(r for r in set(ready) if r != name)[: max(size, 1) - 1]


def prefetch_batch(name: str, size: int) -> list[str]:
    """`name` and, for a segment, the size - 1 segments that follow it on its timeline (recovery asks for
    them next). History and partial files are fetched alone: they are asked for once, out of order."""
    batch = [name]
    while SEGMENT.match(name) and len(batch) < max(size, 1):
        batch.append(next_segment(batch[-1]))
    return batch


def stale_markers(markers: list[str], ready: list[str]) -> list[str]:
    """Markers of files PostgreSQL no longer waits for (it archived them, or a restart dropped them): they
    go, so the spool never grows and an old marker never stands for a newer file of the same name."""
    waiting = set(ready)
    return sorted(m for m in markers if m not in waiting)


def previous_segment(name: str) -> str:
    """The segment before `name` on the same timeline."""
    timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16) - 1
    if seg < 0:
        log, seg = log - 1, SEGMENTS_PER_LOG - 1
    return f"{timeline:08X}{log:08X}{seg:08X}"


def stale_prefetched(held: list[str], name: str, size: int) -> list[str]:
    """Files fetched ahead that recovery, now asking for segment `name`, will not ask for next: they go, so
    the restore spool holds at most size + 1 files (16 MB each) whatever recovery does. The segment before
    `name` stays: at the end of the archive recovery asks for the last segment it replayed once more (to
    start the new timeline with it). Asking for a history file or a partial file changes nothing."""
    if not SEGMENT.match(name):
        return []
    keep = set(prefetch_batch(name, size)) | {previous_segment(name)}
    return sorted(h for h in held if h not in keep)
