"""The major upgrade on the real engine (issue 13), through the real CLI, on a lab of its own: PostgreSQL 15,
two data nodes and a witness (tests/e2e/specs/upgrade.yaml), upgraded to 17 in place. In this order:

0. with backups, `--check` refuses while the spec keeps the 15 cluster's backup folder (backup.server);
1. `upgrade --check` changes nothing: the same postmaster runs (the check shared its pid namespace, so
   pg_upgrade's probe start of the old server saw it), the same data, no directory left beside PGDATA;
2. a real-world failure: a view on a column PostgreSQL 17 dropped (pg_stat_bgwriter.buffers_backend) passes
   `--check` but breaks pg_upgrade's schema restore; the upgrade rolls back and the cluster runs 15 again,
   healthy, with identical data;
3. the upgrade: every data node reports 17, every row, the index, the sequence's value, the view and the
   contrib extension (hstore) intact, on the standby too, standbys streaming (brought over by rsync
   --hard-links: their data files linked to their own old copies), every step an event, the write downtime
   reported;
   and the first base backup of 17 taken in the new backup folder, the 15 backups kept in the old one;
4. `backup check` against the old folder names the version change; `restore --latest` of the upgraded
   cluster into a new lab cluster gives every row on 17;
5. `--finish` deletes data.old;
6. killing the primary still fails over by itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pgdock_gen import backup, contract, events, lab, restore, spec

from .conftest import LabCluster, bring_up, wait_until

ROWS = 100_000
FINGERPRINT = {
    "rows": "SELECT count(*), sum(id), md5(string_agg(payload || attrs::text, ',' ORDER BY id)) FROM items",
    "index": "SELECT indexrelid::regclass || ':' || indisvalid FROM pg_index WHERE indrelid = 'items'::regclass "
             "ORDER BY 1",
    "sequence": "SELECT last_value FROM tickets",
    "view": "SELECT count(*), max(id) FROM heavy_items",
    "extension": "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'",
    "by_index": "SELECT id FROM items WHERE payload = 'item-77777'",
}
NEW_FOLDER = "pgdock-e2e-up-pg17"
BLOCKER = "CREATE VIEW pgdock_e2e_blocker AS SELECT buffers_backend FROM pg_stat_bgwriter"
"""Valid on 15; PostgreSQL 17 moved buffers_backend out of pg_stat_bgwriter, so pg_upgrade's schema restore
fails on it (after its checks passed): the commonest way a real upgrade fails."""


@pytest.fixture(scope="module")
def up15(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    the_cluster = bring_up(tmp_path_factory.mktemp("upgrade"), "upgrade.yaml")
    primary = the_cluster.primary()
    for statement in (
        "CREATE EXTENSION hstore",
        "CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL, attrs hstore)",
        f"INSERT INTO items SELECT i, 'item-' || i, hstore('n', i::text) FROM generate_series(1, {ROWS}) i",
        "CREATE INDEX items_payload ON items (payload)",
        "CREATE SEQUENCE tickets START 1000",
        "SELECT nextval('tickets') FROM generate_series(1, 7)",
        "CREATE VIEW heavy_items AS SELECT id, payload FROM items WHERE id % 10 = 0",
        "ANALYZE items",
    ):
        the_cluster.sql(primary, statement, "app")
    pgdock(the_cluster, "backup", "now")  # a base backup of 15 in the backup folder the cluster started with
    # the spec names the new major; the lab still runs 15
    text = the_cluster.spec_path.read_text()
    the_cluster.spec_path.write_text(text.replace("version: 15", "version: 17"))
    yield the_cluster
    lab.down(the_cluster.spec_path, spec.load(the_cluster.spec_path), remove_volumes=True, progress=lambda m: None)


def cli(the_cluster: LabCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgdock_gen", "upgrade", "-f", str(the_cluster.spec_path), "--lab",
                           *args], capture_output=True, text=True, timeout=1200)


def pgdock(the_cluster: LabCluster, *args: str) -> subprocess.CompletedProcess:
    """`pgdock-gen ARGS -f SPEC --lab` (subcommands of a group, like `backup now`); must succeed."""
    result = subprocess.run([sys.executable, "-m", "pgdock_gen", *args, "-f", str(the_cluster.spec_path), "--lab"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr[-3000:]}"
    return result


def fingerprint(the_cluster: LabCluster, node: str) -> dict[str, str]:
    return {name: the_cluster.sql(node, query, "app") for name, query in FINGERPRINT.items()}


def replicated(the_cluster: LabCluster, node: str) -> dict[str, str]:
    """The fingerprint a standby shows: a sequence's value there is the one WAL-logged ahead (32 values), not
    the primary's last_value."""
    return {name: value for name, value in fingerprint(the_cluster, node).items() if name != "sequence"}


