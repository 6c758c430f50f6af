"""The agent's I/O edges, with real sockets, processes and files: probes in parallel where a refusal is
no answer, hooks that can neither block nor outlive their budget, stop before event, the promotion gate."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path

import psycopg
import pytest
from pgdock_agent import contract, decide, events, peers, promote, supervisor


@pytest.fixture
def no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "password", lambda role: "secret")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections and then never says a word (a hung or half-dead server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_a_silent_peer_delays_only_its_own_probe(no_password: None, silent_port: int) -> None:
    """Probes run one thread per peer: the silent one hangs to its connect timeout, the refusing one is
    answered at once, and the prober's snapshot never waits for either."""
    members = [peers.Peer("slow", "127.0.0.1", silent_port, 1, True),
               peers.Peer("fast", "127.0.0.1", closed_port(), 1, True)]
    published: list[dict[str, decide.PeerView]] = []
    prober = peers.Prober(members, published.append)
    started = time.monotonic()
    prober.start()
    try:
        time.sleep(0.3)
        with prober.lock:
            asked = dict(prober.answers)
        assert "fast" in asked and "slow" not in asked  # the refusal is recorded, the silent one still hangs
        snap_started = time.monotonic()
        answers, contacts = prober.snapshot()
        assert time.monotonic() - snap_started < 0.05
        assert answers == () and contacts == {}  # neither counts as contact
        prober.wait_round(started, timeout=peers.CONNECT_TIMEOUT + 1.5)
        with prober.lock:
            assert "slow" in prober.answers and prober.answers["slow"][1] is None
        assert published[-1]["slow"].contact is None and published[-1]["slow"].asked >= started
    finally:
        prober.stop()


@pytest.fixture
def hook_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(events, "EVENTS", tmp_path / "events.jsonl")
    monkeypatch.setattr(events, "HOOKS", (tmp_path / "hetzner.sh", tmp_path / "hook.sh"))
    monkeypatch.setattr(events, "HOOK_USER", None)  # this machine's postgres user cannot run the test's python
    monkeypatch.setenv(contract.ENV_NODE, "n1")
    monkeypatch.setenv(contract.ENV_NODE_ID, "1")
    monkeypatch.setenv(contract.ENV_HOOK_SECONDS, "1")
    return tmp_path


