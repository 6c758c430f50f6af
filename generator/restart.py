"""`pgdock-gen restart [NODE | --all]`: a rolling restart onto the images built and shipped now.

Each node's container is recreated (not merely restarted), so it runs the image its tag names today:
after `build` (and `push`, on servers) a new base image, say a PostgreSQL minor release, rolls out this
way. Standbys and the witness go first, one by one, each back streaming (the cluster healthy) before
the next; then a switchover hands the primary's role to the standby with the highest priority that
passes switchover's checks (writes pause for that switchover only); then the old primary is recreated.
A node that does not come back stops the restart, and the error names the nodes not restarted yet.
"""

from __future__ import annotations

from . import cluster, contract, switchover
from .cluster import NodeStatus
from .errors import PgdockError, UsageError
from .maintenance import Place, Progress, Step, primary_of, record
from .spec import Spec


def candidate(spec: Spec, rows: list[NodeStatus]) -> str | None:
    """The standby a switchover would hand the primary's role to: the highest priority that passes its checks."""
    fit = [r.name for r in rows if switchover.check(spec, r.name, rows) is None]
    return max(fit, key=lambda name: spec.member(name).priority, default=None)


def check(spec: Spec, nodes: list[str], rows: list[NodeStatus]) -> str | None:
    """Why the rolling restart of `nodes` should not start, or None."""
    why = cluster.healthy(spec, rows)
    if why:
        return f"the cluster is not healthy ({why}); a rolling restart starts from a healthy one"
    primary = primary_of(rows)
    if primary in nodes and candidate(spec, rows) is None:
        return f"{primary} is the primary and no standby can take over by switchover now"
    return None


def plan(spec: Spec, nodes: list[str], rows: list[NodeStatus], *, where: dict[str, str]) -> list[Step]:
    """Standbys and the witness one by one in spec order, then the switchover, then the old primary."""
    primary = primary_of(rows)

    def recreate(node: str) -> Step:
        return Step(node, "recreate", f"{node}: recreate its {where[node]} on the current images; wait until the "
                                      "cluster is healthy again")

    steps = [recreate(n.name) for n in spec.members if n.name in nodes and n.name != primary]
    if primary in nodes:
        to = candidate(spec, rows)
        steps += [Step(to, "switchover", f"switchover {primary} → {to}"), recreate(primary)]
    return steps


def prepare(place: Place, nodes: list[str]) -> list[Step]:
    spec = place.running.spec
    for node in nodes:
        spec.member(node)
    rows = place.running.status()
    why = check(spec, nodes, rows)
    if why:
        raise UsageError(f"restart refused: {why}")
    return plan(spec, nodes, rows, where={n: place.where(n) for n in nodes})


def apply(place: Place, steps: list[Step], *, progress: Progress, timeout: float = 600) -> list[NodeStatus]:
    running = place.running
    rows: list[NodeStatus] = []
    for index, step in enumerate(steps):
        progress(step.text)
        if step.kind == "switchover":
            rows = switchover.switchover(running, step.node, force=False, progress=progress)
            continue
        target = running.target(step.node)
        place.recreate(step.node)
        try:
            rows = running.wait_healthy(timeout=timeout, progress=progress,
                                        hint=f"see the logs of {target.container}")
        except PgdockError as exc:
            left = [s.node for s in steps[index + 1:] if s.kind == "recreate"]
            raise PgdockError(f"restart stopped: {step.node} did not come back: {exc}"
                              + (f"; not restarted: {', '.join(left)}" if left else "")) from None
        image = target.client.container.inspect(target.container).image
        record(target, contract.EVENT_RESTARTED, f"container recreated on image {image}", progress)
    return rows
