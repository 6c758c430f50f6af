"""`pgdock-gen restore`: a point-in-time restore into a NEW lab cluster, verified.

Restoring next to production, never over it, lets the operator check the result
before trusting it. The new cluster's first primary runs barman-cloud-restore and
replays archived WAL up to the target, then promotes; its standbys clone from it
like in any cluster. It archives under its own name, so the source's archive is
never written to.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import contract, events, lab
from .errors import PgdockError, UsageError
from .progress import polled, step
from .spec import Spec, parse

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Restored:
    lab: lab.Lab
    target: str
    recovered_to: str | None
    """Commit time of the last transaction replayed: at or before the target."""


def _target(to: str | None, latest: bool) -> str:
    if latest == (to is not None):
        raise UsageError("give exactly one of --to 'TIMESTAMP' and --latest")
    if latest:
        return "latest"
    try:
        moment = dt.datetime.fromisoformat(to)
    except ValueError:
        raise UsageError(f"--to {to!r} is not a timestamp like '2026-11-25 17:03:00+00'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def _restored_bytes(container: str) -> Callable[[], int]:
    """How far a restore has come: the bytes in the restoring node's data directory, where
    barman-cloud-restore unpacks the base backup and WAL is then replayed (read with `du`, so no
    estimate of the total: the backup in S3 is compressed)."""

    def measure() -> int:
        from . import docker

        return int(docker.client().execute(container, ["du", "-sb", str(contract.PGDATA)]).split()[0])

    return measure


def restored_raw(raw: dict, name: str) -> dict:
    """The restored cluster's spec: the source's under a new name, archiving to a folder of its own (the
    source's `backup.server` is dropped: two clusters writing WAL into one archive would corrupt both)."""
    backup = {key: value for key, value in (raw.get("backup") or {}).items() if key != "server"}
    return dict(raw, cluster=name, **({"backup": backup} if backup else {}))


def restore(spec_path: Path, spec: Spec, *, to: str | None, latest: bool, name: str | None,
            timeout: float = 600, progress: Progress = print) -> Restored:
    target = _target(to, latest)
    name = name or f"{spec.cluster}-restore"
    if name == spec.cluster:
        raise UsageError("--as must name a new cluster, not the source")
    from . import docker

    # a source rehearsed in the lab keeps its backups in the lab's S3 server, and its own secrets
    in_lab = docker.client().container.exists(contract.lab_s3_container(spec.cluster))
    source = lab.prepare(spec_path, spec, s3=in_lab)
    if source.lab_spec.backup is None:
        raise UsageError(f"cluster {spec.cluster!r} has no `backup` section: there is nothing to restore from")
    restored_spec = parse(json.dumps(restored_raw(source.lab_spec.raw, name)), f"{spec_path} (as {name})")
    secrets = source.repo / "secrets" if in_lab else spec_path.parent / "secrets"
    restore_from = lab.RestoreFrom(server=source.lab_spec.backup.server, target=target, secrets=secrets,
                                   s3_container=source.s3_container)
    with step(progress, f"restoring {spec.cluster} ({target}) into the new lab cluster {name}") as advance, \
            polled(_restored_bytes(contract.container(name, restored_spec.primary.name)), advance, every=3):
        restored, _ = lab.up(spec_path, restored_spec, restore=restore_from, timeout=timeout, progress=progress)
    found = [e for e in events.collect(restored.running) if e["event"] == contract.EVENT_RESTORE]
    if not found or not found[-1]["success"]:
        raise PgdockError(f"the restore did not complete: {found[-1]['details'] if found else 'no restore event'}; "
                          f"see `docker logs {restored.container(restored.lab_spec.primary.name)}`")
    recovered_to = json.loads(found[-1]["details"]).get("last_replayed")
    if target != "latest" and recovered_to and dt.datetime.fromisoformat(recovered_to) > \
            dt.datetime.fromisoformat(target):
        raise PgdockError(f"recovery replayed past the target: {recovered_to} > {target}")
    return Restored(restored, target, recovered_to)
