"""Backups in S3, seen from the operator's machine: what is there, and whether it is fresh.

The nodes write with barman-cloud (WAL from archive_command, base backups from
the backup sidecar); this module only reads barman-cloud's layout with boto3:
`<prefix>/<cluster>/base/<backup id>/backup.info` and `<prefix>/<cluster>/wals/...`.
`backup now` runs inside the primary's sidecar, where the data directory is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import contract, pgbackrest
from .errors import PgdockError, UsageError
from .progress import polled, step
from .spec import Spec

if TYPE_CHECKING:
    from .cluster import Running, Target

S3_ENV = "s3.env"
"""secrets/s3.env: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (never in the spec, never in git)."""


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str
    server: str
    endpoint: str | None
    region: str
    path_style: bool
    ca_bundle: str | None
    engine: str = "barman"
    """How the objects are laid out: barman-cloud's `<server>/{base,wals}/` or pgBackRest's repository."""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def root(self) -> str:
        """Key prefix of this cluster's objects."""
        return f"{self.prefix}/{self.server}/".lstrip("/")


def location(spec: Spec) -> Location:
    if spec.backup is None:
        raise UsageError(f"cluster {spec.cluster!r} has no `backup` section in its spec; add one to use backups")
    s3 = spec.backup.s3
    return Location(s3.bucket, s3.prefix.strip("/"), spec.backup.server, s3.endpoint, s3.region, s3.path_style,
                    s3.ca_bundle, spec.backup.engine)


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def credentials(secrets: Path) -> dict[str, str]:
    path = secrets / S3_ENV
    if not path.exists():
        raise UsageError(f"{path} is missing: write AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... there "
                         "(mode 0600; it is git-ignored), then deploy the secrets")
    values = read_env(path)
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not values.get(k)]
    if missing:
        raise UsageError(f"{path}: {', '.join(missing)} not set")
    return values


def client(loc: Location, creds: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path" if loc.path_style else "auto"}, connect_timeout=5,
                    read_timeout=20, retries={"max_attempts": 2},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=loc.endpoint, region_name=loc.region, config=config,
                        verify=loc.ca_bundle or True, aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=creds.get("AWS_SESSION_TOKEN"))


@dataclass(frozen=True)
class BaseBackup:
    id: str
    status: str
    begin_time: str
    end_time: str
    size: int
    """Bytes stored in S3 (compressed)."""
    begin_wal: str
    end_wal: str
    timeline: str
    pg_major: int
    """The PostgreSQL major it was taken of (barman's `version`), 0 when barman did not record it."""


def _s3_error(loc: Location, exc: Exception) -> PgdockError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    hints = {"NoSuchBucket": f"bucket {loc.bucket!r} does not exist",
             "InvalidAccessKeyId": "the access key in secrets/s3.env is not known to the store",
             "SignatureDoesNotMatch": "the secret key in secrets/s3.env is wrong",
             "AccessDenied": "the key in secrets/s3.env may not read this bucket",
             "EndpointConnectionError": "cannot reach the S3 endpoint (network, or the store is down)"}
    where = loc.endpoint or "AWS S3"
    return PgdockError(f"S3 at {where}, {loc.url}: {hints.get(code, code)} ({exc})")


