"""`pgdock-gen reinit NODE`: clone a standby (or the witness) again, when its data directory is broken or
diverged.

Nothing but the data directory goes: the config and secrets volumes stay, and so do the node's event log
and deployment history (on the data volume, outside the data directory). The operator's command only
leaves a marker (contract.REINIT) on the node's data volume and restarts its container; the agent's next
start empties the data directory before PostgreSQL could start, and its first-start path clones from the
primary and registers the node, as for a new standby. Until the clone is done the marker stays: an
interrupted reinit is redone, and a node being reinitialised never runs initdb, whatever its spec role.
"""

from __future__ import annotations

from . import contract, docker
from .cluster import NodeStatus, Running
from .errors import UsageError
from .maintenance import Progress, Step, on_data_volume, primary_of, record
from .spec import Spec


def check(spec: Spec, node: str, rows: list[NodeStatus]) -> str | None:
    """Why `node` should not be cloned again now, or None."""
    by_name = {r.name: r for r in rows}
    primary = primary_of(rows)
    if by_name[node].role == "primary":
        others = [r.name for r in rows if r.role == "standby"]
        hint = f" (`pgdock-gen switchover {others[0]}`)" if others else ""
        return f"{node} is the primary; its data is the cluster's: switch over first{hint}, then reinit it"
    if primary is None:
        return "no primary is running to clone from"
    return None


def plan(spec: Spec, node: str, rows: list[NodeStatus]) -> list[Step]:
    primary = primary_of(rows)
    kind = "witness" if spec.witness and node == spec.witness.name else "standby"
    action = "makes the witness's database anew and registers it" if kind == "witness" else \
        f"clones it from {primary} and registers it"
    return [Step(node, "mark", f"{node}: leave the reinit marker {contract.REINIT} on its data volume"),
            Step(node, "restart", f"{node}: restart its container; the agent empties {contract.PGDATA} (config, "
                                  f"secrets, event log stay), then {action}"),
            Step(node, "wait", f"wait until {node} is a registered {kind} again and the cluster is healthy")]


def prepare(running: Running, node: str) -> list[Step]:
    spec = running.spec
    spec.member(node)
    rows = running.status()
    why = check(spec, node, rows)
    if why:
        raise UsageError(f"reinit of {node} refused: {why}")
    return plan(spec, node, rows)


def apply(running: Running, node: str, steps: list[Step], *, progress: Progress,
          timeout: float = 1800) -> list[NodeStatus]:
    target = running.target(node)
    reachable = next(r.reachable for r in running.status() if r.name == node)
    for step in steps:
        progress(step.text)
        if step.kind == "mark" and reachable:
            docker.call(f"marking {node} for reinit", target.client.execute, target.container,
                        ["touch", str(contract.REINIT)])
        elif step.kind == "mark":
            on_data_volume(running.spec, target, f"touch {contract.REINIT}")
        elif step.kind == "restart":
            docker.call(f"restarting {node}", target.client.container.restart, target.container, time=120)
            record(target, contract.EVENT_REINIT, f"data directory emptied; {node} clones again", progress)
        else:
            return running.wait_healthy(timeout=timeout, progress=progress,
                                        hint=f"see the logs of {target.container}")
    return running.status()
