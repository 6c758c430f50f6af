"""Day-2 commands (issue 12), their pure parts as tables: each command's refusal over observed status rows,
its plan of steps, and the agent's side of pause and reinit (flag files, the promotion gate)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pgdock_gen import cluster, failover, maintenance, reinit, remove, reports, restart
from pgdock_gen.cluster import NodeStatus
from pgdock_gen.spec import parse

SPEC_TEXT = """
cluster: shop
postgres: {version: 17, database: app, user: app}
nodes:
  - {name: n1, address: 10.0.0.1, location: dc1}
  - {name: n2, address: 10.0.0.2, location: dc1, priority: 90}
  - {name: n3, address: 10.0.0.3, location: dc2, priority: 80}
  - {name: n4, address: 10.0.0.4, priority: 0}
witness: {name: w, address: 10.0.0.9}
"""
SPEC = parse(SPEC_TEXT)
MB = 1024 * 1024


def row(name: str, role: str = "standby", **changes: object) -> NodeStatus:
    node = SPEC.member(name)
    base = NodeStatus(name=name, role=role, upstream="n1" if role == "standby" else None, timeline=1, lag_bytes=0,
                      lag_seconds=0.0, repmgrd=True, reachable=role != "down", registered=role != "down",
                      detail="running", location=node.location, priority=node.priority)
    return replace(base, **changes)


def healthy() -> list[NodeStatus]:
    return [row("n1", "primary"), row("n2"), row("n3"), row("n4"), row("w", "witness")]


def primary_gone(paused: bool = True, **positions: int) -> list[NodeStatus]:
    """n1 was killed; the standbys stream from nobody; `positions` give standbys' received WAL (bytes)."""
    rows = [row("n1", "down", repmgrd=False, detail="container is not running")]
    for name in ("n2", "n3", "n4"):
        rows.append(row(name, upstream=None, paused=paused, received_lsn=positions.get(name, 100 * MB),
                        replayed_lsn=positions.get(name, 100 * MB) - MB))
    return rows + [row("w", "witness", paused=paused)]


# ---------------------------------------------------------------- failover

FAILOVER_CASES = [
    ("paused, primary gone, n2 has the most WAL: go", "n2", primary_gone(), False, None),
    ("a primary answers: switchover's job, even forced", "n2", healthy(), True, "use `pgdock-gen switchover n2`"),
    ("standbys still stream from n1: it lives out of our sight, even forced", "n2",
     [row("n1", "down"), row("n2", upstream=None), row("n3"), row("w", "witness")], True, "stream from n1"),
    ("the witness is never promoted", "w", primary_gone(), True, "witness"),
    ("a standby that is down cannot be promoted", "n3",
     [*primary_gone()[:2], row("n3", "down"), *primary_gone()[3:]], True, "only a running standby"),
    ("automatic failover armed: pause first", "n2", primary_gone(paused=False), False, "pgdock-gen pause"),
    ("armed, forced: go", "n2", primary_gone(paused=False), True, None),
    ("n2 behind n3: choose n3", "n2", primary_gone(n2=90 * MB, n3=95 * MB, n4=80 * MB), False,
     "n2 is behind n3 (5242880 bytes of WAL)"),
    ("behind two: the hint names the one furthest ahead", "n2", primary_gone(n2=90 * MB, n3=95 * MB), False,
     "choose n4"),
    ("n2 behind n3, forced: go", "n2", primary_gone(n2=90 * MB, n3=95 * MB), True, None),
    ("received counts, not only replayed: n3 received more", "n3",
     [replace(r, received_lsn=120 * MB) if r.name == "n2" else r for r in primary_gone()], False, "n3 is behind n2"),
    ("an equal position is not behind", "n3", primary_gone(n2=100 * MB, n3=100 * MB), False, None),
    ("priority 0 is never promoted without --force", "n4", primary_gone(n4=200 * MB), False, "priority 0"),
]


