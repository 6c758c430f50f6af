"""A standby's election priority in repmgr's metadata, lowered to 0 while its repmgrd does not monitor the primary.

The decision is `decide.election_priority`; this module reads the configured priority (repmgr.conf), the
recorded one (the local, replicated copy of repmgr.nodes) and writes the record on the primary, the only
writable copy. A failed read or write changes nothing: the supervisor tries again at its next check.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from . import contract
from .node import env, password
from .peers import Peer, conninfo
from .postgres import local_conn


def configured() -> int | None:
    """`priority=` of this node's repmgr.conf (the spec's), None when unreadable."""
    try:
        lines = Path(contract.REPMGR_CONF).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    found = [line.split("=", 1)[1].strip() for line in lines if line.startswith("priority=")]
    return int(found[0]) if found and found[0].isdigit() else None


def recorded() -> tuple[int, float | None] | None:
    """The priority repmgr's metadata gives this node now (as replicated to it) and how many seconds ago its
    repmgrd last saw its upstream (-1: never), in one login; None when unreadable."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            row = conn.execute("SELECT priority, repmgr.get_upstream_last_seen() FROM repmgr.nodes "
                               "WHERE node_id = %s", (int(env(contract.ENV_NODE_ID)),)).fetchone()
    except psycopg.Error:
        return None
    return (row[0], None if row[1] is None else float(row[1])) if row else None


def record(primary: Peer, priority: int) -> bool:
    """Writes this node's priority into repmgr's metadata on the primary; whether it was written."""
    try:
        with psycopg.connect(conninfo(primary), password=password("repmgr"), autocommit=True) as conn:
            conn.execute("UPDATE repmgr.nodes SET priority = %s WHERE node_id = %s",
                         (priority, int(env(contract.ENV_NODE_ID))))
    except psycopg.Error:
        return False
    return True
