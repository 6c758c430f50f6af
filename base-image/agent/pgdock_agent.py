#!/usr/bin/python3
"""pgdock-agent: makes one container converge to its role in the cluster, then keeps it there.

It runs under tini as the container's main process (as root, for sshd only) and
does what pg-dock left to an operator: first start of the initial primary
(initdb, roles, register), first start of a standby (clone from whoever is
primary now), the witness, and every later start (resume; never re-clone an
intact data directory; never come up as a second primary). PostgreSQL, repmgr
and repmgrd always run as the postgres user.

repmgr calls back into it (service_*_command, promote/follow, events), so
repmgr's switchover and rejoin can stop and start PostgreSQL without the agent
fighting them. Only the standard library and psycopg: it lives in the image.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

CONFIG = Path("/etc/pgdock")
REPMGR_CONF = CONFIG / "repmgr.conf"
SECRETS = Path("/run/pgdock/secrets")
HOME = Path("/var/lib/postgresql")
STATE = Path("/var/lib/pgdock")
PGDATA = STATE / "data"
EVENTS = STATE / "events.jsonl"
RUN = Path("/run/pgdock")
LOG_FIFO = RUN / "postgres.log"
PG_HELD = RUN / "postgres.held"
"""Present while someone (repmgr, an operator) stopped PostgreSQL on purpose: do not restart it."""
REPMGRD_HELD = RUN / "repmgrd.held"
FENCED = RUN / "fenced"
"""Present while this former primary is kept down because it could not prove it is still the only primary."""
FORCE_PRIMARY = STATE / "force-primary"
"""Written by `pgdock-agent unfence`: the operator vouches that this node may start as primary alone."""
STATUS = RUN / "status"
"""One line the status command shows, e.g. why this node refuses to start."""
PG_BIN = Path(f"/usr/lib/postgresql/{os.environ.get('PG_VERSION', '17')}/bin")
LOCAL_COMMIT = "-c synchronous_commit=local"
"""For the agent's own writes: they never wait for a synchronous standby."""


def log(message: str) -> None:
    print(f"pgdock-agent[{os.environ.get('PGDOCK_NODE', '?')}]: {message}", file=sys.stderr, flush=True)


def set_status(text: str) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    STATUS.write_text(text + "\n")
    log(text)


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    port: int
    ssh_port: int


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"pgdock-agent: {name} is not set; the node's env file is missing")
    return value


def peers() -> list[Peer]:
    """Other members from PGDOCK_PEERS (name=address:port:ssh_port,...)."""
    out = []
    for item in filter(None, env("PGDOCK_PEERS", "").split(",")):
        name, _, rest = item.partition("=")
        address, port, ssh_port = rest.rsplit(":", 2)
        out.append(Peer(name, address, int(port), int(ssh_port)))
    return out


def data_peers() -> list[Peer]:
    data_nodes = set(env("PGDOCK_DATA_NODES").split(","))
    return [p for p in peers() if p.name in data_nodes]


def password(role: str) -> str:
    return (SECRETS / "passwords" / role).read_text().strip()


# ---------------------------------------------------------------- processes