@pytest.mark.parametrize(("why", "node", "rows", "force", "says"), FAILOVER_CASES, ids=[c[0] for c in FAILOVER_CASES])
def test_failover_refusals(why: str, node: str, rows: list[NodeStatus], force: bool, says: str | None) -> None:
    reason = failover.check(SPEC, node, rows, force=force)
    if says is None:
        assert reason is None
    else:
        assert reason is not None and says in reason


def test_failover_promotes_then_the_others_follow_and_the_old_primary_rejoins_later() -> None:
    steps = failover.plan(SPEC, "n3", primary_gone())
    assert [(s.node, s.kind) for s in steps] == [("n3", "promote"), ("n2", "follow"), ("n4", "follow"),
                                                 ("n1", "note")]
    assert "pg_rewind" in steps[-1].text


def test_failover_is_settled_when_every_running_standby_streams_from_the_new_primary() -> None:
    rows = [row("n1", "down"), row("n2", "primary"), row("n3", upstream="n2"), row("n4", upstream=None),
            row("w", "witness")]
    assert "n4 does not stream from n2" in failover.settled(SPEC, "n2", rows)
    rows[3] = row("n4", upstream="n2")
    assert failover.settled(SPEC, "n2", rows) is None
    assert "n3 is standby" in failover.settled(SPEC, "n3", rows)


# ---------------------------------------------------------------- reinit, remove

def test_reinit_marks_restarts_and_waits() -> None:
    steps = reinit.plan(SPEC, "n3", healthy())
    assert [s.kind for s in steps] == ["mark", "restart", "wait"]
    assert "clones it from n1" in steps[1].text and "secrets" in steps[1].text


BROKEN_N3 = [row("n1", "primary"), row("n2"), row("n3", "down"), row("w", "witness")]
REFUSALS = [
    (reinit, "a standby: go", "n3", healthy(), None),
    (reinit, "a broken standby (down as far as status goes): go", "n3", BROKEN_N3, None),
    (reinit, "the witness: go (its database is made anew)", "w", healthy(), None),
    (reinit, "the primary: switch over first", "n1", healthy(), "switch over first (`pgdock-gen switchover n2`)"),
    (reinit, "no primary to clone from", "n3", primary_gone(), "no primary"),
    (remove, "a standby: go", "n3", healthy(), None),
    (remove, "the witness: go", "w", healthy(), None),
    (remove, "a standby that is down: go (unregistered on the primary)", "n3", BROKEN_N3, None),
    (remove, "the primary: switch over first", "n1", healthy(), "switch over first"),
    (remove, "no primary holds repmgr's records", "n3", primary_gone(), "no primary"),
]


@pytest.mark.parametrize(("command", "why", "node", "rows", "says"), REFUSALS,
                         ids=[f"{c[0].__name__.rsplit('.', 1)[1]}: {c[1]}" for c in REFUSALS])
def test_reinit_and_remove_refusals(command, why: str, node: str, rows: list[NodeStatus], says: str | None) -> None:
    reason = command.check(SPEC, node, rows)
    assert reason is None if says is None else says in reason


def test_remove_a_standby_stops_it_before_unregistering_and_frees_its_slot_on_the_primary() -> None:
    steps = remove.plan(SPEC, "n3", healthy(), where="lab container shop-n3", remove_volumes=True)
    assert [(s.node, s.kind) for s in steps] == [("n3", "stop"), ("n1", "unregister"), ("n1", "slot"), ("n3", "note")]
    assert "standby unregister --node-id=3" in steps[1].text
    assert "repmgr_slot_3" in steps[2].text
    assert "delete its volumes" in steps[0].text
    assert "from the spec" in steps[-1].text and "render" in steps[-1].text


