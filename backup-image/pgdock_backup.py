#!/usr/bin/python3
"""pgdock-backup: the backup sidecar of a data node (barman-cloud or pgBackRest to S3: backup.engine).

It runs next to PostgreSQL with the same data volume, and at each time of
`backup.schedule` takes a compressed base backup (barman-cloud-backup, or
pgBackRest's full backup), but only on the node that is primary at that moment,
so each scheduled backup is taken once per cluster whatever failovers happened.
After each backup, retention (barman-cloud-backup-delete, or pgBackRest's own
expire) removes the backups outside the window and the WAL no remaining backup
needs. WAL itself is archived by PostgreSQL's archive_command (pgdock-agent
archive) in the database container.

While the scheduler runs (waiting or backing up) it touches a heartbeat file;
`pgdock-backup health`, the container's healthcheck, checks its age. A schedule
croniter cannot use is logged once, clearly, and the sidecar then idles without a
heartbeat (unhealthy) instead of dying in a restart loop of tracebacks.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, "/usr/local/lib/pgdock")
from croniter import croniter  # noqa: E402
from pgdock_agent import contract, pgbackrest  # noqa: E402
from pgdock_agent.cloudwal import barman_cloud_args as cloud_args  # noqa: E402
from pgdock_agent.cloudwal import compression_args, jobs  # noqa: E402
from pgdock_agent.node import env, log  # noqa: E402

BACKUP_LOG = str(contract.BACKUP_LOG)
HEARTBEAT = Path(contract.BACKUP_HEARTBEAT)
IDLE_SECONDS = 3600
"""How long the sidecar sleeps at a time once it found its schedule unusable (it waits for a redeploy)."""


def beat() -> None:
    """Tells the healthcheck the scheduler is alive."""
    HEARTBEAT.touch()


def fresh(mtime: float | None, now: float, stale: float = contract.BACKUP_STALE_SECONDS) -> bool:
    """Whether a heartbeat written at `mtime` (None: never) still vouches for the scheduler at `now`."""
    return mtime is not None and now - mtime <= stale


def health() -> int:
    """The healthcheck: 0 when the heartbeat is fresh, 1 (with the reason) when it is not."""
    try:
        mtime: float | None = HEARTBEAT.stat().st_mtime
    except FileNotFoundError:
        mtime = None
    if fresh(mtime, time.time()):
        return 0
    print("pgdock-backup: the scheduler is not running (no recent heartbeat); see the container's log",
          file=sys.stderr)
    return 1


SOCKET = str(contract.SOCKET_DIR)
"""Shared with the database container: the sidecar logs in as the postgres OS user (peer authentication)."""


def is_primary() -> bool:
    import psycopg  # here, not at the top: the healthcheck must stay cheap

    with psycopg.connect(host=SOCKET, port=env(contract.ENV_PORT), user="postgres", dbname="postgres",
                         connect_timeout=5) as conn:
        return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def beating(command: list[str]) -> subprocess.CompletedProcess:
    """Runs a command to its end; a base backup may take hours, so the heartbeat goes on meanwhile."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=contract.BACKUP_HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                beat()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run(command: list[str], name: str | None = None) -> str:
    """Runs a barman-cloud command (`name`: what the error calls it, the program by default); its error
    output becomes our error message."""
    result = beating(command)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        lines = [ln for ln in output.splitlines() if "ERROR" in ln or "rror" in ln] or output.splitlines()[-3:]
        raise RuntimeError(f"{name or command[0]} failed: {' / '.join(lines)}")
    return output