def as_postgres(args: list[str], *, check: bool = True, capture: bool = False,
                env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Runs a command as the postgres user (from root), or directly when already postgres."""
    extra = {} if os.getuid() != 0 else {"user": "postgres", "group": "postgres", "extra_groups": []}
    environment = {**os.environ, "HOME": str(HOME), "PGPASSFILE": str(HOME / ".pgpass"), "USER": "postgres",
                   **(env_extra or {})}
    return subprocess.run(args, check=check, text=True, env=environment,
                          capture_output=capture, **extra, **kw)


def repmgr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return as_postgres(["repmgr", "-f", str(REPMGR_CONF), *args], check=check)


def pg_ctl(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(PGDATA), *args], check=check, capture=capture)


def pg_running() -> bool:
    if not PGDATA.joinpath("PG_VERSION").exists():
        return False
    return pg_ctl("status", check=False, capture=True).returncode == 0


def pg_start() -> None:
    """Starts PostgreSQL detached; its log goes through the FIFO to the container's stderr."""
    PG_HELD.unlink(missing_ok=True)
    if not pg_running():
        # captured: repmgr runs this through a pipe it may close early, and a SIGPIPE would kill pg_ctl
        pg_ctl("start", "-w", "-t", "3600", "-l", str(LOG_FIFO), capture=True)


def pg_stop(mode: str = "fast") -> None:
    """A deliberate stop (repmgr, operator): the supervisor leaves PostgreSQL down until pg_start."""
    PG_HELD.touch()
    pg_stop_unheld(mode)


def pg_stop_unheld(mode: str = "fast") -> None:
    """A stop the supervisor itself decides on (fencing, stepping down); it decides when to start again."""
    if pg_running():
        pg_ctl("stop", "-w", "-t", "3600", "-m", mode, capture=True)


def current_timeline() -> int | None:
    try:
        with local_conn() as conn:
            return conn.execute(STATE_SQL).fetchone()[1]
    except psycopg.Error:
        return None


def local_conn(dbname: str = "postgres", user: str = "postgres", **kw) -> psycopg.Connection:
    """A superuser connection over loopback TCP (scram), usable from root and postgres alike."""
    return psycopg.connect(host="127.0.0.1", port=int(env("PGDOCK_PORT")), dbname=dbname, user=user,
                           password=password("superuser") if user == "postgres" else password(user),
                           connect_timeout=3, autocommit=True, **kw)


def forward_postgres_log() -> None:
    """Copies PostgreSQL's log from the FIFO to our stderr, so `docker logs` shows it."""
    if not LOG_FIFO.exists():
        os.mkfifo(LOG_FIFO, 0o660)
        shutil.chown(LOG_FIFO, "postgres", "postgres")

    def pump() -> None:
        # O_RDWR keeps the FIFO open between PostgreSQL restarts (no EOF).
        with open(os.open(LOG_FIFO, os.O_RDWR), "rb", buffering=0) as fifo:
            while chunk := fifo.read(65536):
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()

    threading.Thread(target=pump, daemon=True).start()


# ---------------------------------------------------------------- secrets → files

def write_owned(path: Path, content: str | bytes, mode: int = 0o600, owner: str = "postgres") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if owner == "postgres" and os.getuid() == 0:
        shutil.chown(path.parent, "postgres", "postgres")
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    os.chmod(path, mode)
    if os.getuid() == 0:
        shutil.chown(path, owner, owner)


def install_secrets() -> None:
    """Copies the node's secrets (a read-only volume) to where each program wants them, with strict modes."""
    if not (SECRETS / "passwords").is_dir():
        raise SystemExit("pgdock-agent: no secrets in /run/pgdock/secrets; deliver them first "
                         "(pgdock-gen lab up / pgdock-gen deploy do)")
    lines = [f"*:*:*:{role}:{password(secret)}" for role, secret in
             (("postgres", "superuser"), ("repmgr", "repmgr"), ("replicator", "replication"))]
    write_owned(HOME / ".pgpass", "\n".join(lines) + "\n")
    for name in ("ca.crt", "node.crt", "node.key"):
        target = {"node.crt": "server.crt", "node.key": "server.key"}.get(name, name)
        write_owned(HOME / "tls" / target, (SECRETS / "tls" / name).read_bytes())
    ssh = HOME / ".ssh"
    write_owned(ssh / "id_ed25519", (SECRETS / "ssh" / "id_ed25519").read_bytes())
    write_owned(ssh / "authorized_keys", (SECRETS / "ssh" / "id_ed25519.pub").read_bytes())
    write_owned(ssh / "known_hosts", (SECRETS / "ssh" / "known_hosts").read_bytes(), 0o644)
    hosts = "".join(f"Host {p.address} {p.name}\n  Port {p.ssh_port}\n" for p in peers())
    write_owned(ssh / "config", hosts + "Host *\n  IdentityFile ~/.ssh/id_ed25519\n")
    os.chmod(ssh, 0o700)
    write_s3_config()
    if os.getuid() == 0:
        write_owned(Path("/etc/ssh/pgdock_host_ed25519_key"), (SECRETS / "ssh" / "host_ed25519").read_bytes(),
                    owner="root")


def write_s3_config() -> None:
    """~/.aws for barman-cloud (archive_command, backups, restores): keys from the secret s3.env,
    endpoint details from the env file. Checksums only when required: many S3-compatible stores
    reject the ones boto3 adds by default since 1.36."""
    source = SECRETS / "s3.env"
    if not source.exists():
        return
    values = dict(line.split("=", 1) for line in source.read_text().splitlines() if "=" in line
                  and not line.startswith("#"))
    keys = {k: values.get(k, "").strip().strip("'\"") for k in
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    write_owned(HOME / ".aws" / "credentials", "[default]\n" + "".join(
        f"{k.lower()} = {v}\n" for k, v in keys.items() if v))
    style = "path" if os.environ.get("PGDOCK_S3_PATH_STYLE") == "true" else "auto"
    config = (f"[default]\nregion = {os.environ.get('PGDOCK_S3_REGION', 'us-east-1')}\n"
              f"s3 =\n  addressing_style = {style}\n"
              "request_checksum_calculation = when_required\nresponse_checksum_validation = when_required\n")
    if (SECRETS / "s3-ca.crt").exists():
        config += f"ca_bundle = {SECRETS / 's3-ca.crt'}\n"
    write_owned(HOME / ".aws" / "config", config)


# ---------------------------------------------------------------- cluster discovery

@dataclass(frozen=True)
class PeerState:
    peer: Peer
    in_recovery: bool
    timeline: int
    system_id: int


STATE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT system_identifier FROM pg_control_system())
"""


def probe(peer: Peer) -> PeerState | None:
    """A peer's role and timeline, or None when it does not answer (down, or not bootstrapped)."""
    try:
        with psycopg.connect(host=peer.address, port=peer.port, dbname="repmgr", user="repmgr",
                             password=password("repmgr"), sslmode="verify-ca",
                             sslrootcert=str(HOME / "tls" / "ca.crt"), connect_timeout=2,
                             autocommit=True) as conn:
            in_recovery, timeline, system_id = conn.execute(STATE_SQL).fetchone()
            return PeerState(peer, in_recovery, timeline, system_id)
    except psycopg.Error:
        return None


def find_primary() -> PeerState | None:
    """The data peer that is primary now; with several (should never be), the newest timeline."""
    primaries = [s for s in map(probe, data_peers()) if s and not s.in_recovery]
    return max(primaries, key=lambda s: s.timeline, default=None)


def reachable(peer: Peer) -> bool:
    """The peer's host answers on its sshd or PostgreSQL port (a refusal also proves the host is there)."""
    for port in (peer.ssh_port, peer.port):
        try:
            with socket.create_connection((peer.address, port), timeout=1):
                return True
        except ConnectionRefusedError:
            return True
        except OSError:
            continue
    return False


def any_member_reachable() -> bool:
    members = peers()
    if not members:
        return True  # a one-node cluster has nobody to ask
    with ThreadPoolExecutor(len(members)) as pool:
        return any(pool.map(reachable, members))


def local_control() -> dict[str, str]:
    out = as_postgres([str(PG_BIN / "pg_controldata"), str(PGDATA)], capture=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def conninfo(peer: Peer) -> str:
    return (f"host={peer.address} port={peer.port} user=repmgr dbname=repmgr connect_timeout=2 "
            f"sslmode=verify-ca sslrootcert={HOME / 'tls' / 'ca.crt'}")


# ---------------------------------------------------------------- first starts

def write_pgdata_conf() -> None:
    """PGDATA's postgresql.conf only includes the generated one, so clone and rewind keep it right."""
    write_owned(PGDATA / "postgresql.conf", f"include '{CONFIG / 'postgresql.conf'}'\n", 0o600)


def initdb() -> None:
    PGDATA.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.chown(PGDATA, "postgres", "postgres")
    pwfile = RUN / "initdb.pw"
    write_owned(pwfile, password("superuser") + "\n")
    try:
        as_postgres([str(PG_BIN / "initdb"), "-D", str(PGDATA), "--data-checksums", "-U", "postgres",
                     "--pwfile", str(pwfile), "--auth-local=peer", "--auth-host=scram-sha-256",
                     "--encoding=UTF8", "--locale=C.UTF-8"], capture=True)
    finally:
        pwfile.unlink(missing_ok=True)
    write_pgdata_conf()


def create_role(conn: psycopg.Connection, role: str, secret: str, attributes: str) -> None:
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + attributes + " PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password(secret))))


def bootstrap_primary() -> None:
    set_status("first start as primary: initdb")
    initdb()
    pg_start()
    user, database = env("PGDOCK_USER"), env("PGDOCK_DATABASE")
    # In sync mode no standby exists yet to confirm these commits: they must not wait for one.
    with local_conn(options=LOCAL_COMMIT) as conn:
        create_role(conn, "repmgr", "repmgr", "SUPERUSER")
        create_role(conn, "replicator", "replication", "REPLICATION")
        conn.execute("CREATE DATABASE repmgr OWNER repmgr")
        conn.execute("ALTER ROLE repmgr SET search_path TO repmgr, public")
        # repmgr's metadata and event writes must never block on a missing sync standby (failover!)
        conn.execute("ALTER ROLE repmgr SET synchronous_commit TO local")
        create_role(conn, user, "app", "")
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user)))
    initdb_sql = CONFIG / "shared" / "initdb" / "initdb.sql"
    if initdb_sql.exists():
        as_postgres([str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-p", env("PGDOCK_PORT"),
                     "-h", "/var/run/postgresql", "-d", database, "-f", str(initdb_sql)], capture=True,
                    env_extra={"PGOPTIONS": LOCAL_COMMIT})
    repmgr("primary", "register")


