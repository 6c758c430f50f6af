"""`pgdock-gen remove NODE`: take a standby or the witness out of the cluster.

The node is stopped first (its agent would register it again otherwise), then repmgr forgets it
(`repmgr standby unregister` or `repmgr witness unregister` with its node id, run on the primary, where
repmgr's metadata is written), then the primary drops the replication slot that kept WAL for it. The
spec still names the node: the user drops it there and renders again, and a deploy of the other nodes
makes them forget it (peers, pg_hba.conf). The primary is refused: switch over first.
"""

from __future__ import annotations

from . import contract, docker
from .cluster import NodeStatus, Running, psql_command
from .errors import PgdockError, UsageError
from .maintenance import Place, Progress, Step, primary_of, record, repmgr
from .spec import Spec


def check(spec: Spec, node: str, rows: list[NodeStatus]) -> str | None:
    """Why `node` should not be removed now, or None."""
    by_name = {r.name: r for r in rows}
    if by_name[node].role == "primary":
        return f"{node} is the primary: switch over first (`pgdock-gen switchover NODE`), then remove it"
    if primary_of(rows) is None:
        return "no primary is running: repmgr's record of the node is kept there"
    if not (spec.witness and node == spec.witness.name) and len(spec.nodes) == 1:
        return f"{node} is the only data node"
    return None


def plan(spec: Spec, node: str, rows: list[NodeStatus], *, where: str, remove_volumes: bool) -> list[Step]:
    primary = primary_of(rows)
    member = spec.member(node)
    kind = "witness" if member.witness else "standby"
    steps = [Step(node, "stop", f"{node}: stop and remove its {where}"
                                + (", and delete its volumes (its data)" if remove_volumes else "")),
             Step(primary, "unregister", f"{primary}: repmgr {kind} unregister --node-id={member.id}")]
    if not member.witness:
        slot = contract.replication_slot(member.id)
        steps.append(Step(primary, "slot", f"{primary}: drop the replication slot {slot} if it exists"))
    steps.append(Step(node, "note", f"then drop {node} from the spec, render it again, and deploy the other nodes "
                                    "(their peers and pg_hba.conf still name it)"))
    return steps


def prepare(place: Place, node: str, *, remove_volumes: bool) -> list[Step]:
    spec = place.running.spec
    spec.member(node)
    rows = place.running.status()
    why = check(spec, node, rows)
    if why:
        raise UsageError(f"remove of {node} refused: {why}")
    return plan(spec, node, rows, where=place.where(node), remove_volumes=remove_volumes)


def apply(place: Place, node: str, steps: list[Step], *, remove_volumes: bool, progress: Progress) -> list[str]:
    """Applies the plan; returns the closing notes for the user."""
    running, notes = place.running, []
    member = running.spec.member(node)
    for step in steps:
        if step.kind == "note":
            notes.append(step.text)
            continue
        progress(step.text)
        if step.kind == "stop":
            place.remove(node, remove_volumes=remove_volumes, progress=progress)
        elif step.kind == "unregister":
            kind = "witness" if member.witness else "standby"
            repmgr(running.target(step.node), kind, "unregister", f"--node-id={member.id}")
        elif step.kind == "slot":
            drop_slot(running, step.node, contract.replication_slot(member.id))
    primary = primary_of(running.status())
    if primary:
        record(running.target(primary), contract.EVENT_REMOVED, f"{node} unregistered and stopped"
               + (", its data deleted" if remove_volumes else ""), progress)
    return notes


def drop_slot(running: Running, primary: str, slot: str, timeout: float = 30) -> None:
    """Drops the slot on the primary; a walsender of the stopped node that still holds it is ended first."""
    import time

    target = running.target(primary)
    sql = (f"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active; "
           f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' "
           f"AND NOT active; SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")
    command = psql_command(running.spec, target, None, "postgres") + ["-Atqc", sql]
    deadline = time.monotonic() + timeout
    while True:
        left = (docker.call(f"dropping {slot} on {primary}", target.client.execute, target.container, command,
                            user="postgres") or "").split()
        if left and left[-1] == "0":
            return
        if time.monotonic() > deadline:
            raise PgdockError(f"the replication slot {slot} on {primary} is still there after {timeout:.0f} s; "
                              f"drop it with pg_drop_replication_slot('{slot}') (`pgdock-gen psql {primary}`)")
        time.sleep(1)
