"""`pgdock-gen status --watch`: the status table and the last events, redrawn until Ctrl-C.

What an operator keeps open during a switchover, a drill or an incident: the same table `status` prints
(lag included) with the cluster's latest events under it, so a promotion, a fence or a standby falling
behind shows up within one refresh. Rendering (`view`) is pure and tested on rows and events; `run` only
gathers them and hands them to rich's Live display.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import cluster, events
from .spec import Spec

INTERVAL_SECONDS = 2.0
LAST_EVENTS = 8
"""Events shown under the table: enough to follow a failover (disconnect, promote, follow, hooks)."""


def view(spec: Spec, rows: list[cluster.NodeStatus], found: list[dict[str, Any]], at: datetime,
         last: int = LAST_EVENTS):
    """The status table, the `last` newest events (newest at the bottom, as `events` prints them) and when
    this was looked at, as one rich renderable."""
    from rich.console import Group
    from rich.text import Text

    newest = events.table(spec, found[-last:] if last else [])
    newest.title = f"last {min(last, len(found))} of {len(found)} events"
    return Group(cluster.status_table(spec, rows), newest,
                 Text(f"as of {at.strftime('%H:%M:%S')} UTC, every {INTERVAL_SECONDS:.0f} s; Ctrl-C to stop",
                      style="dim"))


def run(running: cluster.Running, *, interval: float = INTERVAL_SECONDS, last: int = LAST_EVENTS,
        sleep: Callable[[float], None] = time.sleep) -> int:
    """Redraws `view` every `interval` seconds until Ctrl-C; returns the last verdict's exit code."""
    from rich.console import Console
    from rich.live import Live

    spec = running.spec
    rows = running.status()
    with Live(view(spec, rows, events.collect(running, tail=last), datetime.now(UTC), last),
              console=Console(), auto_refresh=False) as live:
        try:
            while True:
                sleep(interval)
                rows = running.status()
                live.update(view(spec, rows, events.collect(running, tail=last), datetime.now(UTC), last),
                            refresh=True)
        except KeyboardInterrupt:
            pass
    return cluster.verdict(spec, rows).exit_code