def clone_from(primary: PeerState) -> None:
    set_status(f"first start as standby: cloning from {primary.peer.name}")
    PGDATA.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.chown(PGDATA, "postgres", "postgres")
    result = repmgr("-d", conninfo(primary.peer), "standby", "clone", "--fast-checkpoint", check=False)
    if result.returncode != 0:
        for child in PGDATA.iterdir():  # a half-made clone is worthless; the next try starts clean
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise subprocess.CalledProcessError(result.returncode, "repmgr standby clone")
    record_event(env("PGDOCK_NODE_ID"), "pgdock_clone", "1", "", f"cloned from {primary.peer.name}")
    write_pgdata_conf()
    pg_start()
    repmgr("standby", "register", "--force")


def barman_cloud_args() -> list[str]:
    endpoint = os.environ.get("PGDOCK_S3_ENDPOINT")
    return ["--cloud-provider", "aws-s3"] + (["--endpoint-url", endpoint] if endpoint else [])


def choose_backup(source: str, server: str, target: str) -> str:
    """The newest completed base backup that ended before the target (any, for `latest`)."""
    listing = as_postgres(["barman-cloud-backup-list", *barman_cloud_args(), "--format", "json", source, server],
                          capture=True).stdout
    done = [b for b in json.loads(listing)["backups_list"] if b.get("status") == "DONE"]
    if target != "latest":
        limit = dt.datetime.fromisoformat(target)
        done = [b for b in done if dt.datetime.strptime(b["end_time"], "%a %b %d %H:%M:%S %Y").replace(
            tzinfo=dt.UTC) <= limit] if done and "end_time" in done[0] else done
    if not done:
        raise SystemExit(f"pgdock-agent: no completed base backup of {server} in {source} before {target}")
    return sorted(done, key=lambda b: b["backup_id"])[-1]["backup_id"]