def check_destination(destination: str) -> None:
    """barman-cloud creates a missing bucket by itself, hiding a typo; a backup must go where the spec says."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = destination.removeprefix("s3://").split("/", 1)[0]
    try:
        boto3.client("s3", endpoint_url=os.environ.get(contract.ENV_S3_ENDPOINT) or None).head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = {"404": f"bucket {bucket!r} does not exist (create it, or fix backup.s3.bucket)",
                  "403": f"access to bucket {bucket!r} denied: check the keys in secrets/s3.env"}.get(code, str(exc))
        raise RuntimeError(reason) from None
    except BotoCoreError as exc:
        raise RuntimeError(f"cannot reach S3: {exc}") from None


def backup_now() -> str:
    """One compressed base backup of this (primary) node, then retention."""
    if not is_primary():
        raise RuntimeError("this node is a standby; base backups are taken on the primary")
    destination, server = env(contract.ENV_BACKUP_URL), env(contract.ENV_BACKUP_SERVER)
    if pgbackrest.chosen():
        return _pgbackrest_backup(destination, server)
    check_destination(destination)
    started = time.monotonic()
    # barman-cloud-backup with backup.compression (gzip at level 1: at barman's 9 a backup ran at one core's
    # 12 MB/s) and backup.jobs parallel uploads
    run([contract.AGENT, "base-backup", *cloud_args(), *compression_args(), "-J", str(jobs()), "--immediate-checkpoint",
         "-h", SOCKET, "-p", env(contract.ENV_PORT), "-U", "postgres", "-d", "postgres", destination, server],
        "barman-cloud-backup")
    took = time.monotonic() - started
    # WAL given up during an archive outage left a gap; recovery from this backup on does not cross it
    Path(contract.ARCHIVE_GAP).unlink(missing_ok=True)
    days = env(contract.ENV_BACKUP_RETENTION_DAYS)
    run(["barman-cloud-backup-delete", *cloud_args(), "--retention-policy", f"RECOVERY WINDOW OF {days} DAYS",
         destination, server])
    return _done(f"base backup of {server} to {destination} done in {took:.1f} s; retention: {days} days")


def _pgbackrest_backup(destination: str, server: str) -> str:
    """A full backup with pgBackRest (the stanza created if the archive has not made it yet); its retention
    (`repo1-retention-full`, by time) expires old backups and their WAL itself."""
    started = time.monotonic()
    error = pgbackrest.with_stanza("backup", "--type=full", runner=beating)
    if error:
        raise RuntimeError(f"pgbackrest backup failed: {error}")
    took = time.monotonic() - started
    Path(contract.ARCHIVE_GAP).unlink(missing_ok=True)
    return _done(f"base backup of {server} to {destination} (pgBackRest) done in {took:.1f} s; retention: "
                 f"{env(contract.ENV_BACKUP_RETENTION_DAYS)} days")


def _done(message: str) -> str:
    """Logs a finished backup where the metrics read it; the message."""
    with open(BACKUP_LOG, "a") as out:
        out.write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {message}\n")
    return message


class BadSchedule(Exception):
    """backup.schedule is not something croniter can turn into a next time."""


def next_due(schedule: str, now: dt.datetime) -> dt.datetime:
    """The next time `schedule` comes due after `now`; BadSchedule (one clear line) when croniter cannot say."""
    try:
        return croniter(schedule, now).get_next(dt.datetime)
    except (ValueError, TypeError, KeyError) as exc:  # croniter's own errors derive from ValueError
        raise BadSchedule(f"backup.schedule {schedule!r} cannot be used ({exc}); no scheduled backups until a "
                          "corrected spec is rendered and deployed (`pgdock-gen validate` checks it)") from None


def wait_until(due: dt.datetime, sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleeps until `due`, touching the heartbeat at least every BACKUP_HEARTBEAT_SECONDS."""
    while (left := (due - dt.datetime.now(dt.UTC)).total_seconds()) > 0:
        sleep(min(left, contract.BACKUP_HEARTBEAT_SECONDS))
        beat()


def scheduler(schedule: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """Runs forever: a base backup at each due time while this node is primary."""
    HEARTBEAT.unlink(missing_ok=True)  # a heartbeat from before a restart must not vouch for this run
    log(f"backup sidecar: base backups at '{schedule}' (UTC) when this node is primary")
    while True:
        try:
            due = next_due(schedule, dt.datetime.now(dt.UTC))
        except BadSchedule as exc:
            log(str(exc))
            HEARTBEAT.unlink(missing_ok=True)  # unhealthy: the healthcheck shows something is wrong
            while True:
                sleep(IDLE_SECONDS)
        beat()
        wait_until(due, sleep)
        try:
            if is_primary():
                log(backup_now())
        except Exception as exc:  # a failed run must not stop the schedule; the next one retries
            log(f"scheduled backup failed: {exc}")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    if command == "health":
        return health()
    from pgdock_agent.files import write_s3_config

    write_s3_config()
    if command == "run":
        scheduler(env(contract.ENV_BACKUP_SCHEDULE))
    elif command == "now":
        try:
            print(backup_now())
        except RuntimeError as exc:
            print(f"pgdock-backup: {exc}", file=sys.stderr)
            return 1
    else:
        print(f"pgdock-backup: unknown command {command!r} (run | now | health)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
