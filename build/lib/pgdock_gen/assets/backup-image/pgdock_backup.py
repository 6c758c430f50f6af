#!/usr/bin/python3
"""pgdock-backup: the backup sidecar of a data node (barman-cloud to S3).

It runs next to PostgreSQL with the same data volume, and at each time of
`backup.schedule` takes a compressed base backup with barman-cloud-backup, but
only on the node that is primary at that moment, so each scheduled backup is
taken once per cluster whatever failovers happened. After each backup,
barman-cloud-backup-delete applies the retention window, which also removes the
WAL no remaining backup needs. WAL itself is archived by PostgreSQL's
archive_command (barman-cloud-wal-archive) in the database container.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, "/usr/local/lib/pgdock")
import psycopg  # noqa: E402
from croniter import croniter  # noqa: E402
from pgdock_agent import contract  # noqa: E402
from pgdock_agent.files import write_s3_config  # noqa: E402
from pgdock_agent.node import env, log  # noqa: E402

BACKUP_LOG = str(contract.BACKUP_LOG)


def cloud_args() -> list[str]:
    endpoint = os.environ.get(contract.ENV_S3_ENDPOINT)
    return ["--cloud-provider", "aws-s3"] + (["--endpoint-url", endpoint] if endpoint else [])


SOCKET = str(contract.SOCKET_DIR)
"""Shared with the database container: the sidecar logs in as the postgres OS user (peer authentication)."""


def is_primary() -> bool:
    with psycopg.connect(host=SOCKET, port=env(contract.ENV_PORT), user="postgres", dbname="postgres",
                         connect_timeout=5) as conn:
        return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def run(command: list[str]) -> str:
    """Runs a barman-cloud command; its error output becomes our error message."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        lines = [ln for ln in output.splitlines() if "ERROR" in ln or "rror" in ln] or output.splitlines()[-3:]
        raise RuntimeError(f"{command[0]} failed: {' / '.join(lines)}")
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
    destination, server = env(contract.ENV_BACKUP_URL), env(contract.ENV_CLUSTER)
    check_destination(destination)
    started = time.monotonic()
    run(["barman-cloud-backup", *cloud_args(), "--gzip", "--immediate-checkpoint", "-h", SOCKET,
         "-p", env(contract.ENV_PORT), "-U", "postgres", "-d", "postgres", destination, server])
    took = time.monotonic() - started
    # WAL given up during an archive outage left a gap; recovery from this backup on does not cross it
    Path(contract.ARCHIVE_GAP).unlink(missing_ok=True)
    days = env(contract.ENV_BACKUP_RETENTION_DAYS)
    run(["barman-cloud-backup-delete", *cloud_args(), "--retention-policy", f"RECOVERY WINDOW OF {days} DAYS",
         destination, server])
    message = f"base backup of {server} to {destination} done in {took:.1f} s; retention: {days} days"
    with open(BACKUP_LOG, "a") as out:
        out.write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {message}\n")
    return message


def scheduler() -> None:
    schedule = env(contract.ENV_BACKUP_SCHEDULE)
    log(f"backup sidecar: base backups at '{schedule}' (UTC) when this node is primary")
    while True:
        now = dt.datetime.now(dt.UTC)
        due = croniter(schedule, now).get_next(dt.datetime)
        time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
        try:
            if is_primary():
                log(backup_now())
        except Exception as exc:  # a failed run must not stop the schedule; the next one retries
            log(f"scheduled backup failed: {exc}")


def main(argv: list[str]) -> int:
    write_s3_config()
    command = argv[0] if argv else "run"
    if command == "run":
        scheduler()
    elif command == "now":
        try:
            print(backup_now())
        except RuntimeError as exc:
            print(f"pgdock-backup: {exc}", file=sys.stderr)
            return 1
    else:
        print(f"pgdock-backup: unknown command {command!r} (run | now)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