def restore_primary(server: str, target: str) -> None:
    """First start of a restored cluster: base backup from S3, WAL replay to the target, promote."""
    source = env("PGDOCK_BACKUP_URL")
    backup_id = choose_backup(source, server, target)
    set_status(f"first start: restoring {server} backup {backup_id} from {source}, target {target}")
    PGDATA.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.chown(PGDATA, "postgres", "postgres")
    as_postgres(["barman-cloud-restore", *barman_cloud_args(), source, server, backup_id, str(PGDATA)], capture=True)
    write_pgdata_conf()
    restore_command = " ".join(["barman-cloud-wal-restore", *barman_cloud_args(), source, server, "%f", "%p"])
    settings = {"restore_command": restore_command, "recovery_target_timeline": "latest",
                "recovery_target_action": "promote"}
    if target != "latest":
        settings["recovery_target_time"] = target
    with (PGDATA / "postgresql.auto.conf").open("a") as auto:
        auto.writelines(f"{k} = '{v}'\n" for k, v in settings.items())
    write_owned(PGDATA / "recovery.signal", "")
    pg_start()
    while True:
        with local_conn() as conn:
            in_recovery, last = conn.execute(
                "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()").fetchone()
        if not in_recovery:
            break
        time.sleep(1)
    with local_conn() as conn:
        for name in settings:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        conn.execute("SELECT pg_reload_conf()")
    details = json.dumps({"server": server, "backup_id": backup_id, "target": target,
                          "last_replayed": last.isoformat() if last else None})
    record_event(env("PGDOCK_NODE_ID"), "pgdock_restore", "1", "", details)
    repmgr("primary", "register", "--force")


