"""`pgdock-gen switchover`: a planned, graceful change of primary.

repmgr's own `standby switchover` does the work on the new primary (over the
cluster's sshd: pause repmgrd, shut the old primary down cleanly, promote, rejoin
the old primary with pg_rewind, make siblings follow, unpause); pgdock adds the
checks that make refusing safe, and waits until the cluster is whole again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import contract
from .cluster import NodeStatus, Running, Target
from .errors import PgdockError, UsageError
from .maintenance import agent
from .spec import Spec

MAX_LAG_BYTES = 16 * 1024 * 1024
"""A candidate further behind than this would make the switchover's write pause long: refuse without --force."""


def check(spec: Spec, node: str, rows: list[NodeStatus]) -> str | None:
    """Why `node` should not become primary now, or None."""
    by_name = {r.name: r for r in rows}
    row = by_name[node]
    if spec.witness and node == spec.witness.name:
        return f"{node} is the witness; only a data node can become primary"
    if spec.member(node).priority == 0:
        return f"{node} has priority 0 in the spec (never promoted)"
    if row.role == "primary":
        return f"{node} is already the primary"
    if row.role != "standby" or not row.reachable:
        return f"{node} is {row.role} ({row.detail})"
    if row.upstream is None:
        return f"{node} is not streaming from the primary"
    if not all(r.repmgrd for r in rows if r.role != "down"):
        return "repmgrd is not running on every node; repmgr's switchover needs it to pause failover"
    if row.lag_bytes is not None and row.lag_bytes > MAX_LAG_BYTES:
        return f"{node} lags {row.lag_bytes} bytes behind the primary"
    if sum(r.role == "primary" for r in rows) != 1:
        return "the cluster has no single primary right now"
    return None


def switchover(running: Running, node: str, *, force: bool, progress: Callable[[str], None],
               timeout: float = 180) -> list[NodeStatus]:
    spec = running.spec
    spec.member(node)
    rows = running.status()
    why = check(spec, node, rows)
    if why and not force:
        raise UsageError(f"switchover to {node} refused: {why} (--force to override)")
    old = next((r.name for r in rows if r.role == "primary"), "?")
    progress(f"switchover: {old} → {node}")
    target = running.target(node)
    from python_on_whales.exceptions import DockerException

    # in maintenance mode repmgrd stays paused afterwards (repmgr unpauses only what it paused itself)
    unpause = [] if any(r.paused for r in rows) else ["--repmgrd-force-unpause"]
    command = ["repmgr", "-f", str(contract.REPMGR_CONF), "standby", "switchover", "--siblings-follow",
               "--force-rewind", *unpause]
    poolers = pooler_targets(running, rows)
    paused_at = pause_poolers(poolers, progress)
    try:
        target.client.execute(target.container, command, user="postgres")
    except DockerException as exc:
        resume_poolers(poolers, paused_at, progress)
        output = (exc.stderr or "") + (exc.stdout or "")
        lines = [ln for ln in output.splitlines() if "ERROR" in ln or "HINT" in ln] or output.splitlines()[-3:]
        raise PgdockError(f"repmgr standby switchover on {node} failed: {' / '.join(lines)}") from None
    try:
        rows = running.wait_healthy(timeout=timeout, progress=progress)
    finally:
        # each agent resumed its pool on seeing the new primary ready; this lifts any pause left (an agent that
        # missed it), only now that every node knows the new primary, so no pool resumes towards the old one
        resume_poolers(poolers, paused_at, progress)
    if not any(r.name == node and r.role == "primary" for r in rows):
        raise PgdockError(f"switchover finished but {node} is not primary; run `pgdock-gen status`")
    return rows


def pooler_targets(running: Running, rows: list[NodeStatus]) -> list[Target]:
    """The data nodes whose PgBouncer a switchover holds: every reachable one when the spec has `pooler`."""
    if running.spec.pooler is None:
        return []
    reachable = {r.name for r in rows if r.reachable}
    return [running.target(n.name) for n in running.spec.nodes if n.name in reachable]


def pause_poolers(poolers: list[Target], progress: Callable[[str], None]) -> float:
    """Pauses every pool (each waits for its transactions in flight) so no transaction fails on the old primary
    shutting down; each agent resumes its pool once it sees the new primary. A pool that cannot be paused
    undoes the others and refuses the switchover. Returns when the pause began."""
    started, paused = time.monotonic(), []
    for target in poolers:
        try:
            agent(target, contract.AGENT_POOLER, "pause")
        except PgdockError as exc:
            resume_poolers(paused, started, progress)
            raise PgdockError(f"switchover refused: {exc}; the primary is unchanged") from None
        paused.append(target)
    if poolers:
        progress(f"poolers paused on {', '.join(t.node.name for t in poolers)} "
                 f"({time.monotonic() - started:.1f} s for transactions in flight)")
    return started


def resume_poolers(poolers: list[Target], paused_at: float, progress: Callable[[str], None]) -> None:
    """Lifts every pool's pause (those that already resumed by themselves stay as they are)."""
    for target in poolers:
        try:
            agent(target, contract.AGENT_POOLER, "resume")
        except PgdockError as exc:
            progress(f"warning: {exc}; its agent lifts the pause within {contract.POOLER_PAUSE_MAX_SECONDS} s")
    if poolers:
        progress(f"poolers checked resumed, {time.monotonic() - paused_at:.1f} s after the pause began")
