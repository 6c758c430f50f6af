"""repmgrd's promote_command: promote this standby, but never before the old primary has been silent
for the promotion delay.

The isolated primary fences itself `fence_after` seconds after it last heard a quorum; this
node promotes only `promote_after` seconds after it last heard a primary, and the gap between
the two is the guarantee that the old primary stopped first (README, "High availability").
repmgrd may decide sooner (a refused connection fails at once): the wait happens here. If a
primary answers again while we wait, the failover was false and we refuse.

Promotion is `pg_promote(wait => true)` plus repmgr's own metadata update, done directly:
`repmgr standby promote` would first spend its connect timeout looking for the dead primary.
"""

from __future__ import annotations

import json
import time

from . import contract, events
from .node import RUN, env, log
from .postgres import local_conn

CONTACTS = RUN / "contacts.json"
"""Written by the supervisor's prober: monotonic times each peer last answered, and last answered as primary."""
DEFAULT_PROMOTE_SECONDS = 5.0


def last_primary_contact() -> float | None:
    try:
        return max(json.loads(CONTACTS.read_text()).get("primary", {}).values(), default=None)
    except (OSError, ValueError):
        return None


def wait_until_silent(promote_after: float, poll: float = 0.05) -> str | None:
    """Waits until no primary answered for `promote_after` seconds; returns why not when one answers again."""
    begun = time.monotonic()
    while True:
        seen = last_primary_contact()
        if seen is not None and seen > begun:
            return "a primary answered again while the promotion waited: not promoting (false failover)"
        since = begun if seen is None else seen
        if time.monotonic() - since >= promote_after:
            return None
        time.sleep(poll)


def promote() -> int:
    promote_after = float(env(contract.ENV_PROMOTE_SECONDS, str(DEFAULT_PROMOTE_SECONDS)))
    events.record(contract.EVENT_PROMOTE_WAIT, f"elected by repmgrd; promoting once the primary has been silent "
                  f"to this node for {promote_after:g} s")
    refusal = wait_until_silent(promote_after)
    if refusal:
        log(refusal)
        return 1
    node_id = int(env(contract.ENV_NODE_ID))
    with local_conn() as conn:
        if not conn.execute("SELECT pg_promote(true, 60)").fetchone()[0]:
            log("pg_promote did not finish within 60 s")
            return 1
    with local_conn("repmgr", "repmgr") as conn, conn.transaction():
        # what `repmgr standby promote` writes: the old primary's record inactive, ours primary
        conn.execute("UPDATE repmgr.nodes SET active = false WHERE type = 'primary' AND active AND node_id <> %s",
                     (node_id,))
        conn.execute("UPDATE repmgr.nodes SET type = 'primary', upstream_node_id = NULL, active = true "
                     "WHERE node_id = %s", (node_id,))
    events.record(contract.EVENT_STANDBY_PROMOTE, f"promoted after the primary was silent for {promote_after:g} s")
    return 0


def publish(contacts: dict[str, float], primary: dict[str, float]) -> None:
    """Called by the prober after each answer; written beside and renamed, so a reader never sees half."""
    fresh = CONTACTS.with_name(".contacts.json")
    fresh.write_text(json.dumps({"contact": contacts, "primary": primary}))
    fresh.replace(CONTACTS)