def bootstrap_witness() -> None:
    set_status("first start as witness: initdb")
    initdb()
    pg_start()
    with local_conn(options=LOCAL_COMMIT) as conn:
        create_role(conn, "repmgr", "repmgr", "SUPERUSER")
        conn.execute("CREATE DATABASE repmgr OWNER repmgr")
        conn.execute("ALTER ROLE repmgr SET search_path TO repmgr, public")


def wait_for_primary(why: str) -> PeerState:
    set_status(f"waiting for a primary: {why}")
    while not (primary := find_primary()):
        time.sleep(2)
    return primary


# ---------------------------------------------------------------- later starts

def recover_crashed_primary() -> None:
    """A primary that crashed needs crash recovery before pg_rewind; single-user mode takes no clients."""
    if local_control().get("Database cluster state") not in ("shut down", "shut down in recovery"):
        log("data directory was not shut down cleanly; running crash recovery in single-user mode")
        as_postgres([str(PG_BIN / "postgres"), "--single", "-D", str(PGDATA), "postgres"],
                    stdin=subprocess.DEVNULL, capture=True)


def rejoin(primary: PeerState) -> bool:
    """Turns this former primary into a standby of `primary` by pg_rewind; False when that failed."""
    set_status(f"former primary: rejoining {primary.peer.name} (timeline {primary.timeline}) with pg_rewind")
    recover_crashed_primary()
    result = repmgr("node", "rejoin", "-d", conninfo(primary.peer), "--force-rewind",
                    "--config-files=postgresql.conf", check=False)
    if result.returncode != 0:
        return False
    record_event(env("PGDOCK_NODE_ID"), "pgdock_rejoin", "1", "", f"pg_rewind from {primary.peer.name}")
    write_pgdata_conf()
    pg_start()
    # rejoin leaves the node's metadata pointing at no upstream when it did not wait; make it exact
    repmgr("standby", "register", "--force", f"--upstream-node-id={primary_node_id(primary.peer)}", check=False)
    return True


def primary_node_id(peer: Peer) -> int:
    with psycopg.connect(conninfo(peer) + f" password={password('repmgr')}", autocommit=True) as conn:
        return conn.execute("SELECT node_id FROM repmgr.nodes WHERE type = 'primary' AND active").fetchone()[0]


def resume() -> None:
    """A later start: standbys resume streaming; a former primary must first prove nobody replaced it."""
    write_pgdata_conf()
    if env("PGDOCK_ROLE") == "witness":
        set_status("resuming as witness")
        pg_start()
        return
    if (PGDATA / "standby.signal").exists():
        set_status("resuming as standby")
        pg_start()
        return
    primary = find_primary()
    if primary is None:
        if not any_member_reachable() and not FORCE_PRIMARY.exists():
            FENCED.touch()
            set_status("fenced: former primary cannot reach any peer, so it cannot tell whether it was "
                       "replaced; staying down until a peer answers (`pgdock-agent unfence` overrides)")
            return
        FENCED.unlink(missing_ok=True)
        set_status("resuming as primary: no other primary found")
        pg_start()
        return
    control = local_control()
    mine = int(control.get("Latest checkpoint's TimeLineID", "0"))
    if str(primary.system_id) != control.get("Database system identifier"):
        why = f"{primary.peer.name} is primary of a different database (system id {primary.system_id})"
    elif primary.timeline < mine:
        set_status(f"resuming as primary: {primary.peer.name} is primary on an older timeline "
                   f"({primary.timeline} < {mine}); it has to rejoin")
        pg_start()
        return
    elif rejoin(primary):
        FENCED.unlink(missing_ok=True)
        return
    else:
        why = f"{primary.peer.name} is primary on timeline {primary.timeline} (ours: {mine}) and pg_rewind failed"
    PG_HELD.touch()
    set_status(f"refusing to start as a second primary: {why}; see the log, then rebuild this node")


