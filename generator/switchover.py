"""`pgdock-gen switchover`: a planned, graceful change of primary.

repmgr's own `standby switchover` does the work on the new primary (over the
cluster's sshd: pause repmgrd, shut the old primary down cleanly, promote, rejoin
the old primary with pg_rewind, make siblings follow, unpause); pgdock adds the
checks that make refusing safe, and waits until the cluster is whole again.
"""

from __future__ import annotations

from collections.abc import Callable

from . import contract
from .cluster import NodeStatus, Running
from .errors import PgdockError, UsageError
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
    try:
        target.client.execute(target.container, command, user="postgres")
    except DockerException as exc:
        output = (exc.stderr or "") + (exc.stdout or "")
        lines = [ln for ln in output.splitlines() if "ERROR" in ln or "HINT" in ln] or output.splitlines()[-3:]
        raise PgdockError(f"repmgr standby switchover on {node} failed: {' / '.join(lines)}") from None
    rows = running.wait_healthy(timeout=timeout, progress=progress)
    if not any(r.name == node and r.role == "primary" for r in rows):
        raise PgdockError(f"switchover finished but {node} is not primary; run `pgdock-gen status`")
    return rows