def major(the_cluster: LabCluster, node: str) -> int:
    return int(the_cluster.sql(node, "SHOW server_version_num", "postgres")) // 10000


def on_volume(the_cluster: LabCluster, node: str, command: str) -> str:
    target = the_cluster.running.target(node)
    return target.client.execute(target.container, ["sh", "-c", command]).strip()


def postmaster(the_cluster: LabCluster, node: str) -> str:
    """The postmaster's pid and start time (postmaster.pid's first and third lines)."""
    return on_volume(the_cluster, node, f"sed -n '1p;3p' {contract.PGDATA}/postmaster.pid | tr '\\n' ' '")


def beside_pgdata(the_cluster: LabCluster, node: str) -> str:
    return on_volume(the_cluster, node, f"ls -d {contract.STATE}/data.* {contract.STATE}/upgrade-work 2>/dev/null "
                                        "|| true")


@pytest.fixture(scope="module")
def before(up15: LabCluster) -> dict[str, str]:
    return fingerprint(up15, up15.primary())


def backups_in(the_cluster: LabCluster, server: str) -> list[backup.BaseBackup]:
    loc = backup.location(the_cluster.lab.lab_spec)
    loc = backup.Location(loc.bucket, loc.prefix, server, loc.endpoint, loc.region, loc.path_style, loc.ca_bundle)
    return backup.list_backups(backup.client(loc, backup.credentials(the_cluster.lab.repo / "secrets")), loc)


def test_check_refuses_to_archive_17_into_the_15_backup_folder(up15: LabCluster) -> None:
    result = cli(up15, "--check")
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    assert "backup.server 'pgdock-e2e-up' already holds base backups of PostgreSQL 15" in result.stderr, result.stderr
    assert f"'{NEW_FOLDER}'" in result.stderr
    assert "Traceback" not in result.stderr
    text = up15.spec_path.read_text()
    up15.spec_path.write_text(text.replace("    endpoint: lab\n", f"    endpoint: lab\n  server: {NEW_FOLDER}\n"))


def test_check_changes_nothing(up15: LabCluster, before: dict[str, str]) -> None:
    primary = up15.primary()
    running_before = postmaster(up15, primary)
    result = cli(up15, "--check")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compatible" in result.stdout and "expected write downtime" in result.stdout, result.stdout
    assert postmaster(up15, primary) == running_before
    assert beside_pgdata(up15, primary) == ""
    assert all(major(up15, node.name) == 15 for node in up15.spec.nodes)
    assert fingerprint(up15, primary) == before
    up15.wait_healthy(60)


