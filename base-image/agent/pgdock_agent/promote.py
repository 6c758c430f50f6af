"""The promotion gate and the promotion: repmgrd's failover_validation_command and promote_command.

repmgrd detects a failed primary (one ping, no reconnect attempts) and elects the standby with the
newest WAL among a majority; the winner asks `pgdock-agent validate-failover`, which answers from
the running agent's prober (published to CONTACTS after every probe) by `decide.failover_verdict`:
it waits until the primary has been silent to this node for the promotion delay (the isolated
primary fenced itself `fence_after` seconds after it last heard a quorum, FENCE_GAP sooner: the
guarantee in the README), and refuses if any member still hears the primary, or if it answers
again. A refusal makes repmgrd hold the election again after election_rerun_interval.

Promotion is `pg_promote(wait => true)` plus repmgr's own metadata update, done directly:
`repmgr standby promote` would first spend its connect timeout looking for the dead primary.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from . import contract, decide, events, postgres
from .decide import Act, PeerView
from .node import RUN, env, log
from .peers import CONNECT_TIMEOUT, PROBE_INTERVAL, QUERY_TIMEOUT
from .postgres import local_conn

CONTACTS = RUN / "contacts.json"
"""Written by the supervisor's prober after every probe: what it knows of each peer (decide.PeerView)."""
DEFAULT_PROMOTE_SECONDS = 5.0
FRESH_WITHIN = CONNECT_TIMEOUT + QUERY_TIMEOUT + PROBE_INTERVAL
"""A member's latest finished probe is at most this old while the prober runs (decide.failover_verdict)."""
GATE_SLACK = 6.0
"""The gate answers no if it has not decided within the promotion delay plus this (a probe thread that
stopped publishing, say): repmgrd then holds a new election."""


def views() -> dict[str, PeerView]:
    try:
        return {name: PeerView(**fields) for name, fields in json.loads(CONTACTS.read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}


def publish(known: dict[str, PeerView]) -> None:
    """Called by the prober after each probe; written beside and renamed, so a reader never sees half."""
    fresh = CONTACTS.with_name(".contacts.json")
    fresh.write_text(json.dumps({name: asdict(view) for name, view in known.items()}))
    fresh.replace(CONTACTS)


def gate(promote_after: float, members: tuple[str, ...], poll: float = 0.05) -> decide.Action:
    """Waits for `decide.failover_verdict` to say PROMOTE or REFUSE (or gives up, REFUSE)."""
    begun = time.monotonic()
    while True:
        verdict = decide.failover_verdict(time.monotonic(), begun, promote_after, members, views(), FRESH_WITHIN,
                                          paused=postgres.PAUSED.exists())
        if verdict.act != Act.WAIT:
            return verdict
        if time.monotonic() - begun > promote_after + GATE_SLACK:
            return decide.Action(Act.REFUSE, f"no decision after {promote_after + GATE_SLACK:g} s: {verdict.reason}")
        time.sleep(poll)


def validate() -> int:
    """repmgrd's failover_validation_command: exit 0 lets this elected standby promote. On a yes it promotes
    at once (repmgrd's promote_command then finds the work done): one process start fewer between the
    gate's yes and the first write."""
    from .peers import peers

    promote_after = float(env(contract.ENV_PROMOTE_SECONDS, str(DEFAULT_PROMOTE_SECONDS)))
    events.record(contract.EVENT_PROMOTE_WAIT, f"elected by repmgrd; promoting once the primary has been silent "
                  f"to this node for {promote_after:g} s and no member hears it")
    verdict = gate(promote_after, tuple(p.name for p in peers()))
    log(f"failover validation: {verdict.reason}")
    if verdict.act != Act.PROMOTE:
        events.record(contract.EVENT_PROMOTE_REFUSED, verdict.reason)
        return 1
    return promote()


def promote(detail: str = "promoted: the failover validation said yes") -> int:
    """Promotes this standby (the gate said yes, or an operator's `pgdock-gen failover`, whose words are
    `detail`) and records it in repmgr's metadata; also repmgrd's promote_command, which finds the work
    done when the gate did it."""
    node_id = int(env(contract.ENV_NODE_ID))
    with local_conn() as conn:
        promoting = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if promoting and not conn.execute("SELECT pg_promote(true, 60)").fetchone()[0]:
            log("pg_promote did not finish within 60 s")
            return 1
    with local_conn("repmgr", "repmgr") as conn, conn.transaction():
        # what `repmgr standby promote` writes: the old primary's record inactive, ours primary
        conn.execute("UPDATE repmgr.nodes SET active = false WHERE type = 'primary' AND active AND node_id <> %s",
                     (node_id,))
        conn.execute("UPDATE repmgr.nodes SET type = 'primary', upstream_node_id = NULL, active = true "
                     "WHERE node_id = %s", (node_id,))
    if promoting:
        events.record(contract.EVENT_STANDBY_PROMOTE, detail)
    return 0
