"""archive_command: WAL to S3 (barman-cloud or pgBackRest), and a bound on what an outage may keep on disk.

PostgreSQL keeps every WAL file its archive_command has not stored; during an S3 outage that fills
the disk and PostgreSQL stops (PANIC). pgdock bounds it instead: once pg_wal holds more than
postgres.max_wal_keep and storing failed, the file is given up (reported stored), the gap is recorded
(ARCHIVE_GAP, event `pgdock_wal_dropped`, `status` says so) and point-in-time recovery into the gap
is impossible until the next base backup, after which the backup sidecar clears the record. Losing
recovery points is bad; a primary that stops taking writes is worse.

Files go in batches (walfiles.py): the one PostgreSQL asks for and the next ready ones, in parallel;
those stored ahead leave a marker in the spool and are answered from it. A marker is written only after
S3 accepted the upload, so no file is reported stored before it is.

The values reach barman-cloud as an argument list, never through a shell: archive_command itself
carries no spec value.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from . import contract, events, pgbackrest
from .node import env, log
from .walfiles import archive_batch, stale_markers

SPOOL = Path(contract.ARCHIVE_SPOOL)


def wal_bytes(pg_wal: Path) -> int:
    """The WAL pg_wal holds for the archive: every file but those already stored or given up (marked done,
    which the next checkpoint recycles). Counting those too would give up the newest files as well."""
    done = {marker.name.removesuffix(".done") for marker in (pg_wal / "archive_status").glob("*.done")}
    return sum(entry.stat().st_size for entry in pg_wal.iterdir() if entry.is_file() and entry.name not in done)


def give_up(stored: bool, held: int, bound: int) -> bool:
    """Whether a WAL file is reported stored although it was not: only when pg_wal holds more than the bound."""
    return not stored and held > bound


def ready_files(pg_wal: Path) -> list[str]:
    """The files PostgreSQL waits to see archived."""
    return [marker.name.removesuffix(".ready") for marker in (pg_wal / "archive_status").glob("*.ready")]


def _store(path: str, pg_wal: Path, engine: str) -> bool:
    """Stores `path` with the next ready files; marks those stored ahead. True when `path` is stored.
    pgBackRest, when it is the engine, does the batching itself (archive-async)."""
    if engine == "pgbackrest":
        error = pgbackrest.push(path)
        if error:
            log(f"archive: storing {Path(path).name} failed: {error}")
        return error is None
    from .cloudwal import batch_size, push

    ready = ready_files(pg_wal)
    SPOOL.mkdir(exist_ok=True)
    for stale in stale_markers([m.name for m in SPOOL.iterdir()], ready):
        (SPOOL / stale).unlink(missing_ok=True)
    name = Path(path).name
    batch = [str(Path(path).parent / n) for n in archive_batch(name, ready, batch_size())]
    outcome = push(batch)
    for other in batch[1:]:
        if outcome[other] is None:
            (SPOOL / Path(other).name).touch()
    for failed in (p for p, error in outcome.items() if error is not None):
        log(f"archive: storing {Path(failed).name} failed: {outcome[failed]}")
    return outcome[path] is None


def stored_ahead(name: str) -> bool:
    """Whether an earlier batch stored `name` (its marker goes: PostgreSQL is told once)."""
    marker = SPOOL / name
    if not marker.exists():
        return False
    marker.unlink()
    return True


def clear_spool() -> None:
    """At container start and when a node stops being primary: markers speak only for this run's files."""
    for marker in SPOOL.glob("*"):
        marker.unlink(missing_ok=True)


def archive(path: str, engine: str = "barman") -> int:
    """archive_command `%p [ENGINE]` (%p relative to the data directory; the engine as backup.engine names it,
    barman when absent): 0 when stored, or given up past the bound."""
    if stored_ahead(Path(path).name):
        return 0
    gap = Path(contract.ARCHIVE_GAP)
    bound = int(env(contract.ENV_MAX_WAL_KEEP_MB)) * 1024 * 1024
    pg_wal = Path(contract.PGDATA) / "pg_wal"
    # once a gap is open (the store is known to be down) the excess goes without another slow attempt
    stored = False if gap.exists() and wal_bytes(pg_wal) > bound else _store(path, pg_wal, engine)
    if stored:
        return 0
    held = wal_bytes(pg_wal)
    if not give_up(stored, held, bound):
        return 1
    if not gap.exists():
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        gap.write_text(json.dumps({"since": since, "first": Path(path).name}))
        events.record(contract.EVENT_WAL_DROPPED, f"archiving failed with {held // 2**20} MB in pg_wal (bound "
                      f"{bound // 2**20} MB): WAL from {Path(path).name} on is given up; point-in-time recovery "
                      "into this gap is impossible until the next base backup")
    log(f"archive: gave up {Path(path).name} ({held // 2**20} MB in pg_wal, bound {bound // 2**20} MB)")
    return 0


def gap_note() -> str | None:
    """What status shows while the archive has a gap (None: it has none)."""
    try:
        gap = json.loads(Path(contract.ARCHIVE_GAP).read_text())
    except (OSError, ValueError):
        return None
    return (f"gap since {gap.get('since', '?')} (WAL from {gap.get('first', '?')} given up past max_wal_keep): "
            "take a base backup")
