"""The HA core's promises on the real engine (issue 9): never two primaries, beyond three nodes and
with hooks that never end; twins on one timeline resolved; an interrupted first start redone; no
volume left behind.

lab5 is a fork (a rendered repo) with five data nodes, a witness and a user hook that sleeps
forever, so every event's hook run is killed at the spec's 5 s budget.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgdock_gen import contract, drill, events, lab, spec

from .conftest import LabCluster, bring_up, render_fork, wait_until

HANGING_HOOK = '#!/bin/sh\necho "user-hook got $1"\nexec sleep 100000\n'


@pytest.fixture(scope="module")
def lab5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    the_cluster = bring_up(tmp_path_factory.mktemp("lab5"), "lab5.yaml",
                           {"shared/failover/user-hook": HANGING_HOOK}, timeout=360)
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


def node_events(the_cluster: LabCluster, node: str, since: str) -> list[dict]:
    return [e for e in events.collect(the_cluster.running) if e["node"] == node and e["time"] >= since]


@pytest.mark.parametrize("partition", ["drop", "reject"])
def test_isolated_primary_of_five_fences_before_any_promotion(lab5: LabCluster, partition: str) -> None:
    """Packets dropped (connects hang) or refused (TCP reset): the old primary stops before a standby is
    promoted, never two nodes accept writes, and the hanging hook delays nothing."""
    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    report = drill.run(lab5.lab, "isolate-primary", partition=partition, progress=print)
    assert report.new_primary != report.old_primary
    assert report.max_writable_primaries == 1, report
    assert report.lost_commits == 0, report
    fenced, promoted = report.phases["fenced"], report.phases["promotion"]
    assert fenced is not None and promoted is not None, report.phases
    assert fenced < promoted, report.phases
    old_events = node_events(lab5, report.old_primary, since)
    assert contract.EVENT_FENCED in [e["event"] for e in old_events]
    # the user hook ran for the fence and was killed by hook.sh a second before its 5 s budget, after the
    # stop, not before it
    killed = wait_until(lambda: [e for e in node_events(lab5, report.old_primary, since)
                                 if e["event"] == "hook:hook.sh" and "user-hook: killed after 4 s" in e["details"]],
                        30, "the hanging user hook to be killed at its budget")
    assert "user-hook got" in killed[0]["details"]


def test_twin_primaries_on_one_timeline_leave_exactly_one_writer(lab5: LabCluster) -> None:
    """A standby turned primary without promotion (same timeline, as after a copied data directory):
    the twin with the greater name stops within seconds and refuses to start until rebuilt; then a
    rebuild (empty data volume) clones it back."""
    primary = lab5.primary()
    twin = max(n.name for n in lab5.spec.nodes if n.name != primary)
    keeper, loser = sorted([primary, twin])
    container = lab5.lab.container(twin)
    subprocess.run(["docker", "exec", container, "sh", "-c",
                    f"pgdock-agent pg-stop && rm {contract.PGDATA}/standby.signal && pgdock-agent pg-start"],
                   check=True)

    def writable() -> set[str]:
        out = set()
        for node in lab5.spec.nodes:
            try:
                if lab5.sql(node.name, "SELECT NOT pg_is_in_recovery()") == "t":
                    out.add(node.name)
            except Exception:  # noqa: BLE001 - a stopped node is not writable
                continue
        return out

    try:
        wait_until(lambda: writable() == {keeper}, 20, f"only {keeper} to accept writes")
    except AssertionError as exc:
        shown = {row.name: (row.role, row.timeline, row.detail) for row in lab5.running.status()}
        raise AssertionError(f"{exc}; writable: {writable()}; nodes: {shown}") from None
    time.sleep(3)
    assert writable() == {keeper}, "the twin came back"
    loser_events = [e["event"] for e in events.collect(lab5.running) if e["node"] == loser]
    assert contract.EVENT_TWIN_PRIMARY in loser_events
    refused = wait_until(lambda: "twin primary" in (d := {r.name: r.detail for r in lab5.running.status()}[loser])
                         and d, 60, f"{loser} to refuse as a twin (its rejoin attempt fails first)")
    assert "rebuild" in refused
    # the rebuild the refusal asks for: an empty data volume, then a plain start clones the node again
    subprocess.run(["docker", "rm", "-f", lab5.lab.container(loser)], check=True, capture_output=True)
    subprocess.run(["docker", "volume", "rm", contract.volume(lab5.spec.cluster, loser, "data")], check=True,
                   capture_output=True)
    lab5.lab.compose(loser).compose.up(detach=True, quiet=True)
    lab5.wait_healthy(180)


SLOW_INITDB = "SELECT pg_sleep(20);\n"


def test_interrupted_first_start_is_redone_and_nothing_leaks(tmp_path: Path) -> None:
    """The initial primary is killed while its first start runs the fork's initdb SQL (after initdb, roles
    and database): started again, it redoes the bootstrap from scratch and reports `running` only at the
    end; `lab down --volumes` then leaves exactly the volumes that existed before (anonymous ones too)."""
    volumes_before = set(subprocess.run(["docker", "volume", "ls", "-q"], check=True, capture_output=True,
                                        text=True).stdout.split())
    spec_path = render_fork(tmp_path, "boot1.yaml", {"shared/initdb/initdb.sql": SLOW_INITDB})
    loaded = spec.load(spec_path)
    lab.down(spec_path, loaded, remove_volumes=True, progress=lambda m: None)
    try:
        the_lab = lab.prepare(spec_path, loaded)
        container = the_lab.container("b1")
        up = subprocess.Popen(["pgdock-gen", "lab", "up", "-f", str(spec_path), "--timeout", "240"])

        def in_initdb_sql() -> bool:
            """The bootstrap marker is there and psql runs the fork's SQL (the image has no ps)."""
            state = subprocess.run(["docker", "exec", container, "sh", "-c",
                                    f"test -e {contract.BOOTSTRAPPING} && grep -qx psql /proc/[0-9]*/comm"],
                                   capture_output=True, text=True)
            return state.returncode == 0

        wait_until(in_initdb_sql, 180, "the first start to reach the initdb SQL")
        subprocess.run(["docker", "kill", container], check=True, capture_output=True)
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        assert up.wait(300) == 0, "lab up did not end healthy after the interrupted first start"
        the_cluster = LabCluster(spec_path, loaded, the_lab)
        roles = "SELECT count(*) FROM pg_roles WHERE rolname IN ('app', 'repmgr', 'replicator')"
        assert the_cluster.sql("b1", roles) == "3"
        assert the_cluster.sql("b1", "SELECT 1 FROM pg_database WHERE datname = 'app'") == "1"
        names = [e["event"] for e in events.collect(the_cluster.running) if e["node"] == "b1"]
        assert contract.EVENT_BOOTSTRAP_REDONE in names
        assert "running" in the_cluster.status()["b1"].detail
    finally:
        lab.down(spec_path, loaded, remove_volumes=True, progress=lambda m: None)
    volumes_after = set(subprocess.run(["docker", "volume", "ls", "-q"], check=True, capture_output=True,
                                       text=True).stdout.split())
    assert volumes_after == volumes_before
