"""This node's facts in Prometheus' text exposition format (version 0.0.4), for `GET /metrics`.

Written by hand rather than with prometheus_client: the image has no python3-prometheus-client
(only python3, psycopg 3, boto3 and croniter), and the agent adds no packages to it; the format
is a few lines of text (`# HELP`, `# TYPE`, `name{label="value"} number`), built here from a
`health.Facts` without any I/O, so it is tested as plain strings.

The node's name and cluster are not labels here: monitoring/prometheus.yml attaches them to each
target, so they are on `up` too and an alert can tell a node that answers nothing from one whose
PostgreSQL is down. Values that are unknown (a lag on a primary, an archive on a standby) are left
out rather than exported as 0, so an alert never fires on a value nobody measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .health import Facts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = ("primary", "standby", "witness", "down")
Sample = tuple[dict[str, str], float | int | bool | None]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    """gauge or counter."""
    help: str
    samples: tuple[Sample, ...]


def _one(value: float | int | bool | None) -> tuple[Sample, ...]:
    return (({}, value),)


def _node_metrics(facts: Facts) -> list[Metric]:
    return [
        Metric("pgdock_postgres_up", "gauge", "PostgreSQL answered a query", _one(facts.answers)),
        Metric("pgdock_role", "gauge", "the node's role now: 1 for the current one",
               tuple(({"role": role}, role == facts.role) for role in ROLES)),
        Metric("pgdock_writable_primary", "gauge", "GET /primary answers 200: a writable, unfenced primary",
               _one(facts.writable_primary)),
        Metric("pgdock_timeline", "gauge", "PostgreSQL's timeline", _one(facts.timeline)),
        Metric("pgdock_repmgrd_running", "gauge", "repmgrd runs on the node", _one(facts.repmgrd)),
        Metric("pgdock_fenced", "gauge", "the agent fences, steps down or refuses this node", _one(facts.fenced)),
        Metric("pgdock_paused", "gauge", "maintenance mode (pgdock-gen pause): no automatic failover",
               _one(facts.paused)),
        Metric("pgdock_pooler_up", "gauge", "this node's PgBouncer accepts connections (absent: no pooler)",
               _one(facts.pooler)),
        Metric("pgdock_pooler_paused", "gauge", "a switchover paused this node's PgBouncer: new transactions wait",
               _one(facts.pooler_paused if facts.pooler is not None else None)),
    ]


def _replication_metrics(facts: Facts) -> list[Metric]:
    standby = facts.role == "standby"
    replicas = facts.replicas
    return [
        Metric("pgdock_streaming", "gauge", "a standby's WAL receiver streams from a primary",
               _one(facts.streaming if standby else None)),
        Metric("pgdock_replication_lag_bytes", "gauge", "a standby's WAL received but not yet replayed",
               _one(facts.lag_bytes if standby else None)),
        Metric("pgdock_replication_lag_seconds", "gauge",
               "age of a standby's last replayed transaction while replay is behind (0 when caught up)",
               _one(facts.lag_seconds if standby else None)),
        Metric("pgdock_replica_streaming", "gauge", "on the primary: a standby connected and streaming",
               tuple(({"replica": r.name}, r.streaming) for r in replicas)),
        Metric("pgdock_replica_lag_bytes", "gauge", "on the primary: WAL written but not yet replayed by a standby",
               tuple(({"replica": r.name}, r.lag_bytes) for r in replicas)),
        Metric("pgdock_replica_lag_seconds", "gauge", "on the primary: a standby's replay lag",
               tuple(({"replica": r.name}, r.lag_seconds) for r in replicas)),
    ]


def _backup_metrics(facts: Facts) -> list[Metric]:
    archive = facts.archive
    return [
        Metric("pgdock_wal_archive_failing", "gauge", "on the primary: the last attempt to archive WAL failed",
               _one(archive.failing if archive else None)),
        Metric("pgdock_wal_archive_pending_files", "gauge", "on the primary: WAL files waiting to be archived",
               _one(archive.pending if archive else None)),
        Metric("pgdock_wal_last_archived_age_seconds", "gauge", "on the primary: seconds since WAL was last archived",
               _one(archive.last_archived_age if archive else None)),
        Metric("pgdock_wal_archive_gap", "gauge",
               "WAL was given up during an archive outage: point-in-time recovery has a gap until the next base "
               "backup", _one(archive.gap if archive else None)),
        Metric("pgdock_last_base_backup_age_seconds", "gauge",
               "seconds since this node's backup sidecar finished a base backup (absent: none known here)",
               _one(facts.backup_age)),
        Metric("pgdock_events_total", "counter", "events in this node's event log (pgdock-gen events), by name",
               tuple(({"event": name}, count) for name, count in facts.events)),
    ]


def metrics(facts: Facts) -> list[Metric]:
    """Every metric of the node, with the samples known now."""
    return _node_metrics(facts) + _replication_metrics(facts) + _backup_metrics(facts)


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _lines(metric: Metric) -> Iterable[str]:
    known = [(labels, value) for labels, value in metric.samples if value is not None]
    if not known:
        return
    yield f"# HELP {metric.name} {metric.help.replace(chr(92), chr(92) * 2)}"
    yield f"# TYPE {metric.name} {metric.kind}"
    for labels, value in known:
        text = ",".join(f'{key}="{_label_value(val)}"' for key, val in labels.items())
        yield f"{metric.name}{{{text}}} {_number(value)}" if text else f"{metric.name} {_number(value)}"


def exposition(facts: Facts) -> str:
    """The text `GET /metrics` answers."""
    return "".join(line + "\n" for metric in metrics(facts) for line in _lines(metric))
