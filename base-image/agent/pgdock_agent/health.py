"""The health API's answers, decided from observed facts alone: no I/O, no clock.

`observe.py` gathers a `Facts` (PostgreSQL's answer, the supervisor's last decision, files on the
data volume), the HTTP server (`api.py`) calls a verdict and sends what comes back. Keeping the
verdicts pure is what lets every rule be tested as a table (`tests/unit/test_health.py`), the same
split as `decide.py` and the supervisor.

What a load balancer relies on:

- `/primary` answers 200 only on a node whose PostgreSQL answers as a writable primary (not in
  recovery, not the witness), whose supervisor is not fencing it, stepping it down or refusing
  it, that nobody stopped on purpose (a switchover's repmgr, an operator) and whose first start
  has finished. Everything else is 503, with the reason as the body.
- `/replica` answers 200 on a standby whose WAL receiver streams from a primary, within an
  optional `?lag=` bound: bytes (`?lag=1048576`, `?lag=16MB`: received but not yet replayed) or
  seconds (`?lag=10s`: how old the last replayed transaction is while replay is behind).
- `/health` answers 200 whenever PostgreSQL answers a query, whatever its role.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import NamedTuple

OK = 200
UNAVAILABLE = 503
BAD_REQUEST = 400


class Verdict(NamedTuple):
    code: int
    reason: str


@dataclass(frozen=True)
class Archive:
    """continuous archiving as the primary's pg_stat_archiver and pg_wal/archive_status show it."""

    failing: bool
    """The last attempt to store a WAL file failed (later than the last success)."""
    pending: int
    """WAL files waiting to be stored (.ready)."""
    last_archived_age: float | None
    """Seconds since a WAL file was last stored (None: never since the statistics were reset)."""
    gap: bool = False
    """WAL was given up during an outage (archive.py): point-in-time recovery has a hole until the next base backup."""
    failing_since: dt.datetime | None = None
    """When the last attempt failed (status shows it)."""


@dataclass(frozen=True)
class Replica:
    """One standby as the primary's pg_stat_replication shows it."""

    name: str
    streaming: bool
    lag_bytes: int | None
    lag_seconds: float | None
    sync: bool = False


@dataclass(frozen=True)
class Facts:
    """What the API knows of this node at one moment."""

    node: str
    role: str
    """primary, standby, witness (from the env file: its PostgreSQL is never in recovery) or down."""
    answers: bool
    """PostgreSQL answered a query just now."""
    fenced: bool = False
    """The supervisor's last decision stops this node (fence, step down, refuse): it may still answer a moment."""
    held: bool = False
    """PostgreSQL was stopped on purpose (a switchover's repmgr, an operator) and stays down until started."""
    bootstrapping: bool = False
    """A first start (initdb, roles, database, registration) has not finished."""
    paused: bool = False
    repmgrd: bool = False
    timeline: int | None = None
    streaming: bool = False
    """A standby's WAL receiver streams from a primary."""
    upstream: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    replicas: tuple[Replica, ...] = ()
    archive: Archive | None = None
    """Only on a primary with archive_mode on."""
    backup_age: float | None = None
    """Seconds since the last base backup this node's sidecar took (None: none known here)."""
    events: tuple[tuple[str, int], ...] = ()
    """How often each event name is in this node's event log, sorted by name."""
    pooler: bool | None = None
    """This node's PgBouncer accepts connections (None: no pooler on this node)."""
    pooler_paused: bool = False
    """A switchover paused the pool (contract.POOLER_PAUSED) and it has not resumed yet."""

    @property
    def writable_primary(self) -> bool:
        return primary(self).code == OK


@dataclass(frozen=True)
class LagBound:
    """`?lag=`: at most `limit` bytes (`seconds` False) or seconds behind."""

    limit: float
    seconds: bool = False


_LAG = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|MB|GB|TB|ms|s)?\s*$")
_UNITS = {None: 1, "B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "s": 1, "ms": 0.001}


def parse_lag(text: str) -> LagBound:
    """`?lag=`'s value: a number of bytes, with PostgreSQL's units (kB, MB, GB, TB: powers of 1024), or of
    seconds with `s` or `ms`. Raises ValueError for anything else (the API answers 400)."""
    match = _LAG.match(text)
    if not match:
        raise ValueError(f"lag={text!r}: use bytes (1048576, 16MB) or seconds (10s, 500ms)")
    number, unit = match.groups()
    return LagBound(float(number) * _UNITS[unit], seconds=unit in ("s", "ms"))


def _down(facts: Facts) -> Verdict | None:
    """The reasons that rule out both /primary and /replica, in the order an operator would look."""
    if not facts.answers:
        return Verdict(UNAVAILABLE, f"{facts.node}: PostgreSQL does not answer")
    if facts.fenced:
        return Verdict(UNAVAILABLE, f"{facts.node}: the agent is fencing or stopping this node")
    if facts.held:
        return Verdict(UNAVAILABLE, f"{facts.node}: PostgreSQL is being stopped on purpose (switchover, operator)")
    if facts.bootstrapping:
        return Verdict(UNAVAILABLE, f"{facts.node}: its first start has not finished")
    return None


def primary(facts: Facts) -> Verdict:
    """/primary: 200 only on the writable, unfenced primary."""
    if down := _down(facts):
        return down
    if facts.role != "primary":
        return Verdict(UNAVAILABLE, f"{facts.node}: {facts.role}, not the primary")
    return Verdict(OK, f"{facts.node}: writable primary on timeline {facts.timeline}")


def replica(facts: Facts, bound: LagBound | None = None) -> Verdict:
    """/replica: 200 on a streaming standby, within `bound` when one is given (an unknown lag is out of bound)."""
    if down := _down(facts):
        return down
    if facts.role != "standby":
        return Verdict(UNAVAILABLE, f"{facts.node}: {facts.role}, not a standby")
    if not facts.streaming:
        return Verdict(UNAVAILABLE, f"{facts.node}: standby not streaming from a primary")
    lag = f"lag {facts.lag_bytes} bytes, {facts.lag_seconds} s"
    if bound is not None:
        measured = facts.lag_seconds if bound.seconds else facts.lag_bytes
        if measured is None or measured > bound.limit:
            unit = "s" if bound.seconds else "bytes"
            return Verdict(UNAVAILABLE, f"{facts.node}: {lag}, over the bound of {bound.limit:g} {unit}")
    return Verdict(OK, f"{facts.node}: standby streaming from {facts.upstream}, {lag}")


def health(facts: Facts) -> Verdict:
    """/health: 200 whenever PostgreSQL answers (a standby, the witness, a paused node alike)."""
    if not facts.answers:
        return Verdict(UNAVAILABLE, f"{facts.node}: PostgreSQL does not answer")
    return Verdict(OK, f"{facts.node}: PostgreSQL answers as {facts.role}")


def pooler(node: str, accepting: bool | None) -> Verdict:
    """/pooler: 200 while this node's PgBouncer accepts connections (HAProxy's check with `via_pooler`: a pooler
    forwards to the primary wherever it is, so any accepting one will do); 503 on a node without one."""
    if accepting is None:
        return Verdict(UNAVAILABLE, f"{node}: no pooler on this node")
    if not accepting:
        return Verdict(UNAVAILABLE, f"{node}: PgBouncer does not accept connections")
    return Verdict(OK, f"{node}: PgBouncer accepts connections")