def registered() -> bool:
    """This node has a repmgr record that describes it (a restored database carries the source's records)."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            row = conn.execute("SELECT conninfo FROM repmgr.nodes WHERE node_id = %s",
                               (int(env("PGDOCK_NODE_ID")),)).fetchone()
    except psycopg.Error:
        return False
    return row is not None and f"host={env('PGDOCK_ADDRESS')} " in row[0]


def ensure_registered() -> None:
    if registered():
        return
    if env("PGDOCK_ROLE") == "witness":
        primary = wait_for_primary("the witness registers with the primary")
        repmgr("-h", primary.peer.address, "-p", str(primary.peer.port), "-U", "repmgr", "-d", "repmgr",
               "witness", "register", "--force")
        return
    with local_conn() as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    repmgr("standby" if in_recovery else "primary", "register", "--force")


def converge() -> None:
    if PGDATA.joinpath("PG_VERSION").exists():
        resume()
    elif env("PGDOCK_ROLE") == "witness":
        bootstrap_witness()
    elif (primary := find_primary()) is not None:
        clone_from(primary)
    elif env("PGDOCK_ROLE") == "primary" and os.environ.get("PGDOCK_RESTORE_SERVER"):
        restore_primary(env("PGDOCK_RESTORE_SERVER"), env("PGDOCK_RESTORE_TARGET", "latest"))
    elif env("PGDOCK_ROLE") == "primary":
        bootstrap_primary()
    else:
        clone_from(wait_for_primary("a new standby clones from it"))
    if pg_running():
        ensure_registered()
        set_status("running")


# ---------------------------------------------------------------- supervision

class StopRequested(Exception):
    """SIGTERM arrived while the node was still converging."""


class Supervisor:
    """Keeps sshd, PostgreSQL and repmgrd up; shuts them down in order on SIGTERM."""

    def __init__(self) -> None:
        self.sshd: subprocess.Popen | None = None
        self.repmgrd: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.last_peer_seen = time.monotonic()
        self.next_primary_check = 0.0
        self.converging = False

    def start_sshd(self) -> None:
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-p", env("PGDOCK_SSH_PORT")])

    def start_repmgrd(self) -> None:
        extra = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.getuid() == 0 else {}
        self.repmgrd = subprocess.Popen(
            ["repmgrd", "-f", str(REPMGR_CONF), "--daemonize=false"],
            env={**os.environ, "HOME": str(HOME), "PGPASSFILE": str(HOME / ".pgpass")}, **extra)

    def guard_primary(self) -> None:
        """A running primary stops taking writes when it is cut off from every peer for PGDOCK_FENCE_SECONDS,
        and steps down (pg_rewind, rejoin) as soon as it sees another primary on a newer timeline."""
        if any_member_reachable():
            self.last_peer_seen = time.monotonic()
        elif time.monotonic() - self.last_peer_seen >= int(env("PGDOCK_FENCE_SECONDS", "8")):
            FENCED.touch()
            set_status("fenced: cut off from every peer; stopped PostgreSQL so no write can be lost "
                       "to a failover on the other side")
            record_event(env("PGDOCK_NODE_ID"), "pgdock_fenced", "1", "", "primary cut off from every peer")
            pg_stop_unheld()
            return
        if time.monotonic() >= self.next_primary_check:
            self.next_primary_check = time.monotonic() + 3
            other = find_primary()
            mine = current_timeline()
            if other is not None and mine is not None and other.timeline > mine:
                set_status(f"another primary ({other.peer.name}, timeline {other.timeline} > {mine}): stepping down")
                record_event(env("PGDOCK_NODE_ID"), "pgdock_step_down", "1", "",
                             f"{other.peer.name} is primary on timeline {other.timeline}")
                pg_stop_unheld()
                resume()

    def tick(self) -> None:
        if self.sshd is None or self.sshd.poll() is not None:
            self.start_sshd()
        role = env("PGDOCK_ROLE")
        running = pg_running()
        if running and role != "witness" and not (PGDATA / "standby.signal").exists():
            self.guard_primary()
        elif not PG_HELD.exists() and PGDATA.joinpath("PG_VERSION").exists() and not running:
            if not FENCED.exists():
                log("PostgreSQL is not running and nobody stopped it on purpose: starting it")
            resume()
            self.last_peer_seen = time.monotonic()
        repmgrd_alive = self.repmgrd is not None and self.repmgrd.poll() is None
        if not REPMGRD_HELD.exists() and not repmgrd_alive and pg_running() and registered():
            self.start_repmgrd()

    def shutdown(self, *_: object) -> None:
        self.stopping.set()
        if self.converging:
            raise StopRequested  # leave a long first start (clone, wait for a primary) at once

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(RUN, "postgres", "postgres")
        PG_HELD.unlink(missing_ok=True)
        REPMGRD_HELD.unlink(missing_ok=True)
        FENCED.unlink(missing_ok=True)
        EVENTS.touch()
        shutil.chown(EVENTS, "postgres", "postgres")
        forward_postgres_log()
        install_secrets()
        self.start_sshd()
        self.converging = True
        try:
            self.converge_until_done()
        except StopRequested:
            log("stop requested during start-up")
        finally:
            self.converging = False
        while not self.stopping.wait(1):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - if the supervisor died, PostgreSQL would die with it
                log(f"supervision step failed, retrying: {type(exc).__name__}: {exc}")
        self.stop_all()

    def converge_until_done(self) -> None:
        """Retries a failed first start in place: restarting the container would change its network
        namespace under the backup sidecar and lose the log of what went wrong."""
        while True:
            try:
                converge()
                return
            except (subprocess.CalledProcessError, psycopg.Error) as exc:
                set_status(f"start-up step failed, retrying in 5 s: {exc}")
                if self.stopping.wait(5):
                    return

    def stop_all(self) -> None:
        log("SIGTERM: stopping repmgrd, then PostgreSQL (fast shutdown)")
        for proc in (self.repmgrd,):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        pg_stop("fast")
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
        log("stopped cleanly")


# ---------------------------------------------------------------- repmgr callbacks and tools

def event_time(timestamp: str) -> str:
    """repmgr's "2026-01-02 03:04:05.678+00" or nothing, as ISO 8601 UTC, so logs of all nodes sort together."""
    try:
        moment = dt.datetime.fromisoformat(timestamp) if timestamp else dt.datetime.now(dt.UTC)
    except ValueError:
        moment = dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def record_event(node_id: str, event: str, success: str, timestamp: str, details: str) -> None:
    """repmgr's event_notification_command: log the event as JSON, then run the hooks.

    A hook's own result is logged only when it failed or said something, so the log
    shows real hook activity (a moved failover IP, a webhook error), not no-ops."""
    payload = {"time": event_time(timestamp), "node_id": int(node_id or 0), "node": env("PGDOCK_NODE", "?"),
               "event": event, "success": success == "1", "details": details}
    lines = [payload]
    failover = CONFIG / "shared" / "failover"
    hook_env = {**os.environ, "PGDOCK_EVENT_JSON": json.dumps(payload)}
    hooks = ([str(failover / "hetzner.sh"), event, success],
             [str(failover / "hook.sh"), event, payload["node"], success, payload["time"], details])
    for hook in hooks:
        if not Path(hook[0]).exists():
            continue
        result = subprocess.run(hook, env=hook_env, check=False, capture_output=True, text=True, timeout=120)
        said = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or said:
            lines.append({**payload, "time": event_time(""), "event": f"hook:{Path(hook[0]).name}",
                          "success": result.returncode == 0, "details": said[-500:]})
    with EVENTS.open("a") as out:
        out.writelines(json.dumps(line) + "\n" for line in lines)