def test_remove_the_witness_unregisters_a_witness_and_has_no_slot() -> None:
    steps = remove.plan(SPEC, "w", healthy(), where="x", remove_volumes=False)
    assert [s.kind for s in steps] == ["stop", "unregister", "note"]
    assert f"witness unregister --node-id={SPEC.witness.id}" in steps[1].text
    assert "volumes" not in steps[0].text


# ---------------------------------------------------------------- rolling restart

WHERE = {n.name: f"container of {n.name}" for n in SPEC.members}


def test_restart_all_does_standbys_and_witness_then_a_switchover_then_the_old_primary() -> None:
    nodes = [n.name for n in SPEC.members]
    assert restart.check(SPEC, nodes, healthy()) is None
    steps = restart.plan(SPEC, nodes, healthy(), where=WHERE)
    assert [(s.node, s.kind) for s in steps] == [("n2", "recreate"), ("n3", "recreate"), ("n4", "recreate"),
                                                 ("w", "recreate"), ("n2", "switchover"), ("n1", "recreate")]
    assert steps[4].text == "switchover n1 → n2"


def test_restart_of_one_standby_is_that_standby_only() -> None:
    assert [(s.node, s.kind) for s in restart.plan(SPEC, ["n3"], healthy(), where=WHERE)] == [("n3", "recreate")]


def test_restart_of_the_primary_hands_over_to_the_best_fit_standby_first() -> None:
    rows = [replace(r, lag_bytes=64 * MB) if r.name == "n2" else r for r in healthy()]  # n2 lags: n3 next
    steps = restart.plan(SPEC, ["n1"], rows, where=WHERE)
    assert [(s.node, s.kind) for s in steps] == [("n3", "switchover"), ("n1", "recreate")]


RESTART_REFUSALS = [
    ("a standby is not streaming", ["n3"], [*healthy()[:2], row("n3", upstream=None), *healthy()[3:]], "not healthy"),
    ("no primary", ["n2"], primary_gone(), "not healthy"),
    ("nobody can take over from the primary", ["n1"],
     [row("n1", "primary"), row("n2", lag_bytes=64 * MB), row("n3", lag_bytes=64 * MB), row("n4"),
      row("w", "witness")], "no standby can take over"),
]


@pytest.mark.parametrize(("why", "nodes", "rows", "says"), RESTART_REFUSALS, ids=[c[0] for c in RESTART_REFUSALS])
def test_restart_refusals(why: str, nodes: list[str], rows: list[NodeStatus], says: str) -> None:
    assert says in restart.check(SPEC, nodes, rows)


# ---------------------------------------------------------------- pause and resume


def test_pause_flags_every_member_first_then_pauses_repmgr_through_the_primary() -> None:
    rows = [row("n1", "primary"), row("n2"), row("n3", "down"), row("n4"), row("w", "witness")]
    steps = maintenance.plan(rows, pause=True)
    assert [(s.node, s.kind) for s in steps] == [("n1", "agent"), ("n2", "agent"), ("n3", "volume"),
                                                 ("n4", "agent"), ("w", "agent"), ("n1", "repmgr")]
    assert steps[-1].text == "n1: repmgr service pause (every registered node's repmgrd)"
    assert "on its data volume" in steps[2].text


def test_resume_without_a_primary_unpauses_through_a_member_that_answers() -> None:
    steps = maintenance.plan(primary_gone(), pause=False)
    assert steps[0].kind == "volume" and "remove the pause flag" in steps[0].text
    assert steps[-1].node == "n2" and steps[-1].text.endswith("repmgr service unpause (every registered node's "
                                                              "repmgrd)")


def test_pause_needs_one_member_that_answers() -> None:
    assert maintenance.check(primary_gone()) is None
    assert "no member answers" in maintenance.check([row(n.name, "down") for n in SPEC.members])


