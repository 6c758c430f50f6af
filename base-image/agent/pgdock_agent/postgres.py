"""PostgreSQL on this node: running programs as postgres, pg_ctl, local connections, the data directory.

Nothing here decides anything; the supervisor and repmgr's callbacks call these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg

from . import contract
from .node import RUN, env, password

HOME = Path(contract.HOME)
PGDATA = Path(contract.PGDATA)
PG_BIN = Path(f"/usr/lib/postgresql/{os.environ.get('PG_VERSION', '17')}/bin")
LOG_FIFO = RUN / "postgres.log"
PG_HELD = RUN / "postgres.held"
"""Present while someone (repmgr, an operator) stopped PostgreSQL on purpose: do not restart it."""
PAUSED = Path(contract.PAUSED)
SOCKET_DIR = Path(contract.SOCKET_DIR)
PROC = Path("/proc")
REPMGRD_STATE = Path(contract.REPMGRD_STATE_FILE)
LOCAL_COMMIT = "-c synchronous_commit=local"
"""For the agent's own writes: they never wait for a synchronous standby."""
TIMELINE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""


def as_postgres(args: list[str], *, check: bool = True, capture: bool = False,
                env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Runs a command as the postgres user (from root), or directly when already postgres."""
    extra = {} if os.getuid() != 0 else {"user": "postgres", "group": "postgres", "extra_groups": []}
    environment = {**os.environ, "HOME": str(HOME), "PGPASSFILE": str(HOME / ".pgpass"), "USER": "postgres",
                   **(env_extra or {})}
    return subprocess.run(args, check=check, text=True, env=environment, capture_output=capture, **extra, **kw)


def repmgr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return as_postgres(["repmgr", "-f", str(contract.REPMGR_CONF), *args], check=check)


def pg_ctl(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(PGDATA), *args], check=check, capture=capture)


def has_data() -> bool:
    return PGDATA.joinpath("PG_VERSION").exists()


def is_standby() -> bool:
    return PGDATA.joinpath("standby.signal").exists()


def running() -> bool:
    """The postmaster of PGDATA is alive, without a process per tick. After a kill the pid file is stale and
    a fresh container reuses small pids (the agent's own threads among them), so the pid must belong to a
    `postgres` process working in PGDATA, not merely exist."""
    try:
        pid = int(PGDATA.joinpath("postmaster.pid").read_text().split("\n", 1)[0])
        proc = Path(f"/proc/{pid}")
        if (proc / "comm").read_text().strip() != "postgres":
            return False
        return os.readlink(proc / "cwd") == str(PGDATA)
    except PermissionError:
        return True  # a postgres process we may not inspect: the postmaster, as another user
    except (OSError, ValueError):
        return False


def start() -> None:
    """Starts PostgreSQL detached; its log goes through the FIFO to the container's stderr. A hold (repmgr's
    or an operator's stop) ends only once the start is over: until then the supervisor must not decide for
    a node that is neither stopped on purpose nor running (it would rejoin or start it a second time)."""
    try:
        if not running():
            # captured: repmgr runs this through a pipe it may close early, and a SIGPIPE would kill pg_ctl
            pg_ctl("start", "-w", "-t", "3600", "-l", str(LOG_FIFO), capture=True)
    finally:
        PG_HELD.unlink(missing_ok=True)


def stop_held(mode: str = "fast") -> None:
    """A deliberate stop (repmgr, operator): the supervisor leaves PostgreSQL down until `start`."""
    PG_HELD.touch()
    stop(mode)


def stop(mode: str = "fast") -> None:
    """A stop the supervisor itself decides on (fencing, stepping down); it decides when to start again.
    A fast stop ends every session at once, so no write is acknowledged after this returns."""
    if running():
        pg_ctl("stop", "-w", "-t", "3600", "-m", mode, capture=True)


def local_conn(dbname: str = "postgres", user: str = "postgres", **kw) -> psycopg.Connection:
    """A superuser connection over loopback TCP (scram), usable from root and postgres alike."""
    return psycopg.connect(host="127.0.0.1", port=int(env(contract.ENV_PORT)), dbname=dbname, user=user,
                           password=password("superuser") if user == "postgres" else password(user),
                           connect_timeout=3, autocommit=True, **kw)


def timeline() -> int | None:
    """The running server's timeline, or None when it does not answer."""
    try:
        with local_conn() as conn:
            return conn.execute(TIMELINE_SQL).fetchone()[1]
    except psycopg.Error:
        return None


def control() -> dict[str, str]:
    out = as_postgres([str(PG_BIN / "pg_controldata"), str(PGDATA)], capture=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def stored_identity() -> tuple[int | None, int | None]:
    """(system id, timeline) of a stopped data directory, from pg_control."""
    if not has_data():
        return None, None
    values = control()
    system_id = values.get("Database system identifier")
    timeline = values.get("Latest checkpoint's TimeLineID")
    return (int(system_id) if system_id else None), (int(timeline) if timeline else None)


def upstream_host(auto_conf: Path | None = None) -> str | None:
    """The host a standby's primary_conninfo names, read from postgresql.auto.conf where repmgr writes it
    (clone, follow, rejoin): a file read, never a wait on PostgreSQL. None when there is none."""
    try:
        lines = (auto_conf or PGDATA / "postgresql.auto.conf").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    setting = [line for line in lines if line.split("=", 1)[0].strip() == "primary_conninfo"]
    if not setting:
        return None
    quoted = setting[-1].split("=", 1)[1].strip()  # the last one counts, as PostgreSQL reads the file
    value = quoted[1:-1].replace("''", "'").replace("\\'", "'") if quoted[:1] == "'" == quoted[-1:] else quoted
    try:
        return psycopg.conninfo.conninfo_to_dict(value).get("host") or None
    except psycopg.ProgrammingError:
        return None


def node_id(name: str) -> int | None:
    """A member's id in repmgr's metadata (the local copy), None when unreadable."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            row = conn.execute("SELECT node_id FROM repmgr.nodes WHERE node_name = %s", (name,)).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def registered_members() -> int | None:
    """How many nodes repmgr has registered (what its election counts), from the running primary."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            return conn.execute("SELECT count(*) FROM repmgr.nodes WHERE active").fetchone()[0]
    except psycopg.Error:
        return None


def repmgrd_paused() -> bool | None:
    """Whether repmgr's shared state says repmgrd is paused on this node (None: PostgreSQL or repmgr's
    extension does not answer, e.g. a witness not yet registered)."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            return bool(conn.execute("SELECT repmgr.repmgrd_is_paused()").fetchone()[0])
    except psycopg.Error:
        return None


def pause_repmgrd(pause: bool) -> bool:
    """What `repmgr service pause | unpause` does on each node: repmgr keeps it in shared memory and in its
    state file (contract.REPMGRD_STATE_FILE), so it holds across PostgreSQL restarts. False when PostgreSQL
    does not answer."""
    try:
        with local_conn("repmgr", "repmgr") as conn:
            conn.execute("SELECT repmgr.repmgrd_pause(%s)", (pause,))
    except psycopg.Error:
        return False
    return True


def write_pgdata_conf() -> None:
    """PGDATA's postgresql.conf only includes the generated one, so clone and rewind keep it right."""
    from .files import write_owned

    write_owned(PGDATA / "postgresql.conf", f"include '{contract.CONFIG / 'postgresql.conf'}'\n", 0o600)


def clear_stale_locks() -> list[Path]:
    """Removes lock files a killed PostgreSQL left whose PID now belongs to another process; returns them.

    The data volume and the container's writable layer (the socket directory) survive a kill and a
    `docker start`, but PIDs start again from 1: PostgreSQL refuses to start while the PID in a lock file
    is alive ("lock file ... already exists"), whatever process holds it now. Run when the container
    starts, where no PostgreSQL of this container runs yet; a lock naming a live postgres stays."""
    removed = []
    for lock in [PGDATA / "postmaster.pid", *SOCKET_DIR.glob(".s.PGSQL.*.lock")]:
        try:
            pid = int(lock.read_text(encoding="utf-8").split("\n", 1)[0])
            name = (PROC / str(pid) / "comm").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            name = None  # the lock, or the process, is gone
        except (OSError, ValueError):
            continue
        if name != "postgres" and lock.exists():
            lock.unlink()
            removed.append(lock)
    return removed


def empty_pgdata() -> None:
    """Removes what is in the data directory (a half-made clone or bootstrap is worthless)."""
    if PGDATA.is_dir():
        for child in PGDATA.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def make_pgdata() -> None:
    PGDATA.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.chown(PGDATA, "postgres", "postgres")


def recover_crash() -> None:
    """A primary that crashed needs crash recovery before pg_rewind; single-user mode takes no clients."""
    if control().get("Database cluster state") not in ("shut down", "shut down in recovery"):
        as_postgres([str(PG_BIN / "postgres"), "--single", "-D", str(PGDATA), "postgres"],
                    stdin=subprocess.DEVNULL, capture=True)


def forward_log() -> None:
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


def to_container_log(message: str) -> None:
    """repmgr swallows its callbacks' output; the log FIFO puts our messages in `docker logs`."""
    try:
        fd = os.open(LOG_FIFO, os.O_WRONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "w") as fifo:
            fifo.write(f"pgdock-agent[{os.environ.get(contract.ENV_NODE, '?')}]: {message}\n")
    except OSError:
        print(message, file=sys.stderr)