def install_config(source: Path, target: Path) -> None:
    """Config carrier's job: make `target` hold exactly `source`'s files, in place (pg-dock's update_config.sh,
    but files gone from the source are removed too, so a rollback is exact). Each file is swapped in whole
    (write beside it, then rename), so a running node reading it never finds it empty or half written."""
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    for rel in sorted(wanted):
        dest, origin = target / rel, (source / rel).stat()
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = (source / rel).read_bytes()
        if dest.exists() and dest.read_bytes() == data:
            os.chmod(dest, origin.st_mode & 0o777)
            continue
        fresh = dest.with_name(f".pgdock-new-{dest.name}")
        fresh.write_bytes(data)
        os.chmod(fresh, origin.st_mode & 0o777)
        if os.getuid() == 0:
            os.chown(fresh, origin.st_uid, origin.st_gid)
        os.replace(fresh, dest)
    for path in sorted(target.rglob("*"), reverse=True):
        rel = path.relative_to(target)
        if path.is_file() and rel not in wanted and not rel.parts[0].startswith(".pgdock"):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()) and not rel.parts[0].startswith(".pgdock"):
            path.rmdir()
    print(f"installed {len(wanted)} files into {target}")


def signal_named(name: str, signum: int) -> None:
    """pkill without procps (the image has none): signal every process whose name is `name`."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                os.kill(int(comm.parent.name), signum)
        except (OSError, ValueError):
            continue


NODE_STATE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'),
       CASE WHEN pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END,
       CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()
            THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
            WHEN pg_is_in_recovery() THEN 0.0 END
"""
REPLICAS_SQL = """
SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
       coalesce(extract(epoch FROM replay_lag), 0)::float8, sync_state
FROM pg_stat_replication
"""


