"""Gathers the health API's facts on this node: one local query, files on the data volume, the supervisor.

It reuses what `status.py` asks PostgreSQL (NODE_STATE_SQL, REPLICAS_SQL, the archiver), so the API
and `pgdock-gen status` never disagree about a role or a lag. Every query runs under a short
statement_timeout on one connection: a hung PostgreSQL makes the API answer 503 within seconds, never
hold a load balancer's check open.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg

from . import contract, postgres
from .health import Facts, Replica
from .node import env
from .peers import peers
from .pooler import accepting
from .status import NODE_STATE_SQL, REPLICAS_SQL, archiver, repmgrd_running

STATEMENT_TIMEOUT_MS = 2000
BACKUP_LOG = Path(contract.BACKUP_LOG)
BOOTSTRAPPING = Path(contract.BOOTSTRAPPING)


def _files(fenced: bool) -> dict:
    """Facts from files and processes: cheap, true whether or not PostgreSQL answers."""
    return {"node": env(contract.ENV_NODE), "fenced": fenced, "held": postgres.PG_HELD.exists(),
            "bootstrapping": BOOTSTRAPPING.exists(), "paused": postgres.PAUSED.exists(),
            "repmgrd": repmgrd_running()}


def _replicas(conn: psycopg.Connection) -> tuple[Replica, ...]:
    return tuple(Replica(name, state == "streaming", lag_bytes, lag_seconds, sync == "sync")
                 for name, state, lag_bytes, lag_seconds, sync in conn.execute(REPLICAS_SQL).fetchall())


def _postgres(detailed: bool) -> dict:
    """PostgreSQL's answer on one connection; {"answers": False} when it gives none in time."""
    witness = env(contract.ENV_ROLE) == "witness"
    try:
        with postgres.local_conn(options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}") as conn:
            in_recovery, timeline, sender, lag_bytes, lag_seconds, _, _ = conn.execute(NODE_STATE_SQL).fetchone()
            if witness:
                return {"answers": True, "role": "witness"}
            found = {"answers": True, "role": "standby" if in_recovery else "primary", "timeline": timeline,
                     "streaming": sender is not None, "lag_bytes": lag_bytes, "lag_seconds": lag_seconds,
                     "upstream": {p.address: p.name for p in peers()}.get(sender, sender)}
            if detailed and not in_recovery:
                found |= {"replicas": _replicas(conn), "archive": archiver(conn)}
            return found
    except psycopg.Error:
        return {"answers": False}


def backup_age(now: float, log: Path = BACKUP_LOG) -> float | None:
    """Seconds since the last base backup this node's sidecar finished: the leading timestamp of the backup
    log's last line (the sidecar appends one per finished backup); None when there is none to read."""
    import datetime as dt

    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            lines = handle.read().decode("utf-8", "replace").splitlines()
        moment = dt.datetime.fromisoformat(next(line for line in reversed(lines) if line.strip()).split()[0])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, now - moment.timestamp())


class EventCounts:
    """How often each event name is in the event log, read incrementally (the log only grows: the API reads
    each line once, not the whole log per scrape); a log that shrank is counted again from the start."""

    def __init__(self, log: Path = Path(contract.EVENTS)) -> None:
        self.log = log
        self.offset = 0
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self) -> tuple[tuple[str, int], ...]:
        with self.lock:
            try:
                size = self.log.stat().st_size
                if size < self.offset:
                    self.offset, self.counts = 0, Counter()
                with self.log.open("rb") as handle:
                    handle.seek(self.offset)
                    chunk = handle.read(size - self.offset)
            except OSError:
                return tuple(sorted(self.counts.items()))
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is counted next time
            self.offset += len(complete)
            for line in complete.splitlines():
                try:
                    self.counts[str(json.loads(line)["event"])] += 1
                except (ValueError, KeyError, TypeError):
                    continue
            return tuple(sorted(self.counts.items()))


def gatherer(fenced: Callable[[], bool], events: Callable[[], tuple[tuple[str, int], ...]] | None = None
             ) -> Callable[[bool], Facts]:
    """The API's facts function: `fenced` asks the supervisor whether its last decision stops this node;
    `detailed` adds what only /metrics shows (replicas, archiving, backups, events)."""
    counts = events or EventCounts()

    def facts(detailed: bool) -> Facts:
        found = _files(fenced()) | {"role": "down"}
        if postgres.running():
            found |= _postgres(detailed)
        if detailed:
            pooler_up = accepting()
            found |= {"backup_age": backup_age(time.time()), "events": counts(), "pooler": pooler_up,
                      "pooler_paused": pooler_up is not None and os.path.exists(contract.POOLER_PAUSED)}
        return Facts(**found)

    return facts