def test_status_shows_location_priority_and_paused() -> None:
    rows = primary_gone()
    shown = reports.status(SPEC, rows)
    assert shown["paused"] is True
    assert {"name": "n3", "location": "dc2", "priority": 80, "paused": True}.items() <= shown["nodes"][2].items()
    assert reports.status(SPEC, healthy())["paused"] is False
    assert "(paused" in cluster.status_table(SPEC, rows).title
    assert "paused" not in cluster.status_table(SPEC, healthy()).title
    assert [c.header for c in cluster.status_table(SPEC, rows).columns][2:4] == ["location", "priority"]


# ---------------------------------------------------------------- the agent's side


@pytest.fixture
def node_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agent's files of pause and reinit, in a temporary data volume."""
    from pgdock_agent import postgres, supervisor

    (tmp_path / "data" / "pg_stat").mkdir(parents=True)
    monkeypatch.setattr(postgres, "PAUSED", tmp_path / "paused")
    monkeypatch.setattr(postgres, "REPMGRD_STATE", tmp_path / "data" / "pg_stat" / "repmgrd_state.txt")
    monkeypatch.setattr(postgres, "PGDATA", tmp_path / "data")
    monkeypatch.setattr(postgres, "SOCKET_DIR", tmp_path / "run")
    monkeypatch.setattr(supervisor, "REINIT", tmp_path / "reinit")
    return tmp_path


def start(tmp: Path) -> None:
    from pgdock_agent import supervisor

    supervisor.Supervisor.__new__(supervisor.Supervisor).prepare_start()


def test_a_start_after_reinit_empties_the_data_directory_and_keeps_the_marker_until_the_clone(node_files: Path,
                                                                                              ) -> None:
    (node_files / "data" / "PG_VERSION").write_text("17\n")
    (node_files / "data" / "base").mkdir()
    (node_files / "events.jsonl").write_text("{}\n")
    start(node_files)
    assert (node_files / "data" / "PG_VERSION").exists()  # no marker: nothing happens to the data
    (node_files / "reinit").touch()
    start(node_files)
    assert list((node_files / "data").iterdir()) == []
    assert (node_files / "reinit").exists() and (node_files / "events.jsonl").exists()


def test_a_start_without_maintenance_mode_drops_repmgrs_own_pause_record(node_files: Path) -> None:
    state = node_files / "data" / "pg_stat" / "repmgrd_state.txt"
    state.write_text("2:1")
    (node_files / "paused").touch()
    start(node_files)
    assert state.exists()  # paused: repmgr's record stays and repmgrd starts paused
    (node_files / "paused").unlink()
    start(node_files)
    assert not state.exists()  # resumed while this node was down: repmgrd must not start paused