def archiving(conn: psycopg.Connection) -> str:
    """`ok`, `off`, or why WAL is not reaching the archive (shown by status)."""
    if conn.execute("SHOW archive_mode").fetchone()[0] == "off":
        return "off"
    failed, last_ok, last_failed, ready = conn.execute(
        "SELECT failed_count, last_archived_time, last_failed_time, "
        "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') FROM pg_stat_archiver"
    ).fetchone()
    if last_failed and (last_ok is None or last_failed > last_ok):
        return f"failing since {last_failed:%H:%M:%S} ({ready} WAL files waiting)"
    return "ok"


def node_state() -> dict:
    """What `pgdock-gen status` shows for this node, as JSON-ready data."""
    by_address = {p.address: p.name for p in peers()}
    state: dict = {"node": env("PGDOCK_NODE"), "role": "down", "timeline": None, "upstream": None,
                   "lag_bytes": None, "lag_seconds": None, "replicas": {},
                   "status": STATUS.read_text().strip() if STATUS.exists() else "starting",
                   "repmgrd": any(c.read_text().strip() == "repmgrd" for c in Path("/proc").glob("[0-9]*/comm")),
                   "registered": False, "archiving": None}
    if not pg_running():
        return state
    try:
        with local_conn() as conn:
            in_recovery, timeline, sender, lag_bytes, lag_seconds = conn.execute(NODE_STATE_SQL).fetchone()
            if env("PGDOCK_ROLE") == "witness":
                state["role"] = "witness"
            else:
                state |= {"role": "standby" if in_recovery else "primary", "timeline": timeline,
                          "upstream": by_address.get(sender, sender), "lag_bytes": lag_bytes,
                          "lag_seconds": lag_seconds}
                if not in_recovery:
                    state["archiving"] = archiving(conn)
                    state["replicas"] = {name: {"state": st, "lag_bytes": lb, "lag_seconds": ls, "sync": sync}
                                         for name, st, lb, ls, sync in conn.execute(REPLICAS_SQL).fetchall()}
    except psycopg.Error as exc:
        state["status"] = f"cannot query PostgreSQL: {exc}".strip()
    state["registered"] = registered()
    return state


def health() -> int:
    """Healthy = PostgreSQL accepts connections (the container's healthcheck)."""
    ready = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "/var/run/postgresql",
                            "-p", env("PGDOCK_PORT", "5432")], check=False)
    return ready.returncode


def to_container_log(message: str) -> None:
    """repmgr swallows its callbacks' output; the log FIFO puts our messages in `docker logs`."""
    try:
        fd = os.open(LOG_FIFO, os.O_WRONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "w") as fifo:
            fifo.write(f"pgdock-agent[{os.environ.get('PGDOCK_NODE', '?')}]: {message}\n")
    except OSError:
        log(message)


def main(argv: list[str]) -> int:
    try:
        return dispatch(argv)
    except (subprocess.CalledProcessError, psycopg.Error, OSError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        to_container_log(f"{' '.join(argv) or 'run'} failed: {exc} {detail}".strip())
        return 1


def dispatch(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("run", [])
    if command == "run":
        Supervisor().run()
    elif command == "health":
        return health()
    elif command == "install-config":
        install_config(Path(args[0]), Path(args[1]))
    elif command == "event":
        record_event(*(args + [""] * (5 - len(args)))[:5])
    elif command == "promote":
        return repmgr("standby", "promote", check=False).returncode
    elif command == "follow":
        return repmgr("standby", "follow", f"--upstream-node-id={args[0]}", check=False).returncode
    elif command == "pg-start":
        pg_start()
    elif command == "pg-stop":
        pg_stop()
    elif command == "pg-restart":
        pg_stop()
        pg_start()
    elif command == "pg-reload":
        pg_ctl("reload")
    elif command == "reload":  # after a config deploy: PostgreSQL and repmgrd reread their files
        pg_ctl("reload", capture=True)
        signal_named("repmgrd", signal.SIGHUP)
    elif command == "repmgrd-stop":
        REPMGRD_HELD.touch()
        signal_named("repmgrd", signal.SIGTERM)
    elif command == "repmgrd-start":
        REPMGRD_HELD.unlink(missing_ok=True)
    elif command == "unfence":
        FORCE_PRIMARY.touch()
        print("this node may now start as primary without reaching a peer; remove "
              f"{FORCE_PRIMARY} once the cluster is whole again")
    elif command == "state":
        print(json.dumps(node_state()))
    else:
        print(f"pgdock-agent: unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
