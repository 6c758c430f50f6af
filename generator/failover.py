"""`pgdock-gen failover NODE`: promote a standby by hand when no primary runs (e.g. while paused).

A manual failover is for a primary that is gone: refused while any primary answers (that is a
switchover's job, which loses nothing), and refused, unless forced, while automatic failover is armed
(repmgrd would be electing a standby of its own) or when NODE has less WAL than another standby (what
only that one received would be lost). NODE is promoted with the agent's own promotion (pg_promote and
repmgr's metadata, as the gate does), the other standbys follow it (`repmgr standby follow`), and the
old primary, when it starts again, finds a primary on a newer timeline and rejoins it by pg_rewind
(the agent's rule for a former primary, decide._former_primary).
"""

from __future__ import annotations

from . import contract
from .cluster import NodeStatus, Running
from .errors import PgdockError, UsageError
from .maintenance import Progress, Step, agent, record
from .spec import Spec


def position(row: NodeStatus) -> int | None:
    """How much WAL a standby has: the further of what it received and what it replayed."""
    known = [lsn for lsn in (row.received_lsn, row.replayed_lsn) if lsn is not None]
    return max(known) if known else None


def check(spec: Spec, node: str, rows: list[NodeStatus], *, force: bool) -> str | None:
    """Why `node` should not be promoted by hand now, or None. --force passes over the last two reasons only
    (armed automatic failover, a standby further ahead): the first ones would make two primaries."""
    by_name = {r.name: r for r in rows}
    row = by_name[node]
    if spec.witness and node == spec.witness.name:
        return f"{node} is the witness; only a data node can become primary"
    live = [r.name for r in rows if r.role == "primary"]
    if live:
        return (f"{live[0]} is primary and answers: a failover now would make two primaries; for a planned change "
                f"use `pgdock-gen switchover {node}`")
    streaming = sorted({r.upstream for r in rows if r.role == "standby" and r.upstream})
    if streaming:
        return (f"standbys still stream from {', '.join(streaming)}: the primary lives, only this machine does not "
                "reach its container; promoting now would make two primaries")
    if row.role != "standby" or not row.reachable:
        return f"{node} is {row.role} ({row.detail}); only a running standby can be promoted"
    if force:
        return None
    if spec.member(node).priority == 0:
        return f"{node} has priority 0 in the spec (never promoted)"
    if not any(r.paused for r in rows):
        return ("automatic failover is armed: repmgrd elects a standby by itself; `pgdock-gen pause` first so "
                "that only your choice is promoted")
    mine = position(row) or 0
    ahead = [(r.name, p) for r in rows if r.name != node and r.role == "standby" and (p := position(r)) and p > mine]
    if ahead:
        name, theirs = max(ahead, key=lambda pair: pair[1])
        return (f"{node} is behind {name} ({theirs - mine} bytes of WAL): promoting {node} loses what only {name} "
                f"received; choose {name}")
    return None


def plan(spec: Spec, node: str, rows: list[NodeStatus]) -> list[Step]:
    steps = [Step(node, "promote", f"{node}: promote (pg_promote, then repmgr's metadata names it primary)")]
    steps += [Step(r.name, "follow", f"{r.name}: repmgr standby follow {node}")
              for r in rows if r.role == "standby" and r.reachable and r.name != node]
    gone = [r.name for r in rows if r.role == "down" and not (spec.witness and r.name == spec.witness.name)]
    steps += [Step(name, "note", f"{name}: when it starts again, its agent rejoins {node} by pg_rewind")
              for name in gone]
    return steps


def settled(spec: Spec, node: str, rows: list[NodeStatus]) -> str | None:
    """Why the failover is not complete yet, or None: `node` is primary and every running standby streams
    from it (members that are down rejoin when they start)."""
    by_name = {r.name: r for r in rows}
    if by_name[node].role != "primary":
        return f"{node} is {by_name[node].role}: {by_name[node].detail}"
    for row in rows:
        if row.role == "standby" and row.upstream != node:
            return f"{row.name} does not stream from {node} yet"
    return None


def prepare(running: Running, node: str, *, force: bool) -> list[Step]:
    spec = running.spec
    spec.member(node)
    rows = running.status()
    why = check(spec, node, rows, force=force)
    if why:
        forceable = not force and check(spec, node, rows, force=True) is None
        raise UsageError(f"failover to {node} refused: {why}" + (" (--force to override)" if forceable else ""))
    return plan(spec, node, rows)


def apply(running: Running, node: str, steps: list[Step], *, progress: Progress,
          timeout: float = 120) -> list[NodeStatus]:
    spec = running.spec
    target = running.target(node)
    node_id = str(spec.member(node).id)
    failed = []
    for step in steps:
        progress(step.text)
        if step.kind == "promote":
            agent(target, contract.AGENT_PROMOTE, "promoted by hand (pgdock-gen failover)")
            record(target, contract.EVENT_MANUAL_FAILOVER, f"{node} promoted by hand", progress)
        elif step.kind == "follow":
            try:
                agent(running.target(step.node), contract.AGENT_FOLLOW, node_id)
            except PgdockError as exc:
                failed.append(f"{step.node}: {exc}")
    if failed:
        raise PgdockError(f"{node} is primary, but not every standby follows it: {'; '.join(failed)}; "
                          f"`pgdock-gen reinit` a standby that cannot follow")
    return running.wait_healthy(timeout, progress, hint=f"{node} was promoted; see `pgdock-gen status`",
                                until=lambda rows: settled(spec, node, rows))