def write_hook(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def logged(hook_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (hook_dir / "events.jsonl").read_text().splitlines()]


def test_record_logs_first_and_does_not_wait_for_a_hook_that_never_ends(hook_dir: Path) -> None:
    write_hook(hook_dir / "hook.sh", "sleep 1000")
    started = time.monotonic()
    events.record(contract.EVENT_FENCED, "cut off")
    assert time.monotonic() - started < 1.0
    assert [e["event"] for e in logged(hook_dir)] == [contract.EVENT_FENCED]
    time.sleep(1.8)  # the detached runner kills the hook at its 1 s budget and logs that
    assert [e["event"] for e in logged(hook_dir)] == [contract.EVENT_FENCED, "hook:hook.sh"]


def test_a_hook_past_its_budget_is_killed_and_logged(hook_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_hook(hook_dir / "hook.sh", "echo calling the webhook; sleep 1000")
    write_hook(hook_dir / "hetzner.sh", "echo moved")
    payload = {"time": events.event_time(), "node_id": 1, "node": "n1", "event": "standby_promote",
               "success": True, "details": "d"}
    monkeypatch.setenv(contract.ENV_EVENT_JSON, json.dumps(payload))
    started = time.monotonic()
    assert events.run_hooks(hook_dir / "events.jsonl", [hook_dir / "hetzner.sh", hook_dir / "hook.sh"]) == 0
    assert time.monotonic() - started < 3.0
    by_event = {e["event"]: e for e in logged(hook_dir)}
    assert by_event["hook:hetzner.sh"]["success"] and by_event["hook:hetzner.sh"]["details"] == "moved"
    assert not by_event["hook:hook.sh"]["success"]
    assert "killed after 1 s" in by_event["hook:hook.sh"]["details"]


def test_a_failed_event_log_write_does_not_raise(hook_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "EVENTS", hook_dir / "missing-dir" / "events.jsonl")
    events.record(contract.EVENT_FENCED, "cut off")  # logged to stderr instead; the fence goes on


def test_fence_stops_postgres_before_the_event(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str] = []
    monkeypatch.setattr(supervisor.postgres, "stop", lambda *a: calls.append("stop"))
    monkeypatch.setattr(supervisor, "set_status", lambda text: calls.append("status"))
    monkeypatch.setattr(supervisor.events, "record", lambda event, details, timestamp="": calls.append(event))
    monkeypatch.setattr(supervisor.postgres, "running", lambda: True)
    sup = supervisor.Supervisor.__new__(supervisor.Supervisor)
    sup.previous, sup.handlers, sup.fenced_at = None, {}, None
    sup.apply(decide.Action(decide.Act.FENCE, "cut off", event=contract.EVENT_FENCED))
    assert calls == ["stop", "status", contract.EVENT_FENCED]
    sup.apply(decide.Action(decide.Act.FENCE, "cut off", event=contract.EVENT_FENCED))
    assert calls.count(contract.EVENT_FENCED) == 1  # an event marks the transition, not every tick
    assert sup.fenced_at is not None  # the hold-down counts from the first fence


@pytest.mark.parametrize("act", [decide.Act.FENCE, decide.Act.STEP_DOWN, decide.Act.REFUSE])
def test_every_stopping_action_stops_a_running_postgres(monkeypatch: pytest.MonkeyPatch, act: decide.Act,
                                                         tmp_path: Path) -> None:
    """A node that refuses to be a second primary must not run as one: someone (an operator's pg-start,
    repmgr) may have started PostgreSQL meanwhile."""
    stopped: list[bool] = []
    monkeypatch.setattr(supervisor.postgres, "running", lambda: True)
    monkeypatch.setattr(supervisor.postgres, "stop", lambda *a: stopped.append(True))
    monkeypatch.setattr(supervisor.postgres, "PG_HELD", tmp_path / "held")
    monkeypatch.setattr(supervisor, "REFUSED", tmp_path / "refused")
    monkeypatch.setattr(supervisor, "set_status", lambda text: None)
    sup = supervisor.Supervisor.__new__(supervisor.Supervisor)
    sup.previous, sup.fenced_at = None, None
    sup.handlers = {decide.Act.REFUSE: sup._apply_refuse}
    sup.apply(decide.Action(act, "why"))
    assert stopped == [True]


@pytest.fixture
def contacts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(promote, "CONTACTS", tmp_path / "contacts.json")
    return tmp_path / "contacts.json"


def primary_answer(name: str = "n1") -> decide.Answer:
    return decide.Answer(name, True, True, 1, 7000)


def test_the_gate_waits_until_the_primary_was_silent_long_enough(contacts_file: Path) -> None:
    promote.publish({"n1": decide.PeerView.after(None, "n1", time.monotonic(), primary_answer())})

    def probed_again() -> None:  # the primary's next probe fails: it is silent from now on
        time.sleep(0.1)
        promote.publish({"n1": decide.PeerView(**{**asdict(promote.views()["n1"]), "asked": time.monotonic()})})

    threading.Thread(target=probed_again).start()
    started = time.monotonic()
    assert promote.gate(0.5, ("n1",)).act is decide.Act.PROMOTE
    assert time.monotonic() - started >= 0.45


def test_the_gate_refuses_when_the_primary_answers_again(contacts_file: Path) -> None:
    promote.publish({"n1": decide.PeerView.after(None, "n1", time.monotonic() - 1, primary_answer())})

    def primary_is_back() -> None:
        time.sleep(0.2)
        promote.publish({"n1": decide.PeerView.after(None, "n1", time.monotonic(), primary_answer())})

    threading.Thread(target=primary_is_back).start()
    verdict = promote.gate(2, ("n1",))
    assert verdict.act is decide.Act.REFUSE and "answered as primary" in verdict.reason


def test_the_gate_gives_up_when_the_prober_stopped_publishing(contacts_file: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promote, "GATE_SLACK", 0.3)
    promote.publish({"n1": decide.PeerView("n1", time.monotonic() - 20)})
    verdict = promote.gate(0.1, ("n1",))
    assert verdict.act is decide.Act.REFUSE and "no decision" in verdict.reason


def test_an_unreadable_contacts_file_reads_as_nothing_known(contacts_file: Path) -> None:
    contacts_file.write_text("{garbled")
    assert promote.views() == {}


def test_a_restore_quotes_its_command_for_the_shell_and_its_settings_for_postgres(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The restore_command a restored node runs: each value one shell word, the line a valid config string."""
    import re
    import shlex

    from pgdock_agent import bootstrap

    settings = bootstrap.recovery_settings("s3://b/x';touch /tmp/pwned;#", "shop", "2026-11-25T17:03:00+00:00")
    assert shlex.split(settings["restore_command"]) == [
        contract.AGENT, "restore-wal", "s3://b/x';touch /tmp/pwned;#", "shop", "%f", "%p"]
    assert settings["recovery_target_time"] == "2026-11-25T17:03:00+00:00"
    line = contract.conf_string(settings["restore_command"])
    unquoted = re.sub(r"''|\\(.)", lambda m: "'" if m.group(0) == "''" else m.group(1), line[1:-1])
    assert line[0] == line[-1] == "'" and "'" not in line[1:-1].replace("''", "")
    assert unquoted == settings["restore_command"]


def test_a_hold_ends_only_after_the_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """repmgr's service_start_command (and an operator's pg-start) must not leave a moment where the node is
    neither held nor running: the supervisor would decide for it (a rejoin, a second start) meanwhile."""
    from pgdock_agent import postgres

    held = tmp_path / "held"
    held.touch()
    seen: list[bool] = []
    monkeypatch.setattr(postgres, "PG_HELD", held)
    monkeypatch.setattr(postgres, "running", lambda: False)
    monkeypatch.setattr(postgres, "pg_ctl", lambda *a, **k: seen.append(held.exists()))
    postgres.start()
    assert seen == [True] and not held.exists()


def test_a_stale_pid_file_is_not_a_running_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After `docker kill` the pid in postmaster.pid may belong to another process of the new container
    (here: this test's own), which made the agent think PostgreSQL was up and never start it."""
    import os

    from pgdock_agent import postgres

    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path}\n")
    monkeypatch.setattr(postgres, "PGDATA", tmp_path)
    assert postgres.running() is False


@pytest.fixture
def wal_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory with a pg_wal, a bound of 1 MB, batches of 3, a store (cloudwal.push: barman-cloud
    itself runs in the e2e) that records what it stored and fails while `s3-down` exists, and the event
    log in tmp."""
    from pgdock_agent import archive, cloudwal

    pg_wal = tmp_path / "data" / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)

    def push(paths: list[str]) -> dict[str, str | None]:
        if (tmp_path / "s3-down").exists():
            return dict.fromkeys(paths, "cannot reach the S3 endpoint")
        with (tmp_path / "stored").open("a") as stored:
            stored.writelines(f"{p}\n" for p in paths)
        return dict.fromkeys(paths)

    monkeypatch.setattr(cloudwal, "push", push)
    monkeypatch.setattr(cloudwal, "FILES_PER_JOB", 1)
    monkeypatch.setattr(contract, "PGDATA", tmp_path / "data")
    monkeypatch.setattr(contract, "ARCHIVE_GAP", tmp_path / "archive-gap.json")
    monkeypatch.setattr(archive, "SPOOL", tmp_path / "archive-spool")
    monkeypatch.setattr(events, "EVENTS", tmp_path / "events.jsonl")
    monkeypatch.setattr(events, "HOOKS", [])
    monkeypatch.setattr(archive, "log", lambda message: None)
    for name, value in ((contract.ENV_MAX_WAL_KEEP_MB, "1"), (contract.ENV_BACKUP_URL, "s3://b/p"),
                        (contract.ENV_BACKUP_SERVER, "c"), (contract.ENV_BACKUP_JOBS, "3")):
        monkeypatch.setenv(name, value)
    return tmp_path


def ready(wal_node: Path, *names: str) -> None:
    """What PostgreSQL does when a WAL file is complete: the file, and its .ready in archive_status."""
    pg_wal = wal_node / "data" / "pg_wal"
    for name in names:
        (pg_wal / name).write_bytes(b"\0" * 1000)
        (pg_wal / "archive_status" / f"{name}.ready").touch()


def archived(wal_node: Path, name: str) -> None:
    """What PostgreSQL does after archive_command said 0."""
    status = wal_node / "data" / "pg_wal" / "archive_status"
    (status / f"{name}.ready").rename(status / f"{name}.done")


def test_archive_stores_a_batch_and_answers_the_rest_from_markers(wal_node: Path) -> None:
    """One store call takes the asked file and the next ready ones (up to backup.jobs); PostgreSQL's next
    calls are answered from the markers without storing again, and each marker answers once."""
    from pgdock_agent import archive

    segments = [f"0000000100000000000000{n:02X}" for n in range(1, 6)]
    ready(wal_node, *segments)
    assert archive.archive(f"pg_wal/{segments[0]}") == 0
    assert (wal_node / "stored").read_text().split() == [f"pg_wal/{s}" for s in segments[:3]]
    archived(wal_node, segments[0])
    for seg in segments[1:3]:
        assert archive.archive(f"pg_wal/{seg}") == 0
        archived(wal_node, seg)
    assert len((wal_node / "stored").read_text().split()) == 3
    assert archive.archive(f"pg_wal/{segments[3]}") == 0
    assert (wal_node / "stored").read_text().split()[3:] == [f"pg_wal/{s}" for s in segments[3:]]
    assert sorted(m.name for m in (wal_node / "archive-spool").iterdir()) == [segments[4]]


def test_a_failed_batch_leaves_no_marker_and_stale_markers_go(wal_node: Path) -> None:
    """Nothing is reported stored that S3 did not accept; a marker whose file PostgreSQL no longer waits
    for (a restart re-queued nothing) is dropped by the next batch instead of answering for a later file."""
    from pgdock_agent import archive

    (wal_node / "s3-down").touch()
    ready(wal_node, "000000010000000000000001", "000000010000000000000002")
    (wal_node / "archive-spool").mkdir()
    (wal_node / "archive-spool" / "000000010000000000000009").touch()
    assert archive.archive("pg_wal/000000010000000000000001") == 1
    assert list((wal_node / "archive-spool").iterdir()) == []
    assert not (wal_node / "stored").exists()


def test_an_outage_keeps_wal_until_the_bound_then_gives_it_up_once_recorded(wal_node: Path) -> None:
    """Issue 10, row 6: within the bound a failure is a failure (PostgreSQL keeps the file and retries);
    past it the file is given up, the gap recorded with one event, and status says so."""
    from pgdock_agent import archive, status

    (wal_node / "s3-down").touch()
    pg_wal = wal_node / "data" / "pg_wal"
    (pg_wal / "000000010000000000000001").write_bytes(b"\0" * 600_000)
    assert archive.archive("pg_wal/000000010000000000000001") == 1
    assert not (wal_node / "archive-gap.json").exists()
    (pg_wal / "000000010000000000000002").write_bytes(b"\0" * 600_000)
    assert archive.archive("pg_wal/000000010000000000000001") == 0  # 1.2 MB held: past the bound
    (pg_wal / "archive_status" / "000000010000000000000001.done").touch()  # what PostgreSQL does next
    assert archive.archive("pg_wal/000000010000000000000002") == 1  # 0.6 MB left: within the bound again
    (pg_wal / "000000010000000000000003").write_bytes(b"\0" * 600_000)
    assert archive.archive("pg_wal/000000010000000000000002") == 0
    dropped = [e for e in logged(wal_node) if e["event"] == contract.EVENT_WAL_DROPPED]
    assert len(dropped) == 1 and "000000010000000000000001" in dropped[0]["details"]
    assert "gap since" in (archive.gap_note() or "") and "000000010000000000000001" in archive.gap_note()
    assert not (wal_node / "stored").exists()
    (wal_node / "archive-gap.json").unlink()  # the sidecar's base backup closes the gap
    assert archive.gap_note() is None and status.gap_note is archive.gap_note


@pytest.mark.parametrize(("error", "alive"), [
    ("connection failed: FATAL:  the database system is starting up", True),
    ("connection failed: FATAL:  the database system is shutting down", True),
    ("connection failed: FATAL:  the database system is not yet accepting connections", True),
    ("connection failed: Connection refused", False),
    ("connection failed: timeout expired", False),
    ("connection failed: FATAL:  password authentication failed for user \"repmgr\"", False),
])
def test_only_a_postmaster_saying_it_starts_or_stops_is_contact_without_an_answer(error: str, alive: bool) -> None:
    import psycopg

    assert peers.reachable_but_not_ready(psycopg.OperationalError(error)) is alive
    assert not peers.reachable_but_not_ready(OSError(error))


def test_a_restarted_container_drops_lock_files_whose_pid_another_process_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed primary's container, started again: the socket lock in its writable layer named PID 29,
    which the new container had given to another process, and PostgreSQL refused to start ("lock file
    already exists"); the rejoin then failed (seen in the backup e2e). A lock whose PID is a live postgres
    stays: that PostgreSQL runs."""
    from pgdock_agent import postgres

    proc, run, data = tmp_path / "proc", tmp_path / "run", tmp_path / "data"
    for pid, comm in ((29, "pgdock-agent"), (41, "postgres")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(f"{comm}\n")
    run.mkdir()
    data.mkdir()
    monkeypatch.setattr(postgres, "PROC", proc)
    monkeypatch.setattr(postgres, "SOCKET_DIR", run)
    monkeypatch.setattr(postgres, "PGDATA", data)
    reused = run / ".s.PGSQL.5432.lock"
    reused.write_text("29\n/var/lib/pgdock/data\n")
    live = run / ".s.PGSQL.5433.lock"
    live.write_text("41\n/var/lib/pgdock/data\n")
    gone = data / "postmaster.pid"
    gone.write_text("77\n/var/lib/pgdock/data\n")
    assert sorted(postgres.clear_stale_locks()) == sorted([reused, gone])
    assert live.exists() and not reused.exists() and not gone.exists()
    assert postgres.clear_stale_locks() == []


def test_restore_fetches_ahead_answers_from_the_spool_and_keeps_it_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """restore_command: one fetch brings the asked segment and the next ones (a batch); recovery's next
    calls are served from the spool, and so is its second ask for the last segment it replayed; a missing
    file (the end of the archive) is exit 1 without a log line; the spool holds at most a batch and one."""
    from pgdock_agent import cloudwal, restore_wal

    archive = {f"0000000100000000000000{n:02X}": f"wal {n}" for n in range(1, 6)}
    fetched: list[list[str]] = []

    def fetch(source: str, server: str, names: list[str], spool: Path) -> dict[str, str | None]:
        assert (source, server) == ("s3://b/p", "old")
        fetched.append(names)
        for name in names:
            if name in archive:
                (spool / name).write_text(archive[name])
        return {name: None if name in archive else "missing" for name in names}

    monkeypatch.setattr(cloudwal, "fetch", fetch)
    monkeypatch.setattr(cloudwal, "FILES_PER_JOB", 1)
    monkeypatch.setattr(restore_wal, "SPOOL", tmp_path / "spool")
    monkeypatch.setattr(restore_wal, "log", lambda message: pytest.fail(f"logged {message}"))
    monkeypatch.setenv(contract.ENV_BACKUP_JOBS, "3")
    dest = tmp_path / "RECOVERYXLOG"
    names = sorted(archive)
    for name in names:
        assert restore_wal.restore_wal("s3://b/p", "old", name, str(dest)) == 0
        assert dest.read_text() == archive[name]
        assert len(list((tmp_path / "spool").iterdir())) <= 3 + 1
    assert fetched == [names[0:3], names[3:5] + ["000000010000000000000006"]]
    assert restore_wal.restore_wal("s3://b/p", "old", "000000010000000000000006", str(dest)) == 1
    assert restore_wal.restore_wal("s3://b/p", "old", "00000002.history", str(dest)) == 1
    assert restore_wal.restore_wal("s3://b/p", "old", names[-1], str(dest)) == 0  # the end of recovery
    assert len(fetched) == 4 and dest.read_text() == archive[names[-1]]
    restore_wal.clear_spool()
    assert list((tmp_path / "spool").iterdir()) == []


@pytest.mark.parametrize(("role", "running", "last_seen", "monitoring"), [
    ("primary", True, -1.0, True),  # a primary's repmgrd has no upstream
    ("primary", False, None, False),
    ("standby", True, 0.0, True),
    ("standby", True, 9.5, True),
    ("standby", True, -1.0, False),  # started, has not seen its upstream yet: an election must not count on it
    ("standby", True, 42.0, False),  # stale: left in shared memory by a repmgrd that stopped
    ("standby", True, None, False),  # repmgr's metadata unreadable
    ("witness", True, 1.0, True),
    ("witness", True, -1.0, False),
    ("standby", False, 0.0, False),
])
def test_repmgrd_counts_on_a_standby_only_once_it_monitors_its_upstream(role: str, running: bool,
                                                                       last_seen: float | None,
                                                                       monitoring: bool) -> None:
    from pgdock_agent.status import monitoring as monitors

    assert monitors(role, running, last_seen) is monitoring


@pytest.mark.parametrize(("text", "host"), [
    # as repmgr writes it (clone, follow), then the same with a later line that wins, quotes inside, none at all
    ("# Do not edit this file manually!\nprimary_conninfo = 'host=10.9.9.2 user=repmgr port=5432 "
     "application_name=n2 sslmode=verify-full'\n", "10.9.9.2"),
    ("primary_conninfo = 'host=10.9.9.1'\nprimary_conninfo = 'host=10.9.9.3 user=repmgr'\n", "10.9.9.3"),
    ("primary_conninfo = 'user=repmgr host=db-2.example.test password=''two words'''\n", "db-2.example.test"),
    ("restore_command = 'x'\n", None),
    ("primary_conninfo = ''\n", None),
])
def test_upstream_host_is_read_from_postgresql_auto_conf(tmp_path: Path, text: str, host: str | None) -> None:
    from pgdock_agent import postgres

    auto_conf = tmp_path / "postgresql.auto.conf"
    auto_conf.write_text(text)
    assert postgres.upstream_host(auto_conf) == host
    assert postgres.upstream_host(tmp_path / "missing.conf") is None


@pytest.mark.parametrize(("error", "record"), [
    # a new witness before `witness register`: repmgr's extension is not there, so it has no record: register
    (psycopg.errors.UndefinedTable("relation \"repmgr.nodes\" does not exist"), (None, False)),
    # PostgreSQL did not answer: nothing is known, the agent asks again on its next tick
    (psycopg.OperationalError("connection refused"), None),
])
def test_registration_tells_no_record_from_no_answer(monkeypatch: pytest.MonkeyPatch, error: Exception,
                                                     record: tuple | None) -> None:
    from pgdock_agent import status

    def failing(*args: object, **kwargs: object):
        raise error

    monkeypatch.setenv(contract.ENV_NODE_ID, "3")
    monkeypatch.setattr(status, "local_conn", failing)
    assert status.registration() == record
