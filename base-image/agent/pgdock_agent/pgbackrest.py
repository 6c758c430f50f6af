"""pgBackRest in the containers, when the spec says `backup.engine: pgbackrest`.

Its options come from the node's env file (PGBACKREST_*, rendered by the generator's pgbackrest.py), its
S3 keys from the 0600 file files.write_s3_config writes. This module runs its commands and reads their
answers; what to do with them stays where barman's answers are used (archive.py's bound on pg_wal, the
sidecar's schedule, bootstrap's restore), so both engines share those decisions.

Archiving is pgBackRest's asynchronous archive-push: one call forks a process that pushes the ready
files ahead, `process-max` at a time, and later calls are answered from its spool. A stanza that does not
exist yet (a new cluster, a restored one archiving under its own name, the first start after an upgrade)
is created by the first push that misses it: the archive starts with the database, not with the sidecar's
first backup.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable

from . import contract

MISSING_STANZA = "archive.info"
"""What pgBackRest's error names when the stanza was never created (it cannot load that file)."""


def chosen() -> bool:
    """Whether this node's backups use pgBackRest."""
    return os.environ.get(contract.ENV_BACKUP_ENGINE) == "pgbackrest"


def command(*args: str, stanza: str | None = None) -> list[str]:
    return ["pgbackrest", *([f"--stanza={stanza}"] if stanza else []), *args]


def error_of(result: subprocess.CompletedProcess) -> str:
    """pgBackRest's error: its ERROR line with the indented lines that go on with it (HINTs left out), else
    the last lines it printed."""
    text = ((result.stderr or "") + (result.stdout or "")).strip().splitlines()
    found: list[str] = []
    for line in text:
        if "ERROR" in line or (found and line[:1].isspace() and "HINT:" not in line):
            found.append(line.strip())
        elif found:
            break
    return " / ".join(found or text[-3:]) or f"exit {result.returncode}"


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _plain(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def with_stanza(*args: str, runner: Runner = _plain) -> str | None:
    """Runs a command that needs the stanza (archive-push, backup), creating the stanza first when the command
    found none; None when it succeeded, else why not. Checking up front would cost every call a round trip.
    `runner` runs each command (the sidecar's keeps its heartbeat going through a long backup)."""
    result = runner(command(*args))
    if result.returncode != 0 and MISSING_STANZA in error_of(result):
        created = runner(command("stanza-create"))
        if created.returncode != 0:
            return f"stanza-create failed: {error_of(created)}"
        result = runner(command(*args))
    return None if result.returncode == 0 else error_of(result)


def push(path: str) -> str | None:
    """archive-push of one WAL file (`%p`); None when it is stored, else why not."""
    return with_stanza("archive-push", path)


def run(*args: str, stanza: str | None = None, runner: Runner = _plain) -> str:
    """A pgBackRest command that must succeed (RuntimeError with its error otherwise); its output. `runner`
    runs it (bootstrap's runs as the postgres user)."""
    result = runner(command(*args, stanza=stanza))
    if result.returncode != 0:
        raise RuntimeError(f"pgbackrest {args[0]} failed: {error_of(result)}")
    return result.stdout


def backups(info_json: str) -> list[dict[str, object]]:
    """`info --output=json` of one stanza: its completed backups, oldest first (label, stop time)."""
    stanzas = json.loads(info_json)
    found = [{"label": b["label"], "stop": dt.datetime.fromtimestamp(b["timestamp"]["stop"], dt.UTC)}
             for s in stanzas for b in s.get("backup", []) if not b.get("error")]
    return sorted(found, key=lambda b: b["stop"])


def choose(info_json: str, target: str) -> str | None:
    """The newest completed backup that ended before `target` (an ISO time, or `latest`); None if none did."""
    done = backups(info_json)
    if target != "latest":
        limit = dt.datetime.fromisoformat(target)
        done = [b for b in done if b["stop"] <= limit]
    return str(done[-1]["label"]) if done else None


def restore_args(label: str, target: str, jobs: str) -> list[str]:
    """`restore` of backup `label` into PGDATA, replaying to `target` (or to the archive's end), then
    promoting; pgBackRest writes restore_command and the recovery_target_* settings itself."""
    args = ["restore", f"--set={label}", f"--process-max={jobs}", "--target-timeline=latest"]
    if target == "latest":
        return args
    moment = dt.datetime.fromisoformat(target).astimezone(dt.UTC)
    return [*args, "--type=time", f"--target={moment:%Y-%m-%d %H:%M:%S.%f}+00", "--target-action=promote"]


RECOVERY_SETTINGS = ("restore_command", "recovery_target_time", "recovery_target_action", "recovery_target_timeline")
"""What pgBackRest's restore writes into postgresql.auto.conf, reset once the restored node is primary."""
