"""Backups (issue 5): barman-cloud to a real S3-protocol server (moto) in the lab, and restores from it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator

import pytest
from python_on_whales import docker

from pgdock_gen import backup, contract, events, lab, restore

from .conftest import (
    LabCluster,
    archive_everything,
    bring_up,
    burst_then_fail_over,
    cli_last,
    restore_to_a_moment,
    restored_spec,
    s3_of,
    wait_until,
)


@pytest.fixture(scope="module")
def bk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    the_cluster = bring_up(tmp_path_factory.mktemp("bk"), "backup.yaml")
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


def test_backup_now_and_list(bk: LabCluster) -> None:
    result = cli_last(bk, "backup", "now")
    assert result.returncode == 0, result.stderr
    assert "base backup of pgdock-e2e-bk" in result.stdout
    archive_everything(bk)
    listing = cli_last(bk, "backup", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    report = json.loads(listing.stdout)
    assert [b["status"] for b in report["backups"]] == ["DONE"]
    assert report["backups"][0]["size"] > 1_000_000
    assert report["newest_wal"]["name"] >= report["backups"][0]["end_wal"]
    assert cli_last(bk, "backup", "check", "--max-wal-age", "5m").returncode == 0


def test_point_in_time_restore_gives_exactly_the_rows_at_t(bk: LabCluster) -> None:
    name = "pgdock-e2e-bk-pitr"
    try:
        restored = restore_to_a_moment(bk, name)
        assert {r.role for r in restored.status().values()} == {"primary", "standby", "witness"}
    finally:
        lab.down(bk.spec_path, restored_spec(bk, name), remove_volumes=True, progress=lambda m: None)


def test_s3_outage_keeps_wal_on_disk_and_archive_catches_up(bk: LabCluster) -> None:
    """The S3 server is cut off the network (stopping moto would lose its in-memory store)."""
    primary = bk.primary()
    s3_container = bk.lab.s3_container
    address = bk.lab.lab_spec.backup.s3.endpoint.split("//")[1].split(":")[0]
    docker.network.disconnect(bk.lab.network, s3_container)
    try:
        bk.sql(primary, "CREATE TABLE IF NOT EXISTS during_outage (id int)")
        for _ in range(3):
            bk.sql(primary, "INSERT INTO during_outage SELECT generate_series(1, 1000)")
            bk.sql(primary, "SELECT pg_switch_wal()")
        wait_until(lambda: (bk.status()[primary].archiving or "").startswith("failing"), 120,
                   "status to report the failing archive")
        assert bk.sql(primary, "SELECT pg_is_in_recovery()") == "f"
        waiting = int(bk.sql(primary, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"))
        assert waiting >= 2
        check = cli_last(bk, "backup", "check", "--max-wal-age", "4s")
        assert check.returncode == 1 and "cannot reach the S3 endpoint" in check.stderr, check.stderr
    finally:
        docker.network.connect(bk.lab.network, s3_container, ip=address)
    archive_everything(bk, timeout=180)
    assert bk.sql(primary, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == "0"
    assert cli_last(bk, "backup", "check", "--max-wal-age", "2m").returncode == 0


def test_a_long_s3_outage_gives_wal_up_past_the_bound_and_warns_until_a_base_backup(bk: LabCluster) -> None:
    """Issue 10, row 6: with S3 cut off, 48 WAL files (768 MB) do not pile up in pg_wal (which would fill a
    disk and stop PostgreSQL): past postgres.max_wal_keep they are given up, `pgdock_wal_dropped` is raised,
    status warns of the gap, and the next base backup clears the warning."""
    primary = bk.primary()
    s3_container = bk.lab.s3_container
    address = bk.lab.lab_spec.backup.s3.endpoint.split("//")[1].split(":")[0]
    limit_mb = 256 + 64 + 128 + 3 * 16  # max_wal_keep + wal_keep_size + max_wal_size + the files in use
    docker.network.disconnect(bk.lab.network, s3_container)
    try:
        bk.sql(primary, "CREATE TABLE IF NOT EXISTS long_outage (id int)")
        bk.sql(primary, "DO $$ BEGIN FOR i IN 1..48 LOOP INSERT INTO long_outage VALUES (i); "
                        "PERFORM pg_switch_wal(); END LOOP; END $$")
        wait_until(lambda: any(e["event"] == contract.EVENT_WAL_DROPPED and e["node"] == primary
                               for e in events.collect(bk.running)), 240, "the primary to give WAL up")

        def wal_mb() -> int:
            bk.sql(primary, "CHECKPOINT")
            return int(bk.sql(primary, "SELECT (sum(size) / 1048576)::int FROM pg_ls_waldir()"))

        wait_until(lambda: wal_mb() <= limit_mb, 120, f"pg_wal to shrink under {limit_mb} MB")
        assert bk.sql(primary, "SELECT pg_is_in_recovery()") == "f"
        assert "gap since" in (bk.status()[primary].archiving or "")
    finally:
        docker.network.connect(bk.lab.network, s3_container, ip=address)
    result = cli_last(bk, "backup", "now")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: "gap" not in (bk.status()[primary].archiving or "gap"), 120, "the gap warning to clear")


def test_archive_follows_failover_retention_keeps_what_the_window_needs(bk: LabCluster) -> None:
    loc, s3 = s3_of(bk)
    # two more base backups, then age the two oldest by rewriting their backup.info (the store stays real)
    for _ in range(2):
        assert cli_last(bk, "backup", "now").returncode == 0
    backups = backup.list_backups(s3, loc)
    assert len(backups) >= 3
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    for aged in backups[:2]:
        key = f"{loc.root}base/{aged.id}/backup.info"
        text = s3.get_object(Bucket=loc.bucket, Key=key)["Body"].read().decode()
        text = "\n".join(f"{k}={old}" if (k := line.split("=", 1)[0]) in ("begin_time", "end_time") else line
                         for line in text.splitlines())
        s3.put_object(Bucket=loc.bucket, Key=key, Body=text.encode())
    # issue 14: a WAL file PostgreSQL was told is archived is in S3, even when the primary dies right then
    # (some of the six are answered from the spool's markers)
    burst_then_fail_over(bk, lambda: {o["Key"].rsplit("/", 1)[-1].split(".")[0]
                                      for o in backup._objects(s3, loc, loc.root + "wals/")})
    archive_everything(bk)
    assert cli_last(bk, "backup", "now").returncode == 0  # applies retention
    kept = [b.id for b in backup.list_backups(s3, loc)]
    assert backups[0].id not in kept, "an expired backup the window does not need was kept"
    assert backups[1].id in kept, "the newest backup before the window start is needed to recover to it"
    wals = {o["Key"].rsplit("/", 1)[-1].split(".")[0] for o in backup._objects(s3, loc, loc.root + "wals/")}
    assert not any(w < backups[1].begin_wal for w in wals if len(w) == 24), "WAL older than any backup was kept"
    name = "pgdock-e2e-bk-last"
    try:
        result = restore.restore(bk.spec_path, bk.spec, to=None, latest=True, name=name, progress=print)
        restored = LabCluster(bk.spec_path, result.lab.spec, result.lab)
        assert restored.sql(restored.primary(), "SELECT count(*) FROM after_failover") == "42"
    finally:
        lab.down(bk.spec_path, restored_spec(bk, name), remove_volumes=True, progress=lambda m: None)


def test_bad_s3_settings_give_clear_errors(bk: LabCluster) -> None:
    loc, s3 = s3_of(bk)
    wrong = backup.Location("no-such-bucket", loc.prefix, loc.server, loc.endpoint, loc.region, True, None)
    with pytest.raises(Exception, match="bucket 'no-such-bucket' does not exist"):
        backup.list_backups(s3, wrong)
    sidecar = f"{bk.spec.cluster}-{bk.primary()}-backup"
    result = subprocess.run(["docker", "exec", "-e", "PGDOCK_BACKUP_URL=s3://no-such-bucket/x", sidecar,
                             "pgdock-backup", "now"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "bucket 'no-such-bucket' does not exist" in result.stderr, result.stderr


def test_backup_sidecars_turn_healthy(bk: LabCluster) -> None:
    """Each data node's sidecar has a healthcheck (`pgdock-backup health`: the scheduler's heartbeat is fresh)."""
    for node in bk.spec.nodes:
        sidecar = contract.backup_container(bk.spec.cluster, node.name)
        wait_until(lambda name=sidecar: docker.container.inspect(name).state.health.status == "healthy", 120,
                   f"{sidecar} healthy")
        probe = subprocess.run(["docker", "exec", sidecar, "pgdock-backup", "health"], capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr
