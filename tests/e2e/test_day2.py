"""Day-2 commands on the real engine (issue 12), through the real CLI, on one lab cluster of their own
(three data nodes and a witness, tests/e2e/specs/day2.yaml), in this order, each leaving it healthy:

1. status shows location, priority and `paused`;
2. a standby whose base/ was deleted is cloned again by `reinit`: it streams and has every row;
3. pause → a standby restarted while paused stays paused → kill the primary → 30 s without any promotion
   → `failover` to the standby with the most WAL → writes resume there → resume → the old primary returns
   as a standby by pg_rewind, and every node's repmgrd is armed again;
4. `restart --all` after rebuilding the base image with a visible change, under a write load: every node
   runs the new image, every postmaster start time changed; longest write gap and lost commits measured;
5. `remove` a standby: repmgr no longer lists it, its slot is gone, the rest of the cluster is healthy.

`remove` takes a member out for good, which is why this is not the session's shared lab3.
"""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgdock_gen import cluster, contract, drill, events, failover, images, lab

from .conftest import LabCluster, bring_up, cli, wait_until

OPERATOR = f"{getpass.getuser()}@{socket.gethostname()}"
"""How the commands name whoever ran them in the events (lock.operator)."""


@pytest.fixture(scope="module")
def day2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    the_cluster = bring_up(tmp_path_factory.mktemp("day2"), "day2.yaml")
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


def status_json(the_cluster: LabCluster) -> dict:
    return json.loads(cli(the_cluster, "status", "--json", check=False).stdout)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def events_since(the_cluster: LabCluster, since: str, *names: str) -> list[dict]:
    return [e for e in events.collect(the_cluster.running)
            if str(e.get("time") or "") >= since and (not names or e.get("event") in names)]


def repmgrd_paused(the_cluster: LabCluster, node: str) -> str:
    return the_cluster.sql(node, "SELECT repmgr.repmgrd_is_paused()", "repmgr")


def write_load(the_cluster: LabCluster) -> drill.WriteLoad:
    secrets = the_cluster.lab.repo / "secrets"
    load = drill.WriteLoad(the_cluster.lab.lab_spec, (secrets / "passwords" / "app").read_text().strip(),
                           str(secrets / "tls" / "ca.crt"))
    load.start()
    return load


def longest_gap(load: drill.WriteLoad, began: float, ended: float) -> float:
    stamps = [began] + [a.at for a in load.acks if began < a.at < ended] + [ended]
    return max(b - a for a, b in zip(stamps, stamps[1:], strict=False))


def test_status_shows_location_priority_and_paused(day2: LabCluster) -> None:
    report = status_json(day2)
    assert report["paused"] is False, report
    nodes = {n["name"]: n for n in report["nodes"]}
    assert {n: (nodes[n]["location"], nodes[n]["priority"]) for n in nodes} == {
        "g1": ("east", 100), "g2": ("east", 90), "g3": ("east", 80), "gw": ("east", 0)}
    assert not any(n["paused"] for n in nodes.values())
    assert "paused" not in cli(day2, "status", check=False).stdout.splitlines()[0]  # the table's title


def test_reinit_clones_a_standby_whose_base_directory_was_deleted(day2: LabCluster) -> None:
    primary = day2.primary()
    standby = next(n.name for n in reversed(day2.spec.nodes) if n.name != primary)
    day2.sql(primary, "CREATE TABLE reinit_rows AS SELECT generate_series(1, 100000) AS id")
    wait_until(lambda: day2.sql(standby, "SELECT count(*) FROM reinit_rows") == "100000", 60,
               f"the rows on {standby}")
    refused = cli(day2, "reinit", primary, "--yes", check=False)
    assert refused.returncode == 2 and "switch over first" in refused.stderr, refused.stderr
    since = now_iso()
    subprocess.run(["docker", "exec", day2.lab.container(standby), "rm", "-rf", f"{contract.PGDATA}/base"],
                   check=True, capture_output=True)
    dry = cli(day2, "reinit", standby, "--dry-run")
    assert "reinit marker" in dry.stdout and f"clones it from {primary}" in dry.stdout, dry.stdout
    cli(day2, "reinit", standby, "--yes", "--timeout", "400")
    day2.sql(primary, "INSERT INTO reinit_rows SELECT generate_series(100001, 100100)")
    wait_until(lambda: day2.sql(standby, "SELECT count(*) FROM reinit_rows") == "100100", 60,
               f"every row on {standby} after its reinit")
    row = day2.status()[standby]
    assert (row.role, row.upstream, row.registered, row.repmgrd) == ("standby", primary, True, True), row
    mine = [e for e in events_since(day2, since) if e["node"] == standby]
    names = [e["event"] for e in mine]
    assert contract.EVENT_REINIT in names and contract.EVENT_CLONE in names, names
    assert any(OPERATOR in e["details"] for e in mine if e["event"] == contract.EVENT_REINIT), mine
    assert Path(contract.REINIT).name not in subprocess.run(
        ["docker", "exec", day2.lab.container(standby), "ls", str(contract.STATE)], capture_output=True,
        text=True, check=True).stdout.split(), "the reinit marker outlived the clone"
    day2.sql(primary, "DROP TABLE reinit_rows")
    day2.wait_healthy(60)


