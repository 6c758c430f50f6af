"""PgBouncer on a data node: it forwards to whichever node is primary now, not to its own PostgreSQL.

So clients of any node's pooler keep their connections through a switchover or a failover: the agent
repoints the pool (admin `RELOAD`, clients stay connected) when its prober sees another primary. A
switchover pauses every pool first (`pgdock-agent pooler pause`: transactions in flight finish, new ones
wait); the agent resumes its pool as soon as it sees the new primary ready, or after
contract.POOLER_PAUSE_MAX_SECONDS.

No password is in any file here: clients' SCRAM secrets come from `auth_query` through
contract.POOLER_AUTH_FUNCTION, run as contract.POOLER_ROLE, which logs in with the node's certificate
(pg_hba `cert`, pg_ident map). The admin console listens on a private socket, for the postgres OS user only.

The decisions (where to forward, when to resume, the files' text) are pure functions; `Pooler` applies them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import contract
from .files import write_owned
from .node import RUN, env, log
from .postgres import as_postgres, local_conn

DIR = RUN / "pgbouncer"
CONFIG = DIR / "pgbouncer.ini"
HBA = DIR / "hba.conf"
TARGET = DIR / "target"
"""host:port the pool forwards to now (what `pooler pause` records as the primary it paused on)."""
PAUSED = Path(contract.POOLER_PAUSED)
RESTART_SECONDS = 5.0
ADMIN_TIMEOUT = 30
"""PAUSE waits for the transactions in flight: a switchover gives them this long."""
TLS = Path(contract.TLS)

AUTH_SQL = (
    f"""DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{contract.POOLER_ROLE}') THEN
            CREATE ROLE {contract.POOLER_ROLE} LOGIN;
          END IF;
        END $$""",
    "CREATE SCHEMA IF NOT EXISTS pgdock AUTHORIZATION postgres",
    "REVOKE ALL ON SCHEMA pgdock FROM PUBLIC",
    f"""CREATE OR REPLACE FUNCTION {contract.POOLER_AUTH_FUNCTION}(p_user text, OUT usename text, OUT passwd text)
        RETURNS record LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $f$
          SELECT rolname::text, rolpassword::text FROM pg_authid
           WHERE rolname = p_user AND rolcanlogin AND NOT rolsuper AND NOT rolreplication
             AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
             AND rolname NOT IN ('postgres', 'repmgr', 'replicator', '{contract.POOLER_ROLE}')
             AND rolname NOT LIKE 'pg\\_%'
        $f$""",
    f"REVOKE ALL ON FUNCTION {contract.POOLER_AUTH_FUNCTION}(text) FROM PUBLIC",
    f"GRANT USAGE ON SCHEMA pgdock TO {contract.POOLER_ROLE}",
    f"GRANT EXECUTE ON FUNCTION {contract.POOLER_AUTH_FUNCTION}(text) TO {contract.POOLER_ROLE}",
)
"""Idempotent: the primary's agent runs it once per container life (a cluster that adds `pooler` later gets it
too). Superusers, replication roles and pgdock's own are never served: they cannot log in through a pooler."""

USERS = DIR / "userlist.txt"
USERS_TEXT = '"postgres" ""\n'
"""The admin console's user, listed so PgBouncer does not look it up with auth_query (it would, in the admin
database, and refuse: "bouncer config error"). No password: it logs in by peer on the private socket only."""
HBA_TEXT = """# PgBouncer's clients. Written by pgdock-agent.
# the admin console: the postgres OS user on the private socket only, never over the network
local    pgbouncer  postgres                 peer
hostssl  all        postgres  0.0.0.0/0      reject
hostssl  all        postgres  ::/0           reject
# applications: TLS and SCRAM (secrets from auth_query), from anywhere PostgreSQL's pg_hba allows them
hostssl  all        all       0.0.0.0/0      scram-sha-256
hostssl  all        all       ::/0           scram-sha-256
"""


@dataclass(frozen=True)
class Settings:
    """This node's pooler, from its env file."""

    node: str
    address: str
    port: int
    pool_mode: str
    database: str

    @classmethod
    def from_env(cls) -> Settings | None:
        """None on a node without a pooler (the witness; a cluster without `pooler`)."""
        port = os.environ.get(contract.ENV_POOLER_PORT)
        if not port or env(contract.ENV_ROLE) == "witness":
            return None
        return cls(env(contract.ENV_NODE), env(contract.ENV_ADDRESS), int(port),
                   env(contract.ENV_POOL_MODE, contract.DEFAULT_POOL_MODE), env(contract.ENV_DATABASE))


def forward_to(own: str, i_am_primary: bool, primary_seen: str | None, current: str | None) -> str | None:
    """Where the pool forwards (host:port): this node while it is the primary, else the primary the prober sees
    ready; while none is seen (a failover under way) the last one, so clients wait rather than fail."""
    if i_am_primary:
        return own
    return primary_seen or current


def resume_due(paused_on: str, target: str | None, paused_for: float) -> bool:
    """A paused pool resumes once it forwards to another primary than the one it was paused on (the switchover
    promoted it and it is ready), or when the pause has lasted POOLER_PAUSE_MAX_SECONDS."""
    return (target is not None and target != paused_on) or paused_for >= contract.POOLER_PAUSE_MAX_SECONDS


