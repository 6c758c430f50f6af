"""restore_command of a restored node: WAL from S3, fetched ahead in parallel (walfiles.py says why).

Recovery asks for one file at a time and replays it before asking for the next; fetching the segments
that follow with it, in parallel, makes recovery wait on S3 once a batch instead of once a file. The
spool holds at most one batch and one file more (cloudwal.FILES_PER_JOB x backup.jobs + 1), each file
complete (downloaded aside, then renamed), and is emptied when recovery ends.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import contract
from .node import log
from .walfiles import prefetch_batch, stale_prefetched

SPOOL = Path(contract.RESTORE_SPOOL)


def restore_wal(source: str, server: str, name: str, destination: str) -> int:
    """restore_command `%f %p`: 0 with the file at `destination`, 1 when the archive has no such file."""
    from .cloudwal import batch_size, fetch

    SPOOL.mkdir(exist_ok=True)
    held = [entry.name for entry in SPOOL.iterdir()]
    for stale in stale_prefetched(held, name, batch_size()):
        (SPOOL / stale).unlink(missing_ok=True)
    if not (SPOOL / name).exists():
        wanted = [n for n in prefetch_batch(name, batch_size()) if n not in held]
        outcome = fetch(source, server, wanted, SPOOL)
        if outcome[name] is not None:
            if outcome[name] != "missing":
                log(f"restore: fetching {name} failed: {outcome[name]}")
            return 1
    shutil.copyfile(SPOOL / name, destination)  # kept: recovery may ask for it again (stale_prefetched)
    return 0


def clear_spool() -> None:
    """When recovery is over: files fetched ahead that recovery never asked for."""
    for entry in SPOOL.glob("*"):
        entry.unlink(missing_ok=True)
