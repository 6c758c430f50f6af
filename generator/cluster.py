"""Looking at and talking to a running cluster, lab or real, through Docker.

Every node is reached the same way: its Docker engine (a context in production,
the local engine in the lab) and its container `<cluster>-<node>`. Nothing needs
a network path from the operator to PostgreSQL, and no superuser logs in remotely.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import contract, docker, exits
from .errors import PgdockError
from .spec import Node, Spec

if TYPE_CHECKING:
    from python_on_whales import DockerClient


@dataclass(frozen=True)
class Target:
    node: Node
    context: str | None
    container: str

    @property
    def client(self) -> DockerClient:
        return docker.client(self.context)


@dataclass
class NodeStatus:
    name: str
    role: str
    upstream: str | None
    timeline: int | None
    lag_bytes: int | None
    lag_seconds: float | None
    repmgrd: bool
    reachable: bool
    registered: bool
    detail: str
    archiving: str | None = None
    """On the primary with backups: `ok`, or why WAL is not reaching S3."""
    location: str = ""
    priority: int = 0
    paused: bool = False
    """Maintenance mode on this node (contract.PAUSED): no automatic failover."""
    received_lsn: int | None = None
    replayed_lsn: int | None = None
    """A standby's WAL positions (bytes from 0/0): how far it received and replayed."""


def json_lines(text: str, where: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The JSON objects of a log a node keeps (events, deployments), one a line. Lines that do not start
    like an object are skipped; one that does but is cut short or garbled is named, and so is an entry
    without the `required` keys: the command stops with one line instead of a traceback."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip().startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PgdockError(f"{where}, line {number}: not a complete JSON object ({exc.msg}); "
                              "repair or remove that line on the node") from None
        if missing := [key for key in required if key not in entry]:
            raise PgdockError(f"{where}, line {number}: the entry has no {', '.join(missing)}; "
                              "repair or remove that line on the node")
        entries.append(entry)
    return entries


def agent_state(target: Target) -> dict[str, Any] | None:
    """The node agent's own view (`pgdock-agent state`), or None when the container cannot be reached.
    No docker CLI at all is not a node's state but a failure to look: its DockerError goes up (`status`
    exits 1 instead of calling the cluster down)."""
    from python_on_whales.exceptions import DockerException

    client = target.client
    try:
        return json.loads(client.execute(target.container, ["pgdock-agent", "state"]))
    except (DockerException, json.JSONDecodeError):
        return None


def _status(members: list[Target]) -> list[NodeStatus]:
    """One row per member; standby lag comes from the primary's view when there is a primary."""
    with ThreadPoolExecutor(8) as pool:
        found = list(zip(members, pool.map(agent_state, members), strict=True))
    replicas: dict[str, Any] = {}
    for _, state in found:
        if state and state["role"] == "primary":
            replicas |= state["replicas"]
    rows = []
    for target, state in found:
        if state is None:
            rows.append(NodeStatus(target.node.name, "down", None, None, None, None, False, False, False,
                                   f"container {target.container} is not running or its engine is unreachable",
                                   location=target.node.location, priority=target.node.priority))
            continue
        lag = replicas.get(target.node.name, {})
        rows.append(NodeStatus(
            name=target.node.name, role=state["role"], upstream=state["upstream"], timeline=state["timeline"],
            lag_bytes=lag.get("lag_bytes", state["lag_bytes"]),
            lag_seconds=lag.get("lag_seconds", state["lag_seconds"]),
            repmgrd=state["repmgrd"], reachable=True, registered=state["registered"], detail=state["status"],
            archiving=state.get("archiving"), location=target.node.location, priority=target.node.priority,
            paused=bool(state.get("paused")), received_lsn=state.get("received_lsn"),
            replayed_lsn=state.get("replayed_lsn")))
    return rows


HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
"""The three states `status` reports (JSON field `state`), each with its exit status in VERDICT_EXITS."""
VERDICT_EXITS = {HEALTHY: exits.OK, DEGRADED: exits.DEGRADED, DOWN: exits.DOWN}


@dataclass(frozen=True)
class Verdict:
    """What the rows say about the cluster as a whole: scripts branch on `exit_code`, people read `problems`."""

    state: str
    problems: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return VERDICT_EXITS[self.state]


def verdict(spec: Spec, rows: list[NodeStatus]) -> Verdict:
    """Healthy (one primary, every standby streaming, the witness in, repmgrd everywhere), degraded (a
    writable primary, but something of that is missing: a member down, fenced, not streaming) or down
    (no writable primary). Pure over the observed rows, so every case is table-tested."""
    primaries = [r for r in rows if r.role == "primary"]
    if not primaries:
        down = [f"{r.name} is {r.role}: {r.detail}" for r in rows if r.role == "down"]
        return Verdict(DOWN, ("no writable primary", *down))
    problems = [] if len(primaries) == 1 else [f"{len(primaries)} primaries ({', '.join(r.name for r in primaries)})"]
    for row in rows:
        if row.role == "primary":
            continue
        expected = "witness" if spec.witness and row.name == spec.witness.name else "standby"
        if row.role != expected:
            problems.append(f"{row.name} is {row.role}: {row.detail}")
        elif expected == "standby" and row.upstream is None:
            problems.append(f"{row.name} is not streaming yet")
        elif not row.registered or not row.repmgrd:
            problems.append(f"{row.name} is not registered with repmgr or its repmgrd is not monitoring yet")
    problems += [f"repmgrd is not running on {r.name} yet" for r in primaries if not r.repmgrd]
    return Verdict(DEGRADED if problems else HEALTHY, tuple(problems))


