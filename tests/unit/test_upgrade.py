"""`pgdock-gen upgrade` (issue 13), its pure parts as tables: what refuses an upgrade, when a failure rolls back
and what the rollback does (the pg_control rename undone on a real directory), the SQL of the first start, the
upgrade image's tag, and the CLI's refusals."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pgdock_gen import contract, images, upgrade
from pgdock_gen.cluster import NodeStatus
from pgdock_gen.errors import SpecError
from pgdock_gen.spec import parse

SPEC_TEXT = """
cluster: shop
postgres: {version: 17, database: app, user: app}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
witness: {name: w, address: 10.0.0.9}
"""
SPEC = parse(SPEC_TEXT)


def row(name: str, role: str = "standby", **changes: object) -> NodeStatus:
    base = NodeStatus(name=name, role=role, upstream="n1" if role == "standby" else None, timeline=1, lag_bytes=0,
                      lag_seconds=0.0, repmgrd=True, reachable=role != "down", registered=role != "down",
                      detail="running")
    return replace(base, **changes)


HEALTHY = [row("n1", "primary"), row("n2"), row("w", "witness")]
ON_15 = {"n1": 15, "n2": 15, "w": 15}


@pytest.mark.parametrize(("rows", "versions", "spec_text", "expected"), [
    pytest.param(HEALTHY, ON_15, SPEC_TEXT, [], id="15 to 17: go"),
    pytest.param(HEALTHY, {"n1": 17, "n2": 17, "w": 17}, SPEC_TEXT, ["already runs PostgreSQL 17"],
                 id="already on the target"),
    pytest.param(HEALTHY, ON_15, SPEC_TEXT.replace("version: 17", "version: 15"), ["already runs PostgreSQL 15"],
                 id="spec not changed"),
    pytest.param([row("n1", "primary"), row("n2", "primary"), row("w", "witness")], ON_15, SPEC_TEXT,
                 ["one primary is needed, found 2 (n1, n2)"], id="two primaries"),
    pytest.param([row("n1", "down"), row("n2", upstream=None), row("w", "witness")],
                 {"n1": None, "n2": 15, "w": 15}, SPEC_TEXT,
                 ["one primary is needed, found 0", "n1 does not answer", "n2 is a standby that is not streaming"],
                 id="primary down"),
    pytest.param([row("n1", "primary"), row("n2", upstream=None), row("w", "witness")], ON_15, SPEC_TEXT,
                 ["n2 is a standby that is not streaming"], id="standby not streaming"),
    pytest.param(HEALTHY, {"n1": 15, "n2": 17, "w": 15}, SPEC_TEXT, ["n2 runs PostgreSQL 17, the primary 15"],
                 id="mixed majors"),
    pytest.param(HEALTHY, {"n1": 15, "n2": 15, "w": None}, SPEC_TEXT, ["w does not answer"], id="witness silent"),
    pytest.param(HEALTHY, {"n1": 16, "n2": 16, "w": 16}, SPEC_TEXT, ["runs PostgreSQL 16, which pgdock does not"],
                 id="unsupported source"),
])
def test_problems(rows, versions, spec_text, expected) -> None:
    found = upgrade.problems(parse(spec_text), rows, versions)
    assert len(found) == len(expected), found
    for problem, wanted in zip(found, expected, strict=True):
        assert wanted in problem


def test_problems_unsupported_target_and_downgrade() -> None:
    newer = replace(SPEC, pg_version=18)
    assert any("PostgreSQL 18 is not supported" in p for p in upgrade.problems(newer, HEALTHY, ON_15))
    older = replace(SPEC, pg_version=15)
    assert any("no downgrades" in p for p in upgrade.problems(older, HEALTHY, {"n1": 17, "n2": 17, "w": 17}))


@pytest.mark.parametrize(("step", "actions"), [
    ("images", ()), ("pause", ()), ("catch-up", ()), ("stop", ("start-nodes",)),
    ("pg_upgrade", ("restore-data", "start-nodes")),
    ("swap", ()), ("first-start", ()), ("recreate", ()), ("analyze", ()), ("resume", ()),
])
def test_rollback_actions(step: str, actions: tuple[str, ...]) -> None:
    assert upgrade.rollback_actions(step) == actions
    assert upgrade.recoverable(step) == (upgrade.STEPS.index(step) < upgrade.STEPS.index("swap"))


def test_every_step_is_planned_once() -> None:
    assert len(set(upgrade.STEPS)) == len(upgrade.STEPS)
    assert upgrade.POINT_OF_NO_RETURN in upgrade.STEPS


def _volume(tmp_path: Path, *, linked: bool) -> Path:
    """A data volume as pg_upgrade --link leaves it: pg_control renamed when linking began, data.new beside."""
    (tmp_path / "data" / "global").mkdir(parents=True)
    (tmp_path / "data" / "global" / ("pg_control.old" if linked else "pg_control")).write_text("control")
    (tmp_path / "data.new" / "base").mkdir(parents=True)
    (tmp_path / "upgrade-work").mkdir()
    return tmp_path


@pytest.mark.parametrize("linked", [True, False], ids=["after linking began", "before linking"])
def test_restore_script_puts_pg_control_back(tmp_path: Path, linked: bool) -> None:
    state = _volume(tmp_path, linked=linked)
    for _ in range(2):  # twice: a rollback that is itself retried must not fail
        subprocess.run(["sh", "-c", upgrade.restore_script(str(state))], check=True)
    assert (state / "data" / "global" / "pg_control").read_text() == "control"
    assert not (state / "data" / "global" / "pg_control.old").exists()
    assert not (state / "data.new").exists() and not (state / "upgrade-work").exists()


def test_restore_script_keeps_a_started_pg_control(tmp_path: Path) -> None:
    """Both files present: the old one is never moved over a pg_control that exists."""
    state = _volume(tmp_path, linked=True)
    (state / "data" / "global" / "pg_control").write_text("current")
    subprocess.run(["sh", "-c", upgrade.restore_script(str(state))], check=True)
    assert (state / "data" / "global" / "pg_control").read_text() == "current"


@pytest.mark.parametrize(("free_mb", "data_mb", "method", "problem"), [
    (10_000, 1_000, "link", False), (300, 100, "link", False), (200, 100, "link", True),
    (1_000, 20_000, "link", True),
    (1_000, 1_000, "clone", False),  # reflinks share the blocks, as hard links do
    (1_000, 1_000, "copy", True),  # a copy needs the data's size again
    (1_300, 1_000, "copy", False),
])
def test_space_problem(free_mb: int, data_mb: int, method: str, problem: bool) -> None:
    assert (upgrade.space_problem(free_mb * 2**20, data_mb * 2**20, method) is not None) == problem


@pytest.mark.parametrize(("method", "primary", "standby", "how", "why"), [
    ("link", "0/5000028", "0/5000028", "rsync", "replayed the primary's shutdown checkpoint 0/5000028"),
    ("link", "0/5000028", "0/4000060", "clone", "its last checkpoint 0/4000060 is not the primary's"),
    ("link", "0/5000028", None, "clone", "control data could not be read"),
    ("link", None, "0/5000028", "clone", "is not the primary's"),  # the primary's unknown: never rsync on a guess
    ("copy", "0/5000028", "0/5000028", "clone", "pg_upgrade --copy gave the primary new files"),
    ("clone", "0/5000028", "0/5000028", "clone", "pg_upgrade --clone gave the primary new files"),
])
def test_standby_method(method: str, primary: str | None, standby: str | None, how: str, why: str) -> None:
    found = upgrade.standby_method(method, primary, standby)
    assert found[0] == how and why in found[1]


def test_no_rsync_with_tablespaces() -> None:
    """The rsync covers the data directory only: tablespaces (symlinks in pg_tblspc) would be left behind."""
    assert upgrade.standby_method("link", "0/5000028", "0/5000028", 1) == (
        "clone", "the primary has 1 tablespace(s) outside the data directory")


def test_receive_and_received_scripts_keep_the_standby_a_standby(tmp_path: Path) -> None:
    """Before rsync the standby's data directory becomes data.old with its replication settings kept aside;
    after rsync (which brings the primary's new directory, without them) they are back, with standby.signal."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "postgresql.auto.conf").write_text("primary_conninfo = 'host=n1'\n")
    (tmp_path / "data" / "PG_VERSION").write_text("15\n")
    subprocess.run(["sh", "-c", upgrade.receive_script(str(tmp_path))], check=True)
    assert (tmp_path / "data.old" / "PG_VERSION").read_text() == "15\n" and not (tmp_path / "data").exists()
    (tmp_path / "data").mkdir()  # what rsync makes: the primary's new data directory
    (tmp_path / "data" / "postgresql.auto.conf").write_text("# the primary's\n")
    (tmp_path / "data" / "PG_VERSION").write_text("17\n")
    subprocess.run(["sh", "-c", upgrade.received_script(str(tmp_path))], check=True)
    assert (tmp_path / "data" / "postgresql.auto.conf").read_text() == "primary_conninfo = 'host=n1'\n"
    assert (tmp_path / "data" / "standby.signal").exists()
    assert oct((tmp_path / "data" / "standby.signal").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("method", ["link", "copy", "clone"])
def test_the_spec_method_reaches_pg_upgrade(method: str) -> None:
    assert f"--{method} " in upgrade.upgrade_script(15, 17, method)
    assert f"--{method} " in upgrade.check_script(15, 17, method) and "--check" in upgrade.check_script(15, 17, method)


def test_a_copy_adds_its_time_to_the_expected_downtime() -> None:
    link = upgrade.expected_downtime(4, 10**9, "link")
    assert upgrade.expected_downtime(4, 10**9, "copy") == pytest.approx(link + 10**9 / upgrade.COPY_BYTES_PER_SECOND)


@pytest.mark.parametrize(("stored", "has_wal", "problem"), [
    ([], False, None),  # a new folder
    ([17], True, None),  # the upgrade ran again after its first base backup of 17
    ([15, 15], True, "base backups of PostgreSQL 15"),  # the spec kept the old folder
    ([15, 17], True, "base backups of PostgreSQL 15"),
    ([0], True, "base backups of PostgreSQL unknown"),
    ([], True, "archived WAL without a base backup"),
])
def test_backup_problem(stored: list[int], has_wal: bool, problem: str | None) -> None:
    found = upgrade.backup_problem("shop", 15, 17, stored, has_wal)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "'shop-pg17'" in found


def test_first_start_sql() -> None:
    sql = upgrade.first_start_sql(1, [2, 3])
    assert sql.startswith("ALTER EXTENSION repmgr UPDATE;")
    assert "SET active = false WHERE node_id <> 1" in sql
    assert [contract.replication_slot(i) in sql for i in (1, 2, 3)] == [False, True, True]


def test_initdb_options_are_shared_with_bootstrap() -> None:
    bootstrap = (Path(__file__).parents[2] / "base-image/agent/pgdock_agent/bootstrap.py").read_text()
    assert "contract.INITDB_OPTIONS" in bootstrap
    assert " ".join(contract.INITDB_OPTIONS) in upgrade.upgrade_script(15, 17)
    assert "--link" in upgrade.upgrade_script(15, 17) and "--check" in upgrade.check_script(15, 17)


def test_upgrade_image_name(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for context in ("base-image", "backup-image"):
        (repo / context).mkdir(parents=True)
        (repo / context / "Dockerfile").write_text(f"FROM scratch # {context}\n")
    tag = images.upgrade_image_name(SPEC, repo, "pgdock/base:pg15-0123456789ab")
    assert tag.startswith(f"{contract.UPGRADE_IMAGE_REPO}:pg15-pg17-")
    assert tag != images.upgrade_image_name(SPEC, repo, "pgdock/base:pg15-ba9876543210")
    (repo / "base-image" / "Dockerfile").write_text("FROM scratch # changed\n")
    assert tag != images.upgrade_image_name(SPEC, repo, "pgdock/base:pg15-0123456789ab")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgdock_gen", "upgrade", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_on_servers_that_do_not_answer_refuses_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(SPEC_TEXT)
    result = _cli("-f", "cluster.yaml", "--yes", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: upgrade refused: one primary is needed, found 0; n1 does not answer")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_refuses_check_with_finish(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(SPEC_TEXT)
    result = _cli("-f", "cluster.yaml", "--lab", "--check", "--finish", cwd=tmp_path)
    assert result.returncode == 2
    assert "--check and --finish" in result.stderr


def test_the_upgrade_method_in_the_spec() -> None:
    assert SPEC.upgrade_method == "link"
    assert parse(SPEC_TEXT + "upgrade:\n  method: copy\n").upgrade_method == "copy"
    with pytest.raises(SpecError, match=r"upgrade\.method.*link, copy, clone"):
        parse(SPEC_TEXT + "upgrade:\n  method: dump\n")