def test_paused_no_promotion_then_manual_failover_then_resume_and_rewind(day2: LabCluster) -> None:
    day2.wait_healthy(120)
    old = day2.primary()
    standbys = [n.name for n in day2.spec.nodes if n.name != old]
    members = [n.name for n in day2.spec.members]
    since = now_iso()
    cli(day2, "pause")
    report = status_json(day2)
    assert report["paused"] is True and all(n["paused"] for n in report["nodes"]), report
    paused = events_since(day2, since, contract.EVENT_PAUSED)
    assert {e["node"] for e in paused} == set(members), paused
    assert all(OPERATOR in e["details"] for e in paused), paused
    for name in members:
        wait_until(lambda n=name: repmgrd_paused(day2, n) == "t", 30, f"repmgrd paused on {name}")

    # the pause survives a node restart
    restarted = standbys[-1]
    subprocess.run(["docker", "restart", day2.lab.container(restarted)], check=True, capture_output=True)
    day2.wait_healthy(180)
    wait_until(lambda: repmgrd_paused(day2, restarted) == "t", 30, f"repmgrd paused again on {restarted}")
    assert day2.status()[restarted].paused

    load = write_load(day2)
    try:
        time.sleep(2)
        killed_at = now_iso()
        lab.container_action(day2.spec, old, "kill")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = day2.status()
            assert not [n for n in standbys if rows[n].role == "primary"], f"promoted while paused: {rows}"
            time.sleep(2)
        assert events_since(day2, killed_at, *contract.PROMOTION_EVENTS) == []

        rows = day2.status()
        chosen = max(standbys, key=lambda n: failover.position(rows[n]) or 0)
        refused = cli(day2, "failover", old, "--yes", check=False)
        assert refused.returncode == 2 and "only a running standby" in refused.stderr, refused.stderr
        dry = cli(day2, "failover", chosen, "--dry-run")
        assert f"{chosen}: promote" in dry.stdout, dry.stdout
        promoted_at = time.monotonic()
        cli(day2, "failover", chosen, "--yes")
        new_address = day2.lab.lab_spec.member(chosen).address
        wait_until(lambda: any(a.server == new_address and a.at > promoted_at for a in load.acks), 30,
                   f"writes on {chosen}")
        rows = day2.status()
        assert rows[chosen].role == "primary", rows
        assert all(rows[n].upstream == chosen for n in standbys if n != chosen), rows

        resumed_at = now_iso()
        cli(day2, "resume")
        assert status_json(day2)["paused"] is False
        resumed = events_since(day2, resumed_at, contract.EVENT_RESUMED)
        assert {e["node"] for e in resumed} == set(members) - {old}, resumed  # the old primary was down

        lab.container_action(day2.spec, old, "start")
        day2.wait_healthy(240)
    finally:
        load.stop()
    rows = day2.status()
    assert rows[old].role == "standby" and rows[old].upstream == chosen, rows
    assert not any(r.paused for r in rows.values()), rows
    old_events = [e["event"] for e in events_since(day2, killed_at) if e["node"] == old]
    assert contract.EVENT_REJOIN in old_events and contract.EVENT_CLONE not in old_events, old_events
    manual = events_since(day2, killed_at, contract.EVENT_MANUAL_FAILOVER)
    assert [e["node"] for e in manual] == [chosen] and OPERATOR in manual[0]["details"], manual
    for name in members:  # automatic failover is armed again everywhere, the old primary included
        wait_until(lambda n=name: repmgrd_paused(day2, n) == "f", 30, f"repmgrd unpaused on {name}")
    print(json.dumps({"acked": len(load.acks), "lost_after_kill": len(load.lost()), "chosen": chosen}))


