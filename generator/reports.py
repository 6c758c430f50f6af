"""The JSON documents of `pgdock-gen ... --json`: every shape in one module, each a pure function of
what the command observed, so tests can build them from plain rows and docs/json.md cannot drift.

Each document carries `format` (FORMAT): a script checks it and notices a change it does not know.
FORMAT goes up only when a field changes meaning or goes away; new fields keep it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backup import BaseBackup, Location
    from .cluster import NodeStatus
    from .contexts import ContextCheck
    from .deploy import Plan
    from .drill import Report
    from .spec import Spec

FORMAT = 1
"""The version of every JSON document pgdock-gen prints (docs/json.md)."""

Doc = dict[str, Any]


def _versioned(doc: Mapping[str, Any]) -> Doc:
    return {"format": FORMAT, **doc}


def dumps(doc: Doc, *, lines: bool = False) -> str:
    """A document as printed: indented, or on one line for line-oriented output (`events --json`)."""
    return json.dumps(doc) if lines else json.dumps(doc, indent=2)


def status(spec: Spec, rows: list[NodeStatus]) -> Doc:
    """`status --json` (and `lab up --json`): the verdict with its reasons, then every member's row."""
    from .cluster import paused, verdict

    found = verdict(spec, rows)
    return _versioned({
        "cluster": spec.cluster, "state": found.state, "exit_code": found.exit_code, "problems": list(found.problems),
        "paused": paused(rows),
        "nodes": [{"name": r.name, "role": r.role, "upstream": r.upstream, "timeline": r.timeline,
                   "lag_bytes": r.lag_bytes, "lag_seconds": r.lag_seconds, "repmgrd": r.repmgrd,
                   "reachable": r.reachable, "registered": r.registered, "detail": r.detail,
                   "archiving": r.archiving, "location": r.location, "priority": r.priority,
                   "paused": r.paused} for r in rows]})


def event(entry: Mapping[str, Any]) -> Doc:
    """One line of `events --json`: an event as the node's agent logged it, with the documented keys only."""
    return _versioned({"time": entry.get("time") or None, "node": entry["node"], "node_id": entry.get("node_id"),
                       "event": entry.get("event", ""), "success": bool(entry.get("success")),
                       "details": str(entry.get("details", ""))})


def backups(loc: Location, found: Iterable[BaseBackup], wal: tuple[str, dt.datetime] | None) -> Doc:
    """`backup list --json`: where, the base backups oldest first, and the newest archived WAL."""
    return _versioned({"location": loc.url, "server": loc.server, "backups": [asdict(b) for b in found],
                       "newest_wal": wal and {"name": wal[0], "stored": wal[1].isoformat()}})


def drill(report: Report) -> Doc:
    """`drill --json`: the drill's report, field for field."""
    return _versioned(asdict(report))


def history(node: str, entries: Iterable[Mapping[str, Any]]) -> Doc:
    """`history --json`: the deployments recorded on a node, oldest first (older records lack the newer keys)."""
    return _versioned({"node": node, "deployments": [
        {"version": e["version"], "time": e["time"], "operator": e["operator"], "config": e["config"],
         "spec": e["spec"], "compose": e.get("compose"), "rollback": bool(e.get("rollback")),
         "pending_restart": list(e.get("pending_restart") or [])} for e in entries]})


def contexts(checks: Iterable[ContextCheck]) -> Doc:
    """`contexts --json`: each node's Docker context and whether its engine answered."""
    return _versioned({"nodes": [asdict(c) for c in checks]})


def validate(path: Path, spec: Spec | None, problems: Iterable[str] = ()) -> Doc:
    """`validate --json`: a valid spec's summary and warnings, or (spec None) the problems that make it invalid."""
    return _versioned({
        "file": str(path), "valid": spec is not None, "problems": list(problems),
        "warnings": list(spec.warnings) if spec else [], "cluster": spec and spec.cluster,
        "data_nodes": spec and len(spec.nodes), "witness": spec and spec.witness and spec.witness.name,
        "pg_version": spec and spec.pg_version, "replication_mode": spec and spec.replication_mode})


def deploy_plan(plans: Iterable[Plan]) -> Doc:
    """`deploy --dry-run --json`: for each chosen node, what a deploy would do there."""
    return _versioned({"nodes": [{"node": p.node.name, "context": p.context, "version": p.version,
                                  "config": p.config, "first": p.first, "steps": list(p.steps)} for p in plans]})