def healthy(spec: Spec, rows: list[NodeStatus]) -> str | None:
    """Why the cluster is not healthy yet (None when it is): the first of the verdict's problems."""
    found = verdict(spec, rows)
    return None if found.state == HEALTHY else found.problems[0]


@dataclass(frozen=True)
class Running:
    """A running cluster, in the lab (every node on the local engine) or on its servers (each node
    through its Docker context): the one handle the commands that talk to nodes take."""

    spec: Spec
    lab: bool = False

    def targets(self) -> list[Target]:
        """Where each member runs: the local engine for the lab, the node's context otherwise."""
        return [Target(node, None if self.lab else node.context, contract.container(self.spec.cluster, node.name))
                for node in self.spec.members]

    def target(self, node: str) -> Target:
        """One member (an unknown name is a UsageError naming the members)."""
        name = self.spec.member(node).name
        return next(t for t in self.targets() if t.node.name == name)

    def status(self) -> list[NodeStatus]:
        return _status(self.targets())

    def primary(self) -> str | None:
        return next((r.name for r in self.status() if r.role == "primary"), None)

    def wait_healthy(self, timeout: float, progress: Callable[[str], None],
                     hint: str = "see the nodes' logs (`docker logs <cluster>-<node>`)",
                     until: Callable[[list[NodeStatus]], str | None] | None = None) -> list[NodeStatus]:
        """Polls status until `healthy` (or `until`, a reason to wait or None); raises with the last reason
        after `timeout` seconds."""
        deadline, last = time.monotonic() + timeout, None
        while True:
            rows = self.status()
            why = until(rows) if until else healthy(self.spec, rows)
            if why is None:
                return rows
            if why != last:
                progress(f"waiting: {why}")
                last = why
            if time.monotonic() > deadline:
                raise PgdockError(f"cluster {self.spec.cluster} was not healthy after {timeout:.0f} s: {why}; "
                                  f"{hint}")
            time.sleep(1)


def paused(rows: list[NodeStatus]) -> bool:
    """The cluster is in maintenance mode: some member carries the pause flag (`pgdock-gen pause`)."""
    return any(r.paused for r in rows)


def status_table(spec: Spec, rows: list[NodeStatus]):
    """The rows as a rich table, the verdict (and its problems) under it."""
    from rich.table import Table

    found = verdict(spec, rows)
    title = f"cluster {spec.cluster}" + (" (paused: no automatic failover)" if paused(rows) else "")
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption="; ".join((found.state, *found.problems)))
    for column in ("node", "role", "location", "priority", "upstream", "timeline", "lag bytes", "lag s", "repmgrd",
                   "reachable", "paused", "detail"):
        table.add_column(column)
    for r in rows:
        style = {"primary": "bold green", "down": "red"}.get(r.role, "")
        table.add_row(r.name, r.role, r.location, str(r.priority), r.upstream or "-", str(r.timeline or "-"),
                      "-" if r.lag_bytes is None else str(r.lag_bytes),
                      "-" if r.lag_seconds is None else f"{r.lag_seconds:.1f}",
                      "yes" if r.repmgrd else "no", "yes" if r.reachable else "no", "yes" if r.paused else "no",
                      r.detail if r.archiving in (None, "ok", "off") else f"{r.detail}; archive {r.archiving}",
                      style=style)
    return table


def psql_command(spec: Spec, target: Target, sql: str | None, database: str | None) -> list[str]:
    node = target.node
    base = ["psql", "-X", "-h", str(contract.SOCKET_DIR), "-p", str(node.port), "-U", "postgres",
            "-d", database or ("repmgr" if node.witness else spec.database)]
    return base + (["-c", sql] if sql else [])


def psql(spec: Spec, target: Target, sql: str | None = None, database: str | None = None) -> str | None:
    """Runs psql as the superuser inside the node (peer auth on the socket); interactive without `sql`."""
    command = psql_command(spec, target, sql, database)
    if sql is None:
        docker.exec_interactive(target.context, target.container, command, "postgres")
    from python_on_whales.exceptions import DockerException

    try:
        return target.client.execute(target.container, command, user="postgres")
    except DockerException as exc:
        raise PgdockError(f"psql on {target.node.name} failed: {(exc.stderr or exc.stdout or '').strip()}") from None