@pytest.fixture
def rebuilt_base(day2: LabCluster, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The base image rebuilt under its tag with a visible change (a file naming this run), as `build --no-cache`
    does for a new PostgreSQL minor release: (token, image id). Labs of the same base-image/ share the tag on
    this engine, so the image it named before is tagged back afterwards."""
    from python_on_whales import docker

    tag = images.names(day2.lab.lab_spec, day2.lab.repo).base
    before = docker.image.inspect(tag).id
    token = uuid.uuid4().hex[:12]
    (tmp_path / "Dockerfile").write_text(f"FROM {tag}\nRUN echo {token} > /etc/pgdock-rolled\n"
                                         f"LABEL org.pgdock.e2e-rolled={token}\n")
    docker.build(tmp_path, tags=[tag], load=True, progress=False)
    try:
        yield token, docker.image.inspect(tag).id
    finally:
        docker.image.tag(before, tag)


def test_rolling_restart_moves_every_node_onto_the_rebuilt_image(day2: LabCluster,
                                                                 rebuilt_base: tuple[str, str]) -> None:
    from python_on_whales import docker

    token, image = rebuilt_base
    day2.wait_healthy(120)
    old_primary = day2.primary()
    members = [n.name for n in day2.spec.members]
    started = {n: day2.sql(n, "SELECT pg_postmaster_start_time()") for n in members}
    dry = cli(day2, "restart", "--all", "--dry-run")
    assert f"switchover {old_primary} →" in dry.stdout, dry.stdout
    since = now_iso()
    load = write_load(day2)
    try:
        time.sleep(2)
        began = time.monotonic()
        cli(day2, "restart", "--all", "--yes")
        ended = time.monotonic()
        time.sleep(2)
    finally:
        load.stop()
    lost = load.lost()
    gap = longest_gap(load, began, ended)
    print(json.dumps({"rolling_restart_s": round(ended - began, 1), "longest_write_gap_s": round(gap, 2),
                      "acked_commits": len(load.acks), "lost_commits": len(lost)}))
    for name in members:
        container = day2.lab.container(name)
        assert docker.container.inspect(container).image == image, f"{name} does not run the rebuilt image"
        assert docker.execute(container, ["cat", "/etc/pgdock-rolled"]).strip() == token
        assert day2.sql(name, "SELECT pg_postmaster_start_time()") != started[name], f"{name} was not restarted"
    assert day2.primary() != old_primary
    assert lost == [], f"{len(lost)} acknowledged commits lost"
    assert gap < 10, f"writes paused {gap:.1f} s (a switchover's pause is ≤ 2 s on an idle machine)"
    restarted = events_since(day2, since, contract.EVENT_RESTARTED)
    assert {e["node"] for e in restarted} == set(members), restarted
    assert all(OPERATOR in e["details"] for e in restarted), restarted
    day2.wait_healthy(60)


def test_remove_a_standby(day2: LabCluster) -> None:
    from python_on_whales import docker

    day2.wait_healthy(120)
    primary = day2.primary()
    gone = next(n.name for n in reversed(day2.spec.nodes) if n.name != primary)
    slot = contract.replication_slot(day2.spec.member(gone).id)
    slots = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    print(f"{slot} on {primary} before the removal: {day2.sql(primary, slots)}")
    refused = cli(day2, "remove", primary, "--yes", check=False)
    assert refused.returncode == 2 and "switch over first" in refused.stderr, refused.stderr
    since = now_iso()
    result = cli(day2, "remove", gone, "--volumes", "--yes")
    assert "from the spec" in result.stdout, result.stdout
    names = day2.sql(primary, "SELECT string_agg(node_name, ',' ORDER BY node_name) FROM repmgr.nodes", "repmgr")
    assert gone not in names.split(","), names
    assert day2.sql(primary, slots) == "0"
    assert not docker.container.exists(day2.lab.container(gone))
    assert not docker.volume.exists(contract.volume(day2.spec.cluster, gone, "data"))
    wait_until(lambda: cluster.healthy(day2.spec, [r for r in day2.running.status() if r.name != gone]) is None, 60,
               "the other members healthy")
    removed = events_since(day2, since, contract.EVENT_REMOVED)
    assert [e["node"] for e in removed] == [primary] and OPERATOR in removed[0]["details"], removed
