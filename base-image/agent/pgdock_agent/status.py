"""What `pgdock-gen status` shows for this node (`pgdock-agent state`), and the container's healthcheck."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

from . import contract
from .archive import gap_note
from .health import Archive
from .node import STATUS, env
from .peers import peers
from .postgres import PG_BIN, is_standby, local_conn, running

NODE_STATE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'),
       CASE WHEN pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END,
       CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()
            THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
            WHEN pg_is_in_recovery() THEN 0.0 END,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint,
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint
"""
REPLICAS_SQL = """
SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
       coalesce(extract(epoch FROM replay_lag), 0)::float8, sync_state
FROM pg_stat_replication
"""


ARCHIVER_SQL = """
SELECT last_archived_time, last_failed_time,
       (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'),
       extract(epoch FROM now() - last_archived_time)::float8
FROM pg_stat_archiver
"""


def archiver(conn: psycopg.Connection) -> Archive | None:
    """Continuous archiving as PostgreSQL's archiver reports it; None when archive_mode is off."""
    if conn.execute("SHOW archive_mode").fetchone()[0] == "off":
        return None
    last_ok, last_failed, ready, age = conn.execute(ARCHIVER_SQL).fetchone()
    return Archive(failing=bool(last_failed and (last_ok is None or last_failed > last_ok)), pending=ready,
                   last_archived_age=age, gap=gap_note() is not None, failing_since=last_failed)


def archiving(conn: psycopg.Connection) -> str:
    """`ok`, `off`, or why WAL is not reaching the archive (shown by status)."""
    state = archiver(conn)
    if state is None:
        return "off"
    gap = gap_note()
    if state.failing:
        failing = f"failing since {state.failing_since:%H:%M:%S} ({state.pending} WAL files waiting)"
        return f"{failing}; {gap}" if gap else failing
    return gap or "ok"


def repmgrd_running() -> bool:
    """A process named repmgrd runs in this container (the image has no procps: /proc is read directly; a
    process that ends meanwhile is skipped)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "repmgrd":
                return True
        except OSError:
            continue
    return False


MONITORING_FRESH_SECONDS = 10
"""A standby's or the witness's repmgrd that last saw its upstream longer ago than this is not monitoring (it
checks every second: monitor_interval_secs)."""


def monitoring(role: str, process_running: bool, upstream_last_seen: float | None) -> bool:
    """Whether repmgrd takes part in failover here. A repmgrd process alone is not enough on a standby or the
    witness: until it has seen its upstream it answers siblings "upstream node -1", yet an election may still
    pick its node as the candidate, and that repmgrd, unable to start without an upstream, never promotes (a
    failover that never happens). Only there, -1 (never) or a stale last-seen says "not yet"."""
    if not process_running:
        return False
    if role == "primary":
        return True
    return upstream_last_seen is not None and 0 <= upstream_last_seen <= MONITORING_FRESH_SECONDS


def upstream_last_seen() -> float | None:
    """Seconds since this node's repmgrd last saw its upstream (repmgr's shared memory; -1: never)."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            row = conn.execute("SELECT repmgr.get_upstream_last_seen()").fetchone()
    except psycopg.Error:
        return None
    return float(row[0]) if row and row[0] is not None else None


def node_state() -> dict:
    """What `pgdock-gen status` shows for this node, as JSON-ready data."""
    by_address = {p.address: p.name for p in peers()}
    state: dict = dict.fromkeys(contract.STATUS_KEYS) | {
        "node": env(contract.ENV_NODE), "role": "down", "replicas": {},
        "status": STATUS.read_text().strip() if STATUS.exists() else "starting",
        "repmgrd": repmgrd_running(),
        "registered": False, "paused": Path(contract.PAUSED).exists()}
    if not running():
        return state
    try:
        with local_conn() as conn:
            in_recovery, timeline, sender, lag_bytes, lag_seconds, received, replayed = conn.execute(
                NODE_STATE_SQL).fetchone()
            if env(contract.ENV_ROLE) == "witness":
                state["role"] = "witness"
            else:
                state |= {"role": "standby" if in_recovery else "primary", "timeline": timeline,
                          "upstream": by_address.get(sender, sender), "lag_bytes": lag_bytes,
                          "lag_seconds": lag_seconds, "received_lsn": received, "replayed_lsn": replayed}
                if not in_recovery:
                    state["archiving"] = archiving(conn)
                    state["replicas"] = {name: {"state": st, "lag_bytes": lb, "lag_seconds": ls, "sync": sync}
                                         for name, st, lb, ls, sync in conn.execute(REPLICAS_SQL).fetchall()}
    except psycopg.Error as exc:
        state["status"] = f"cannot query PostgreSQL: {exc}".strip()
    state["registered"] = registered()
    if state["repmgrd"] and state["role"] != "primary":
        state["repmgrd"] = monitoring(state["role"], True, upstream_last_seen())
    return state


def health() -> int:
    """Healthy = PostgreSQL accepts connections (the container's healthcheck)."""
    ready = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", str(contract.SOCKET_DIR),
                            "-p", env(contract.ENV_PORT, "5432")], check=False)
    return ready.returncode


def registration() -> tuple[str | None, bool] | None:
    """The type (primary, standby, witness) of this node's repmgr record and whether it is active, when the
    record describes this node (a restored database carries the source's records); (None, False) without one
    (or without repmgr's metadata); None when PostgreSQL did not answer (nothing is known)."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            row = conn.execute("SELECT type, conninfo, active FROM repmgr.nodes WHERE node_id = %s",
                               (int(env(contract.ENV_NODE_ID)),)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None, False  # repmgr's extension is not there yet: a new witness before it registers
    except psycopg.Error:
        return None
    if row is None or f"host={env(contract.ENV_ADDRESS)} " not in row[1]:
        return None, False
    return row[0], bool(row[2])


def expected_registration() -> str:
    if env(contract.ENV_ROLE) == "witness":
        return "witness"
    return "standby" if is_standby() else "primary"


def registered() -> bool:
    """repmgr's record of this node says what the node is (repmgrd refuses to run otherwise)."""
    return registration() == (expected_registration(), True)
