"""Backups with `backup.engine: pgbackrest` (issue 14): archive, base backups, `backup list`/`check`,
point-in-time restore and the archive across a failover, against the lab's S3 server over TLS. The
barman-cloud engine's module (test_backup.py) covers outages and retention."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pgdock_gen import backup, lab, pgbackrest, restore

from .conftest import (
    LabCluster,
    archive_everything,
    bring_up,
    burst_then_fail_over,
    cli_last,
    restore_to_a_moment,
    restored_spec,
    s3_of,
)


@pytest.fixture(scope="module")
def pbr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    the_cluster = bring_up(tmp_path_factory.mktemp("pbr"), "backup-pgbackrest.yaml")
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


def archived(pbr: LabCluster) -> set[str]:
    """The WAL segments in the stanza's archive, read from S3."""
    loc, s3 = s3_of(pbr)
    return {name for o in backup._objects(s3, loc, pgbackrest.archive_prefix(loc.prefix, loc.server))
            if (name := pgbackrest.segment_name(o["Key"]))}


def test_backup_now_list_and_check(pbr: LabCluster) -> None:
    result = cli_last(pbr, "backup", "now")
    assert result.returncode == 0, result.stderr
    assert "(pgBackRest) done" in result.stdout
    switched = archive_everything(pbr)
    assert switched in archived(pbr)
    listing = cli_last(pbr, "backup", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    report = json.loads(listing.stdout)
    assert [(b["status"], b["pg_major"]) for b in report["backups"]] == [("DONE", 17)]
    assert report["backups"][0]["size"] > 1_000_000
    assert report["newest_wal"]["name"] >= report["backups"][0]["end_wal"]
    assert cli_last(pbr, "backup", "check", "--max-wal-age", "5m").returncode == 0


def test_point_in_time_restore_gives_exactly_the_rows_at_t(pbr: LabCluster) -> None:
    name = "pgdock-e2e-pbr-pitr"
    try:
        restored = restore_to_a_moment(pbr, name)
        assert {r.role for r in restored.status().values()} == {"primary", "standby", "witness"}
        # the restored cluster archives under its own name (a stanza its first push creates)
        new_primary = restored.primary()
        assert archive_everything(restored, new_primary) in archived(restored)
        assert restored.sql(new_primary, "SELECT failed_count FROM pg_stat_archiver") == "0"
    finally:
        lab.down(pbr.spec_path, restored_spec(pbr, name), remove_volumes=True, progress=lambda m: None)


def test_archived_wal_survives_the_primarys_death_and_the_archive_follows_failover(pbr: LabCluster) -> None:
    new_primary = burst_then_fail_over(pbr, lambda: archived(pbr))
    assert archive_everything(pbr, new_primary) in archived(pbr)  # the new timeline, same stanza
    assert cli_last(pbr, "backup", "now").returncode == 0  # on the new primary
    name = "pgdock-e2e-pbr-last"
    try:
        result = restore.restore(pbr.spec_path, pbr.spec, to=None, latest=True, name=name, progress=print)
        restored = LabCluster(pbr.spec_path, result.lab.spec, result.lab)
        assert restored.sql(restored.primary(), "SELECT count(*) FROM after_failover") == "42"
    finally:
        lab.down(pbr.spec_path, restored_spec(pbr, name), remove_volumes=True, progress=lambda m: None)
