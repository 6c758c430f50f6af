"""A former primary becomes a standby of the new one: crash recovery if needed, then repmgr's rejoin
with pg_rewind (never a full clone), then its metadata made exact."""

from __future__ import annotations

import psycopg

from . import contract, events
from .node import log, password, set_status
from .peers import Peer, conninfo
from .postgres import recover_crash, repmgr, start, write_pgdata_conf


def rejoin(peer: Peer, timeline: int) -> bool:
    """Turns this former primary into a standby of `peer` by pg_rewind; False when that failed."""
    set_status(f"former primary: rejoining {peer.name} (timeline {timeline}) with pg_rewind")
    recover_crash()
    result = repmgr("node", "rejoin", "-d", conninfo(peer), "--force-rewind", "--config-files=postgresql.conf",
                    check=False)
    if result.returncode != 0:
        return False
    events.record(contract.EVENT_REJOIN, f"pg_rewind from {peer.name}")
    write_pgdata_conf()
    start()
    # rejoin leaves the node's metadata pointing at no upstream when it did not wait; make it exact
    upstream = primary_node_id(peer)
    if upstream is None:
        log(f"cannot read {peer.name}'s node id; the standby registration keeps repmgr's own upstream")
        return True
    repmgr("standby", "register", "--force", f"--upstream-node-id={upstream}", check=False)
    return True


def primary_node_id(peer: Peer) -> int | None:
    """The node id repmgr's metadata on `peer` gives its active primary."""
    try:
        with psycopg.connect(conninfo(peer), password=password("repmgr"), autocommit=True) as conn:
            row = conn.execute("SELECT node_id FROM repmgr.nodes WHERE type = 'primary' AND active").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None