def config_text(settings: Settings, target: str) -> str:
    """pgbouncer.ini forwarding the cluster's database to `target`: TLS both ways (the primary's certificate and name
    checked), SCRAM with secrets from auth_query, logging connections off (every client would log twice)."""
    host, _, port = target.rpartition(":")
    # the cluster's database only: auth_query's function lives there, and auth_dbname set globally or on a
    # `*` entry would also apply to the admin console, which PgBouncer refuses ("bouncer config error")
    return f"""; PgBouncer of {settings.node}. Written by pgdock-agent: forwards to the primary {target}.
[databases]
{settings.database} = host={host} port={port} dbname={settings.database} auth_dbname={settings.database}

[pgbouncer]
listen_addr = {settings.address}
listen_port = {settings.port}
unix_socket_dir = {DIR}
unix_socket_mode = 0700
auth_type = hba
auth_hba_file = {HBA}
auth_file = {USERS}
auth_user = {contract.POOLER_ROLE}
auth_query = SELECT usename, passwd FROM {contract.POOLER_AUTH_FUNCTION}($1)
admin_users = postgres
pool_mode = {settings.pool_mode}
max_client_conn = 1000
default_pool_size = 20
max_prepared_statements = 200
ignore_startup_parameters = extra_float_digits
server_login_retry = 1
server_connect_timeout = 3
log_connections = 0
log_disconnections = 0
client_tls_sslmode = require
client_tls_cert_file = {TLS / "server.crt"}
client_tls_key_file = {TLS / "server.key"}
client_tls_ca_file = {TLS / "ca.crt"}
server_tls_sslmode = verify-full
server_tls_ca_file = {TLS / "ca.crt"}
server_tls_cert_file = {TLS / "server.crt"}
server_tls_key_file = {TLS / "server.key"}
"""


def accepting(timeout: float = 0.5) -> bool | None:
    """Whether this node's PgBouncer accepts TCP connections on its address (None: no pooler here). A connect,
    not a login: the health API must not cost the pool a server connection."""
    settings = Settings.from_env()
    if settings is None:
        return None
    try:
        with socket.create_connection((settings.address, settings.port), timeout=timeout):
            return True
    except OSError:
        return False


def admin(*commands: str) -> subprocess.CompletedProcess:
    """Runs admin console commands in one session, in order, as the postgres OS user (peer)."""
    port = env(contract.ENV_POOLER_PORT)
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(DIR), "-p", port, "-U", "postgres",
            "-d", "pgbouncer"]
    for command in commands:
        args += ["-c", command]
    try:
        return as_postgres(args, check=False, capture=True, timeout=ADMIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1, "", f"no answer from the admin console in {ADMIN_TIMEOUT} s")


def pause() -> int:
    """`pgdock-agent pooler pause`: waits for the transactions in flight, holds new ones, and records the
    primary paused on (the agent resumes when it sees another)."""
    if Settings.from_env() is None:
        return 0
    result = admin("PAUSE")
    if result.returncode != 0:
        log(f"pooler pause failed: {result.stderr.strip()}")
        return 1
    write_owned(PAUSED, TARGET.read_text() if TARGET.exists() else "", 0o644)
    log("pooler paused: transactions in flight finished, new ones wait for the new primary")
    return 0


def resume() -> int:
    """`pgdock-agent pooler resume`: lifts a pause (a pool that is not paused stays as it is)."""
    if Settings.from_env() is None:
        return 0
    PAUSED.unlink(missing_ok=True)
    result = admin("RESUME")
    if result.returncode != 0 and "not paused" not in result.stderr:
        log(f"pooler resume failed: {result.stderr.strip()}")
        return 1
    return 0


class Pooler:
    """Runs pgbouncer as the postgres user and keeps it forwarding to the primary."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.own = f"{settings.address}:{env(contract.ENV_PORT)}"
        self.process: subprocess.Popen | None = None
        self.started = -RESTART_SECONDS
        self.target: str | None = None
        self.auth_ready = False

    def step(self, i_am_primary: bool, primary_seen: str | None) -> None:
        """One turn of the supervisor's loop: the auth function on a new primary, the pool's target, the process,
        and a pause that is due to end."""
        if i_am_primary and not self.auth_ready:
            with local_conn(self.settings.database) as conn:
                for statement in AUTH_SQL:
                    conn.execute(statement)
            self.auth_ready = True
        elif not i_am_primary:
            self.auth_ready = False
        target = forward_to(self.own, i_am_primary, primary_seen, self.target)
        if target is None:
            return
        changed = target != self.target
        if changed:
            write_owned(CONFIG, config_text(self.settings, target))
            write_owned(HBA, HBA_TEXT)
            write_owned(USERS, USERS_TEXT)
            write_owned(TARGET, target, 0o644)
            self.target = target
        if self.process is None or self.process.poll() is not None:
            self._start()
        elif changed:
            self._reload(target)
        if PAUSED.exists() and resume_due(PAUSED.read_text().strip(), target, time.time() - PAUSED.stat().st_mtime):
            PAUSED.unlink(missing_ok=True)
            result = admin("RESUME")
            log(f"pooler resumed on {target}" if result.returncode == 0 else
                f"pooler resume failed: {result.stderr.strip()}")

    def _start(self) -> None:
        if time.monotonic() - self.started < RESTART_SECONDS:
            return
        self.started = time.monotonic()
        extra = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.getuid() == 0 else {}
        log(f"starting pgbouncer on {self.settings.address}:{self.settings.port}, forwarding to {self.target}")
        self.process = subprocess.Popen(["pgbouncer", str(CONFIG)], **extra)

    def _reload(self, target: str) -> None:
        result = admin("RELOAD")
        log(f"pooler now forwards to {target}" if result.returncode == 0 else
            f"pooler reload failed: {result.stderr.strip()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