def test_failed_pg_upgrade_rolls_back_to_a_working_15(up15: LabCluster, before: dict[str, str]) -> None:
    primary = up15.primary()
    up15.sql(primary, BLOCKER, "app")
    try:
        result = cli(up15, "--yes")
        assert result.returncode == 1, result.stdout + result.stderr[-3000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: upgrade failed at pg_upgrade, rolled back"), last
        assert "buffers_backend" in last, last
        up15.wait_healthy(180)
        assert up15.primary() == primary
        assert all(major(up15, node.name) == 15 for node in up15.spec.nodes)
        assert beside_pgdata(up15, primary) == ""
        failed = [e for e in events.collect(up15.running) if e.get("event") == contract.EVENT_UPGRADE]
        assert failed and failed[-1]["success"] is False
    finally:
        up15.sql(primary, "DROP VIEW IF EXISTS pgdock_e2e_blocker", "app")
    assert fingerprint(up15, primary) == before
    standby = next(n.name for n in up15.spec.nodes if n.name != primary)
    wait_until(lambda: replicated(up15, standby) == {k: v for k, v in before.items() if k != "sequence"}, 60,
               "the standby to have the same data")


def test_upgrade_to_17_keeps_everything(up15: LabCluster, before: dict[str, str]) -> None:
    primary = up15.primary()
    started = time.monotonic()
    result = cli(up15, "--yes")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    downtime = float(re.search(r"write downtime ([0-9.]+) s", result.stdout).group(1))
    up15.wait_healthy(180)
    assert up15.primary() == primary
    assert {node.name: major(up15, node.name) for node in up15.spec.nodes} == {n.name: 17 for n in up15.spec.nodes}
    assert fingerprint(up15, primary) == before
    standby = next(n.name for n in up15.spec.nodes if n.name != primary)
    wait_until(lambda: replicated(up15, standby) == {k: v for k, v in before.items() if k != "sequence"}, 60,
               "the standby to have every row")
    assert up15.sql(primary, "SELECT extversion FROM pg_extension WHERE extname = 'repmgr'", "repmgr") >= "5.5"
    status = up15.status()
    assert status[standby].role == "standby" and status[standby].upstream == primary
    assert not any(row.paused for row in status.values())
    found = events.collect(up15.running)
    steps = [e["details"].split(": ", 2)[1] for e in found
             if e.get("event") == contract.EVENT_UPGRADE_STEP and e["node"] == primary]
    for step in ("pause", "stop", "pg_upgrade", "swap", "standbys", "first-start", "recreate", "analyze", "resume",
                 "backup"):
        assert step in steps, steps
    # the standby came over by rsync --hard-links, not a new clone: its new data files are links to its own old ones
    assert any(f"{standby}: rsync --hard-links from {primary}" in e["details"] for e in found
               if e.get("event") == contract.EVENT_UPGRADE_STEP), [e["details"] for e in found]
    assert "data.old" in beside_pgdata(up15, standby)
    assert on_volume(up15, standby, f"find {contract.PGDATA}/base -type f -links +1 | wc -l") != "0"
    final = [e for e in found if e.get("event") == contract.EVENT_UPGRADE and e.get("success")]
    details = json.loads(final[-1]["details"].split(": ", 1)[1])
    assert details["from"] == 15 and details["to"] == 17 and details["write_downtime_seconds"] == round(downtime, 1)
    assert "data.old" in beside_pgdata(up15, primary)
    assert [b.pg_major for b in backups_in(up15, NEW_FOLDER) if b.status == "DONE"] == [17]
    assert {b.pg_major for b in backups_in(up15, up15.spec.cluster)} == {15}
    print(json.dumps({"write_downtime_s": downtime, "pg_upgrade_s": details["pg_upgrade_seconds"],
                      "upgrade_command_s": round(took, 1)}))


def test_backups_after_the_upgrade(up15: LabCluster) -> None:
    # a spec that names 17 but the old folder: `backup check` says why its newest backup restores nothing
    old_folder = up15.spec_path.with_name("old-folder.yaml")
    old_folder.write_text(up15.spec_path.read_text().replace(f"  server: {NEW_FOLDER}\n", ""))
    checked = subprocess.run([sys.executable, "-m", "pgdock_gen", "backup", "check", "-f", str(old_folder), "--lab"],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 1 and "is of PostgreSQL 15, the spec says 17" in checked.stderr, checked.stderr
    assert pgdock(up15, "backup", "check").returncode == 0
    # the upgraded cluster's backup restores into a new lab cluster, on 17, with every row
    name, upgraded = "pgdock-e2e-up-re", spec.load(up15.spec_path)  # up15.spec is the spec it started with
    restored_spec = spec.parse(json.dumps(restore.restored_raw(upgraded.raw, name)), "restored")
    try:
        result = restore.restore(up15.spec_path, upgraded, to=None, latest=True, name=name, progress=print)
        restored = LabCluster(up15.spec_path, result.lab.spec, result.lab)
        primary = restored.primary()
        assert major(restored, primary) == 17
        assert restored.sql(primary, FINGERPRINT["rows"], "app") == up15.sql(up15.primary(), FINGERPRINT["rows"],
                                                                              "app")
    finally:
        lab.down(up15.spec_path, restored_spec, remove_volumes=True, progress=lambda m: None)


def test_finish_deletes_the_old_data(up15: LabCluster) -> None:
    result = cli(up15, "--finish")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deleted" in result.stdout
    assert all(beside_pgdata(up15, node.name) == "" for node in up15.spec.nodes)


def test_kill_primary_still_fails_over(up15: LabCluster) -> None:
    old = up15.primary()
    other = next(n.name for n in up15.spec.nodes if n.name != old)
    lab.container_action(up15.spec, old, "kill")
    wait_until(lambda: up15.status()[other].role == "primary", 90, f"{other} to be promoted")
    assert major(up15, other) == 17
    assert up15.sql(other, "SELECT count(*) FROM items", "app") == str(ROWS)
