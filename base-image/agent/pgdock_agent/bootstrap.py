"""First starts: initdb as the initial primary, clone as a standby, restore a backup, the witness.

Each first start is bracketed by the BOOTSTRAPPING marker (on the data volume, outside
PGDATA): it is written before the data directory is made and removed after the last step
(registration), so a start that finds it knows the bootstrap was cut short and redoes it
(decide.REDO_BOOTSTRAP) instead of resuming a database that lacks roles or metadata.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from . import contract, events, pgbackrest
from .cloudwal import barman_cloud_args
from .files import write_owned
from .node import RUN, env, password, set_status
from .peers import Peer, conninfo
from .postgres import (
    LOCAL_COMMIT,
    PG_BIN,
    PGDATA,
    as_postgres,
    empty_pgdata,
    local_conn,
    make_pgdata,
    repmgr,
    start,
    stop,
    write_pgdata_conf,
)
from .restore_wal import clear_spool as clear_restore_spool

BOOTSTRAPPING = Path(contract.BOOTSTRAPPING)


def begin() -> None:
    BOOTSTRAPPING.touch()


def done() -> None:
    BOOTSTRAPPING.unlink(missing_ok=True)


def redo() -> None:
    """Throws away a half-made first start (the marker stays, so an interruption now is redone too)."""
    stop("immediate")
    empty_pgdata()


def initdb() -> None:
    make_pgdata()
    pwfile = RUN / "initdb.pw"
    write_owned(pwfile, password("superuser") + "\n")
    try:
        as_postgres([str(PG_BIN / "initdb"), "-D", str(PGDATA), *contract.INITDB_OPTIONS, "--pwfile", str(pwfile)],
                    capture=True)
    finally:
        pwfile.unlink(missing_ok=True)
    write_pgdata_conf()


def create_role(conn: psycopg.Connection, role: str, secret: str, attributes: str) -> None:
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + attributes + " PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password(secret))))


def create_repmgr(conn: psycopg.Connection) -> None:
    create_role(conn, "repmgr", "repmgr", "SUPERUSER")
    conn.execute("CREATE DATABASE repmgr OWNER repmgr")
    conn.execute("ALTER ROLE repmgr SET search_path TO repmgr, public")
    # repmgr's metadata and event writes must never block on a missing sync standby (failover!)
    conn.execute("ALTER ROLE repmgr SET synchronous_commit TO local")


def primary() -> None:
    begin()
    initdb()
    start()
    user, database = env(contract.ENV_USER), env(contract.ENV_DATABASE)
    # In sync mode no standby exists yet to confirm these commits: they must not wait for one.
    with local_conn(options=LOCAL_COMMIT) as conn:
        create_repmgr(conn)
        create_role(conn, "replicator", "replication", "REPLICATION")
        create_role(conn, user, "app", "")
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user)))
    if Path(contract.INITDB_SQL).exists():
        as_postgres([str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-p", env(contract.ENV_PORT),
                     "-h", str(contract.SOCKET_DIR), "-d", database, "-f", str(contract.INITDB_SQL)], capture=True,
                    env_extra={"PGOPTIONS": LOCAL_COMMIT})
    repmgr("primary", "register")
    done()


def witness() -> None:
    """The witness's own database; it registers with the primary once one answers (supervisor). Up early,
    it answers the primary's probes while the standbys still clone."""
    begin()
    initdb()
    start()
    with local_conn(options=LOCAL_COMMIT) as conn:
        create_repmgr(conn)
    done()


def register_witness(primary_peer: Peer) -> None:
    repmgr("-d", conninfo(primary_peer), "witness", "register", "--force")


def clone(peer: Peer) -> None:
    begin()
    make_pgdata()
    result = repmgr("-d", conninfo(peer), "standby", "clone", "--fast-checkpoint", check=False)
    if result.returncode != 0:
        empty_pgdata()  # a half-made clone is worthless; the next try starts clean
        raise RuntimeError(f"repmgr standby clone from {peer.name} failed (exit {result.returncode})")
    events.record(contract.EVENT_CLONE, f"cloned from {peer.name}")
    write_pgdata_conf()
    start()
    repmgr("standby", "register", "--force")
    done()