def test_agent_pause_and_resume_set_the_flag_even_while_postgres_is_down(node_files: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdock_agent import __main__ as agent
    from pgdock_agent import postgres

    monkeypatch.setattr(postgres, "running", lambda: False)
    state = node_files / "data" / "pg_stat" / "repmgrd_state.txt"
    state.write_text("2:1")
    assert agent.dispatch("pause", []) == 0 and (node_files / "paused").exists() and state.exists()
    assert agent.dispatch("resume", []) == 0 and not (node_files / "paused").exists() and not state.exists()


def test_agent_pause_pauses_repmgrd_of_a_running_node(node_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdock_agent import __main__ as agent
    from pgdock_agent import postgres

    calls: list[bool] = []
    monkeypatch.setattr(postgres, "running", lambda: True)
    monkeypatch.setattr(postgres, "pause_repmgrd", lambda pause: calls.append(pause) or True)
    assert agent.dispatch("pause", []) == 0 and agent.dispatch("resume", []) == 0
    assert calls == [True, False]
    monkeypatch.setattr(postgres, "pause_repmgrd", lambda pause: False)
    assert agent.dispatch("pause", []) == 1  # PostgreSQL did not take it: the supervisor re-applies it


@pytest.mark.parametrize(("flag", "repmgr_paused", "repaused"), [(True, False, True), (True, True, False),
                                                                  (True, None, False), (False, False, False)])
def test_a_paused_node_pauses_repmgrd_again_when_it_lost_the_pause(node_files: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   flag: bool, repmgr_paused: bool | None,
                                                                   repaused: bool) -> None:
    from pgdock_agent import postgres, supervisor

    if flag:
        (node_files / "paused").touch()
    calls: list[bool] = []
    monkeypatch.setattr(postgres, "running", lambda: True)
    monkeypatch.setattr(postgres, "repmgrd_paused", lambda: repmgr_paused)
    monkeypatch.setattr(postgres, "pause_repmgrd", lambda pause: calls.append(pause) or True)
    sup = supervisor.Supervisor.__new__(supervisor.Supervisor)
    sup.pause_checked = -supervisor.PAUSE_CHECK_SECONDS
    sup.keep_paused()
    assert calls == ([True] if repaused else [])


def test_the_gate_refuses_while_the_node_is_paused(node_files: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from pgdock_agent import decide, promote

    monkeypatch.setattr(promote, "CONTACTS", tmp_path / "contacts.json")
    promote.publish({"n1": decide.PeerView("n1", time.monotonic() + 60)})
    (node_files / "paused").touch()
    verdict = promote.gate(0.0, ("n1",))
    assert verdict.act is decide.Act.REFUSE and verdict.reason.startswith("paused")


# ---------------------------------------------------------------- the commands, up to the first Docker call




@pytest.fixture
def observed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A spec file, and status rows the commands observe instead of asking Docker (which they must not reach)."""
    from pgdock_gen import docker

    def no_docker(*_: object, **__: object) -> None:
        raise AssertionError("a dry run or a refusal reached Docker")

    monkeypatch.setattr(docker, "client", no_docker)
    (tmp_path / "cluster.yaml").write_text(SPEC_TEXT)

    def use(rows: list[NodeStatus]) -> Path:
        monkeypatch.setattr(cluster.Running, "status", lambda self: rows)
        return tmp_path / "cluster.yaml"

    return use


def test_dry_runs_print_the_plan_and_change_nothing(run_cli, observed) -> None:
    spec_file = observed(primary_gone())
    result = run_cli("failover", "-f", spec_file, "n2", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "n2: promote" in result.stdout and "n3: repmgr standby follow n2" in result.stdout
    spec_file = observed(healthy())
    for command in (("reinit", "n3"), ("remove", "n3", "--volumes"), ("restart", "--all"), ("pause",), ("resume",)):
        result = run_cli(command[0], "-f", spec_file, *command[1:], "--dry-run")
        assert result.exit_code == 0, (command, result.stderr)
        assert result.stdout.startswith("  - "), (command, result.stdout)


def test_a_refusal_is_one_line_with_exit_2(run_cli, observed) -> None:
    result = run_cli("failover", "-f", observed(healthy()), "n2", "--yes")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: failover to n2 refused: n1 is primary and answers: a failover now would make two primaries; for a "
        "planned change use `pgdock-gen switchover n2`"]
    result = run_cli("failover", "-f", observed(primary_gone(paused=False)), "n2", "--yes")
    assert result.exit_code == 2 and result.stderr.strip().endswith("pause` first so that only your choice is "
                                                                    "promoted (--force to override)")
    result = run_cli("remove", "-f", observed(healthy()), "n1", "--yes")
    assert result.exit_code == 2 and "switch over first" in result.stderr


def test_restart_needs_one_node_or_all(run_cli, observed) -> None:
    spec_file = observed(healthy())
    assert run_cli("restart", "-f", spec_file).exit_code == 2
    assert run_cli("restart", "-f", spec_file, "n2", "--all").exit_code == 2


def test_no_answer_at_the_question_changes_nothing(run_cli, observed, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    result = run_cli("reinit", "-f", observed(healthy()), "n3")
    assert result.exit_code == 1
    assert "clone it again?" in result.stdout and "aborted" in result.stderr