def _objects(s3: Any, loc: Location, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        found.extend(page.get("Contents", []))
    return found


def _major(version_num: str) -> int:
    """barman's `version` (PostgreSQL's server_version_num, 170006) as a major (17); 0 when unreadable."""
    return int(version_num) // 10000 if version_num.strip().isdigit() else 0


def list_backups(s3: Any, loc: Location) -> list[BaseBackup]:
    """Base backups, oldest first, from each backup.info barman-cloud wrote (pgBackRest: its one backup.info)."""
    if loc.engine == "pgbackrest":
        try:
            body = s3.get_object(Bucket=loc.bucket, Key=pgbackrest.backup_info_key(loc.prefix, loc.server))["Body"]
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "NoSuchKey":
                return []  # no backup yet: the stanza is made by the first archived WAL or backup
            raise _s3_error(loc, exc) from None
        return [BaseBackup(**fields) for fields in pgbackrest.parse_backup_info(body.read().decode())]  # type: ignore[arg-type]
    try:
        objects = _objects(s3, loc, loc.root + "base/")
        stored: dict[str, int] = {}
        for o in objects:  # barman-cloud leaves `size` empty: the stored bytes are what the operator pays for
            backup_id = o["Key"][len(loc.root + "base/"):].split("/", 1)[0]
            stored[backup_id] = stored.get(backup_id, 0) + o["Size"]
        infos = [o["Key"] for o in objects if o["Key"].endswith("/backup.info")]
        backups = []
        for key in infos:
            info = dict(line.split("=", 1) for line in
                        s3.get_object(Bucket=loc.bucket, Key=key)["Body"].read().decode().splitlines() if "=" in line)
            backups.append(BaseBackup(
                id=key.rsplit("/", 2)[-2], status=info.get("status", "?"), begin_time=info.get("begin_time", ""),
                end_time=info.get("end_time", ""), size=stored.get(key.rsplit("/", 2)[-2], 0),
                begin_wal=info.get("begin_wal", ""), end_wal=info.get("end_wal", ""),
                timeline=info.get("timeline", ""), pg_major=_major(info.get("version", ""))))
    except Exception as exc:  # botocore raises many kinds; each becomes one clear message
        raise _s3_error(loc, exc) from None
    return sorted(backups, key=lambda b: b.id)


def newest_wal(s3: Any, loc: Location) -> tuple[str, dt.datetime] | None:
    """The last archived WAL file (by name: timeline, then position) and when it was stored."""
    try:
        objects = _objects(s3, loc, pgbackrest.archive_prefix(loc.prefix, loc.server) if loc.engine == "pgbackrest"
                           else loc.root + "wals/")
    except Exception as exc:
        raise _s3_error(loc, exc) from None
    if loc.engine == "pgbackrest":
        named = [(name, o) for o in objects if (name := pgbackrest.segment_name(o["Key"]))]
        return max(((n, o["LastModified"]) for n, o in named), key=lambda item: item[0], default=None)
    # WAL segments only (24 hex digits, then the compression suffix): not .history, .backup or .partial files
    segments = [(name, o) for o in objects
                if len(name := o["Key"].rsplit("/", 1)[-1].split(".")[0]) == 24
                and o["Key"].rsplit("/", 1)[-1].split(".")[1:2] in ([], ["gz"], ["bz2"], ["snappy"], ["zst"], ["lz4"])]
    if not segments:
        return None
    name, newest = max(segments, key=lambda item: item[0])
    return name, newest["LastModified"]


def _age(moment: dt.datetime) -> dt.timedelta:
    return dt.datetime.now(dt.UTC) - moment.astimezone(dt.UTC)


def problems(s3: Any, loc: Location, pg_major: int, *, max_backup_age: dt.timedelta,
             max_wal_age: dt.timedelta) -> list[str]:
    """Why the backups are not healthy (empty when they are): for monitoring. `pg_major` is the spec's: a
    newest backup of another major (a spec changed to a new version but not to a new backup.server) restores
    nothing the cluster runs now."""
    found = []
    done = [b for b in list_backups(s3, loc) if b.status == "DONE"]
    if not done:
        found.append(f"no completed base backup in {loc.url}")
    elif done[-1].pg_major not in (0, pg_major):
        found.append(f"newest base backup {done[-1].id} is of PostgreSQL {done[-1].pg_major}, the spec says "
                     f"{pg_major}: after a major upgrade the backups go to a new backup.server")
    else:
        newest_end = dt.datetime.fromisoformat(done[-1].end_time)
        if _age(newest_end) > max_backup_age:
            found.append(f"newest base backup {done[-1].id} ended {newest_end:%Y-%m-%d %H:%M} UTC, "
                         f"older than {max_backup_age}")
    wal = newest_wal(s3, loc)
    if wal is None:
        found.append(f"no archived WAL in {loc.url}")
    elif _age(wal[1]) > max_wal_age:
        found.append(f"newest archived WAL {wal[0]} is {int(_age(wal[1]).total_seconds())} s old "
                     f"(limit {int(max_wal_age.total_seconds())} s): is archive_command failing?")
    return found


def run_on_primary(running: Running, progress: Callable[[str], None], secrets: Path | None = None) -> str:
    """Takes a base backup on whichever node is primary now; its sidecar's report. With the `secrets` of
    the cluster (its s3.env), the progress shows the bytes stored in S3 so far, the last backup's size
    as the estimate; without them, or when S3 cannot be read from here, just the time it takes."""
    loc = location(running.spec)
    primary = running.primary()
    if primary is None:
        raise PgdockError("no primary is running; a base backup is taken on the primary")
    watch = _watch(loc, secrets)
    with step(progress, f"base backup on {primary}", watch and watch[0]) as advance, \
            polled(watch[1], advance) if watch else nullcontext():
        return run_now(running.target(primary)).strip()


def _watch(loc: Location, secrets: Path | None) -> tuple[int | None, Callable[[], int]] | None:
    """How to follow a base backup from here: the last backup's size as the estimate, and a measure of the
    bytes the new one has stored in S3 so far; None without credentials here or when S3 cannot be read."""
    try:
        s3 = client(loc, credentials(secrets)) if secrets and loc.engine == "barman" else None
        if s3 is None:  # pgBackRest's progress would come from its lock file, in the sidecar: not yet read
            return None
        backups, before = list_backups(s3, loc), set(_stored(s3, loc))
    except Exception:  # watching is a nicety: whatever keeps it from starting, the backup runs without it
        return None
    estimate = next((b.size for b in reversed(backups) if b.status == "DONE"), None)
    return estimate, lambda: sum(_stored(s3, loc, skip=before).values())


def _stored(s3: Any, loc: Location, skip: Container[str] = ()) -> dict[str, int]:
    """Bytes stored per backup id (those in `skip` left out): finished objects plus the parts of multipart
    uploads in flight, since barman-cloud streams a backup's tar to S3 in parts. Taken before a backup,
    the ids are what is not new; during it, the new backup's bytes are what the progress shows."""
    base = loc.root + "base/"
    found: dict[str, int] = {}

    def add(key: str, size: int) -> None:
        backup_id = key[len(base):].split("/", 1)[0]
        if backup_id not in skip:
            found[backup_id] = found.get(backup_id, 0) + size

    try:
        for o in _objects(s3, loc, base):
            add(o["Key"], o["Size"])
        for upload in s3.list_multipart_uploads(Bucket=loc.bucket, Prefix=base).get("Uploads", []):
            parts = s3.list_parts(Bucket=loc.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            add(upload["Key"], sum(part["Size"] for part in parts.get("Parts", [])))
    except Exception as exc:  # botocore raises many kinds; each becomes one clear message
        raise _s3_error(loc, exc) from None
    return found


def table(loc: Location, backups: list[BaseBackup]) -> Any:
    """The base backups as a rich table (`pgdock-gen backup list`)."""
    from rich.table import Table

    out = Table(title=f"base backups in {loc.url}/{loc.server}", title_justify="left")
    for column in ("id", "status", "begin", "end", "size MB", "WAL from", "WAL to"):
        out.add_column(column)
    for b in backups:
        out.add_row(b.id, b.status, b.begin_time[:19], b.end_time[:19], f"{b.size / 1e6:.1f}", b.begin_wal,
                    b.end_wal)
    return out


def run_now(target: Target) -> str:
    """Takes a base backup (then applies retention) in the node's backup sidecar."""
    from python_on_whales.exceptions import DockerException

    container = target.container + contract.BACKUP_SUFFIX
    try:
        return target.client.execute(container, ["pgdock-backup", "now"], user="postgres")
    except DockerException as exc:
        output = ((exc.stdout or "") + (exc.stderr or "")).strip().splitlines()
        raise PgdockError(f"backup on {target.node.name} failed: {' / '.join(output[-4:])}") from None