def _choose_backup(source: str, server: str, target: str) -> str:
    """The newest completed base backup that ended before the target (any, for `latest`)."""
    listing = as_postgres(["barman-cloud-backup-list", *barman_cloud_args(), "--format", "json", source, server],
                          capture=True).stdout
    complete = [b for b in json.loads(listing)["backups_list"] if b.get("status") == "DONE"]
    if target != "latest":
        limit = dt.datetime.fromisoformat(target)
        complete = [b for b in complete if dt.datetime.strptime(b["end_time"], "%a %b %d %H:%M:%S %Y").replace(
            tzinfo=dt.UTC) <= limit] if complete and "end_time" in complete[0] else complete
    if not complete:
        raise SystemExit(f"pgdock-agent: no completed base backup of {server} in {source} before {target}")
    return sorted(complete, key=lambda b: b["backup_id"])[-1]["backup_id"]


def recovery_settings(source: str, server: str, target: str) -> dict[str, str]:
    """What a restored node's postgresql.auto.conf gets: WAL from S3 (each value one shell word), replay to
    the target, then promote."""
    command = shlex.join([contract.AGENT, "restore-wal", source, server]) + " %f %p"
    settings = {"restore_command": command, "recovery_target_timeline": "latest",
                "recovery_target_action": "promote"}
    if target != "latest":
        settings["recovery_target_time"] = target
    return settings


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess:
    return as_postgres(argv, check=False, capture=True)


def _restore_files(source: str, server: str, target: str) -> tuple[str, tuple[str, ...]]:
    """Fills PGDATA from the newest backup before `target`, set to replay WAL to it and promote; the
    backup's id and the recovery settings written (reset once the node is primary)."""
    if pgbackrest.chosen():
        backup_id = pgbackrest.choose(pgbackrest.run("info", "--output=json", stanza=server, runner=_as_postgres),
                                      target)
        if backup_id is None:
            raise SystemExit(f"pgdock-agent: no completed base backup of {server} in {source} before {target}")
        set_status(f"first start: restoring {server} backup {backup_id} from {source}, target {target}")
        begin()
        make_pgdata()
        pgbackrest.run(*pgbackrest.restore_args(backup_id, target, env(contract.ENV_BACKUP_JOBS)), stanza=server,
                       runner=_as_postgres)
        write_pgdata_conf()
        return backup_id, pgbackrest.RECOVERY_SETTINGS
    backup_id = _choose_backup(source, server, target)
    set_status(f"first start: restoring {server} backup {backup_id} from {source}, target {target}")
    begin()
    make_pgdata()
    as_postgres(["barman-cloud-restore", *barman_cloud_args(), source, server, backup_id, str(PGDATA)], capture=True)
    write_pgdata_conf()
    settings = recovery_settings(source, server, target)
    with (PGDATA / "postgresql.auto.conf").open("a") as auto:
        auto.writelines(f"{k} = {contract.conf_string(v)}\n" for k, v in settings.items())
    write_owned(PGDATA / "recovery.signal", "")
    return backup_id, tuple(settings)


def restore(server: str, target: str) -> None:
    """First start of a restored cluster: base backup from S3, WAL replay to the target, promote."""
    source = env(contract.ENV_BACKUP_URL)
    backup_id, settings = _restore_files(source, server, target)
    start()
    while True:
        with local_conn() as conn:
            in_recovery, last = conn.execute("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()").fetchone()
        if not in_recovery:
            break
        time.sleep(0.2)  # every second here was a second of every restore (bench/backup.py)
    clear_restore_spool()
    with local_conn() as conn:
        for name in settings:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        conn.execute("SELECT pg_reload_conf()")
    details = json.dumps({"server": server, "backup_id": backup_id, "target": target,
                          "last_replayed": last.isoformat() if last else None})
    events.record(contract.EVENT_RESTORE, details)
    me = int(env(contract.ENV_NODE_ID))
    with local_conn("repmgr", "repmgr") as conn, conn.transaction():
        # the source's other nodes are not members of this cluster (until they clone and register): gone,
        # so repmgr's elections and this primary's quorum count only real members
        conn.execute("UPDATE repmgr.nodes SET upstream_node_id = NULL WHERE node_id = %s", (me,))
        conn.execute("DELETE FROM repmgr.nodes WHERE node_id <> %s", (me,))
    repmgr("primary", "register", "--force")
    done()
