"""pgBackRest seen from the generator: its options for a spec, and its repository read from S3.

The options reach pgBackRest as PGBACKREST_* variables in each node's env file (no secret among them:
the S3 keys go to a 0600 file the agent writes from secrets/s3.env, contract.PGBACKREST_CONFIG). The
repository's backup.info (INI sections, one JSON value per backup) is read from S3 with the same boto3
client the barman layout uses, so `backup list` and `backup check` work from this machine, cluster up or
down, whichever engine the spec names.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
from urllib.parse import urlsplit

from . import contract
from .spec import Spec


def options(spec: Spec) -> dict[str, str]:
    """pgBackRest's options (name -> value) for a spec with `backup.engine: pgbackrest`."""
    assert spec.backup
    s3 = spec.backup.s3
    found = {
        "stanza": spec.backup.server,
        "repo1-type": "s3",
        "repo1-s3-bucket": s3.bucket,
        "repo1-s3-region": s3.region,
        "repo1-path": "/" + s3.prefix.strip("/"),
        "repo1-s3-uri-style": "path" if s3.path_style else "host",
        "repo1-s3-endpoint": f"s3.{s3.region}.amazonaws.com",
        "repo1-retention-full-type": "time",
        "repo1-retention-full": str(spec.backup.retention_days),
        "repo1-bundle": "y",
        "compress-type": contract.PGBACKREST_COMPRESS_TYPES[spec.backup.compression],
        "process-max": str(spec.backup.jobs),
        "archive-async": "y",
        "spool-path": contract.PGBACKREST_SPOOL,
        "pg1-path": str(contract.PGDATA),
        "pg1-socket-path": str(contract.SOCKET_DIR),
        "start-fast": "y",
        "log-level-file": "off",
        "config": contract.PGBACKREST_CONFIG,
    }
    if s3.endpoint:
        where = urlsplit(s3.endpoint)
        found["repo1-s3-endpoint"] = where.hostname or ""
        if where.port:
            found["repo1-storage-port"] = str(where.port)
    return found


def variables(spec: Spec) -> dict[str, str]:
    """The options as the environment pgBackRest reads (`repo1-s3-bucket` -> PGBACKREST_REPO1_S3_BUCKET)."""
    return {f"PGBACKREST_{name.upper().replace('-', '_')}": value for name, value in options(spec).items()}


def backup_info_key(prefix: str, stanza: str) -> str:
    """Where the stanza's backup.info lives in the bucket."""
    return f"{prefix.strip('/')}/backup/{stanza}/backup.info".lstrip("/")


def archive_prefix(prefix: str, stanza: str) -> str:
    """Where the stanza's WAL lives in the bucket (one folder per database id, `17-1`)."""
    return f"{prefix.strip('/')}/archive/{stanza}/".lstrip("/")


def parse_backup_info(text: str) -> list[dict[str, object]]:
    """backup.info's backups, oldest first, in pgdock's terms (the fields of backup.BaseBackup)."""
    info = configparser.ConfigParser(interpolation=None, strict=False)
    info.optionxform = str  # type: ignore[assignment, method-assign] - labels and keys keep their case
    info.read_string(text)
    majors = {key: json.loads(value).get("db-version", "") for key, value in
              (info.items("db:history") if info.has_section("db:history") else [])}
    found = []
    for label, value in (info.items("backup:current") if info.has_section("backup:current") else []):
        record = json.loads(value)
        start, stop = record.get("backup-archive-start", ""), record.get("backup-archive-stop", "")
        major = str(majors.get(str(record.get("db-id", "")), ""))
        found.append({
            "id": label,
            "status": "FAILED" if record.get("backup-error") else "DONE",
            "begin_time": _moment(record.get("backup-timestamp-start")),
            "end_time": _moment(record.get("backup-timestamp-stop")),
            "size": int(record.get("backup-info-repo-size", 0)),
            "begin_wal": start, "end_wal": stop, "timeline": str(int(start[:8], 16)) if start else "",
            "pg_major": int(major.split(".")[0]) if major.split(".")[0].isdigit() else 0,
        })
    return sorted(found, key=lambda b: str(b["id"]))


def _moment(epoch: object) -> str:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC).isoformat() if isinstance(epoch, int) else ""


def segment_name(key: str) -> str | None:
    """The WAL segment an archived object holds (`…/000000010000000000000004-<sha1>.zst`), None for
    anything else (history files, backup labels, partial segments)."""
    base = key.rsplit("/", 1)[-1]
    name, _, rest = base.partition("-")
    if len(name) == 24 and all(c in "0123456789ABCDEF" for c in name) and len(rest.split(".")[0]) == 40:
        return name
    return None
