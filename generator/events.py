"""`pgdock-gen events`: every node's event log (repmgr events, hook results, fencing) in time order.

Each node's pgdock-agent appends JSON lines to its event log (contract.EVENTS, on
the data volume, so the log survives restarts and rewinds); here they are read
through Docker and merged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import contract
from .cluster import Running, Target, json_lines
from .spec import Spec

EVENTS_FILE = str(contract.EVENTS)


def _read(target: Target, tail: int | None = None) -> list[dict[str, Any]]:
    from python_on_whales.exceptions import DockerException

    try:
        command = ["tail", "-n", str(tail), EVENTS_FILE] if tail else ["cat", EVENTS_FILE]
        text = target.client.execute(target.container, command)
    except DockerException:
        return [{"time": "", "node": target.node.name, "event": "unreachable", "success": False,
                 "details": f"cannot read {EVENTS_FILE} from {target.container}"}]
    # the file is the node's own, whatever name the writing process had in its environment
    return [event | {"node": target.node.name} for event in json_lines(text, f"{target.node.name}: {EVENTS_FILE}")]


def collect(running: Running, tail: int | None = None) -> list[dict[str, Any]]:
    """Every member's events in time order; with `tail`, only each member's newest `tail` (what a
    refreshing view needs, without reading whole logs every time)."""
    with ThreadPoolExecutor(8) as pool:
        found = [event for events in pool.map(lambda t: _read(t, tail), running.targets()) for event in events]
    return sorted(found, key=lambda e: (str(e.get("time") or ""), e["node"]))


def table(spec: Spec, events: list[dict[str, Any]]):
    from rich.table import Table

    out = Table(title=f"events of cluster {spec.cluster}", title_justify="left")
    for column in ("time", "node", "event", "ok", "details"):
        out.add_column(column)
    for e in events:
        out.add_row(str(e.get("time", ""))[:23], e["node"], str(e.get("event", "")),
                    "yes" if e.get("success") else "NO", str(e.get("details", "")),
                    style="" if e.get("success") else "red")
    return out
