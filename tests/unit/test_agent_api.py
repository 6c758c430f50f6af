"""The health API's HTTP server on 127.0.0.1 with injected facts, asked with urllib like a load balancer;
and the parts of gathering that read files (the backup log, the event log)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pgdock_agent import api, contract, observe
from pgdock_agent.health import Facts

PRIMARY = Facts(node="n1", role="primary", answers=True, timeline=2, repmgrd=True)
STANDBY = Facts(node="n2", role="standby", answers=True, timeline=2, streaming=True, upstream="n1",
                lag_bytes=4096, lag_seconds=0.0)
STATE = {"node": "n1", "role": "primary", "status": "running as primary"}


class Node:
    """What the server sees; tests change `facts` between requests."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.looked = 0
        self.failure: Exception | None = None

    def look(self, detailed: bool) -> Facts:
        self.looked += 1
        if self.failure:
            raise self.failure
        return self.facts


@pytest.fixture
def node() -> Node:
    return Node(PRIMARY)


@pytest.fixture
def base_url(node: Node) -> Iterator[str]:
    server = api.Server("127.0.0.1", 0, api.Looks(facts=node.look, state=lambda: STATE))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_each_endpoint_on_a_primary(base_url: str) -> None:
    assert get(base_url + contract.API_PRIMARY)[0] == 200
    assert get(base_url + contract.API_REPLICA)[0] == 503
    assert get(base_url + contract.API_HEALTH)[0] == 200
    code, kind, body = get(base_url + contract.API_STATUS)
    assert (code, kind, json.loads(body)) == (200, "application/json", STATE)
    code, kind, body = get(base_url + contract.API_METRICS)
    assert (code, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "pgdock_writable_primary 1\n" in body


def test_a_standby_within_and_beyond_a_lag_bound(base_url: str, node: Node) -> None:
    node.facts = STANDBY
    assert get(base_url + "/primary")[0] == 503
    assert get(base_url + "/replica")[0] == 200
    assert get(base_url + "/replica?lag=4kB")[0] == 200
    code, _, body = get(base_url + "/replica?lag=4095")
    assert code == 503 and "over the bound" in body
    assert get(base_url + "/replica?lag=1s")[0] == 200
    code, _, body = get(base_url + "/replica?lag=soon")
    assert code == 400 and "use bytes" in body


def test_a_fence_turns_primary_unavailable_at_once(base_url: str, node: Node) -> None:
    node.facts = replace(PRIMARY, fenced=True)
    code, kind, body = get(base_url + "/primary")
    assert (code, kind) == (503, "text/plain; charset=utf-8") and "fencing" in body


def test_head_has_the_code_without_a_body_and_other_methods_are_refused(base_url: str) -> None:
    code, _, body = get(base_url + "/primary", "HEAD")
    assert (code, body) == (200, "")
    for method in ("POST", "PUT", "DELETE"):
        assert get(base_url + "/primary", method)[0] == 405
    assert get(base_url + "/nothing")[0] == 404


def test_a_failed_look_is_503_and_the_server_keeps_serving(base_url: str, node: Node) -> None:
    node.failure = RuntimeError("secret=hunter2")  # an exception's text is never sent
    for path in ("/primary", "/metrics"):
        code, _, body = get(base_url + path)
        assert code == 503 and "RuntimeError" in body and "hunter2" not in body
    node.failure = None
    assert get(base_url + "/primary")[0] == 200


@pytest.mark.parametrize(("exc", "logged"), [
    (BrokenPipeError(32, "Broken pipe"), False),  # the response written to a client that closed
    (ConnectionResetError(104, "Connection reset by peer"), False),  # its RST came first
    (ConnectionAbortedError(103, "Software caused connection abort"), False),
    (ValueError("a bug of ours"), True),
    (OSError(24, "Too many open files"), True),  # an OSError, but not a client's doing
    (TimeoutError("timed out"), True),  # http.server handles a slow client itself; one that gets here is news
    (None, True),  # nothing known: log what socketserver would
])
def test_worth_logging(exc: BaseException | None, logged: bool) -> None:
    assert api.worth_logging(exc) is logged


def test_a_client_that_hangs_up_leaves_no_traceback_and_other_errors_still_do(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    asked, gone = threading.Event(), threading.Event()
    judged: list[BaseException | None] = []
    worth = api.worth_logging
    monkeypatch.setattr(api, "worth_logging", lambda exc: judged.append(exc) or worth(exc))

    def look(detailed: bool) -> Facts:
        asked.set()
        gone.wait(5)  # answer only once the client is gone, as a health check that stopped waiting
        return PRIMARY

    server = api.Server("127.0.0.1", 0, api.Looks(facts=look, state=lambda: STATE))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = socket.create_connection(server.server_address[:2], timeout=5)
        client.sendall(b"GET /primary HTTP/1.1\r\nHost: x\r\n\r\n")
        assert asked.wait(5)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        client.close()
        time.sleep(0.2)
        gone.set()
        deadline = time.monotonic() + 5
        while not judged and time.monotonic() < deadline:
            time.sleep(0.05)
        assert judged and isinstance(judged[0], api.CLIENT_GONE), judged
        assert "Traceback" not in capsys.readouterr().err
        try:
            raise ValueError("a bug of ours")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
        err = capsys.readouterr().err
        assert "Traceback" in err and "ValueError: a bug of ours" in err
    finally:
        server.shutdown()
        server.server_close()


def test_requests_share_one_look_for_a_moment() -> None:
    node = Node(PRIMARY)
    looks = api.shared(api.Looks(facts=node.look, state=lambda: STATE))
    threads = [threading.Thread(target=looks.facts, args=(False,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert node.looked == 1
    time.sleep(api.FRESH_SECONDS)
    looks.facts(False)
    assert node.looked == 2


def test_serve_retries_a_taken_port_and_stops_when_asked() -> None:
    blocker = api.Server("127.0.0.1", 0, api.Looks(facts=Node(PRIMARY).look, state=dict))
    port = blocker.server_address[1]
    said: list[str] = []
    stopping = threading.Event()
    thread = threading.Thread(target=api.serve, args=("127.0.0.1", port, blocker.looks, stopping, said.append),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said and "failed" in said[0] and "retrying" in said[0]
    blocker.server_close()
    stopping.set()
    thread.join(api.RESTART_SECONDS + 2)
    assert not thread.is_alive()


def test_backup_age_from_the_last_line_of_the_backup_log(tmp_path: Path) -> None:
    log = tmp_path / "backups.log"
    assert observe.backup_age(0.0, log) is None
    log.write_text("2026-01-01T00:00:00+00:00 base backup of c done\n2026-01-01T01:00:00+00:00 base backup done\n\n")
    now = 1767225600.0 + 7200  # 2026-01-01T02:00:00Z
    assert observe.backup_age(now, log) == 3600.0
    log.write_text("garbage\n")
    assert observe.backup_age(now, log) is None


def test_event_counts_read_each_line_once_and_start_over_when_the_log_shrinks(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    counts = observe.EventCounts(log)
    assert counts() == ()
    log.write_text('{"event": "pgdock_fenced"}\n{"event": "standby_promote"}\nnot json\n{"event": "pgdock_fen')
    assert counts() == (("pgdock_fenced", 1), ("standby_promote", 1))
    with log.open("a") as out:
        out.write('ced"}\n')
    assert counts() == (("pgdock_fenced", 2), ("standby_promote", 1))
    log.write_text('{"event": "pgdock_paused"}\n')
    assert counts() == (("pgdock_paused", 1),)


class FakeConn:
    """A local connection that answers status.py's queries with fixed rows."""

    def __init__(self, in_recovery: bool) -> None:
        self.in_recovery = in_recovery
        self.options = ""

    def __enter__(self) -> FakeConn:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def execute(self, sql: str, *_: object) -> FakeConn:
        self.sql = sql
        return self

    def fetchone(self) -> tuple:
        if "archive_mode" in self.sql:
            return ("on",)
        if "pg_stat_archiver" in self.sql:
            return (None, None, 3, None)
        if self.in_recovery:
            return (True, 2, "10.0.0.1", 0, 0.0, 100, 100)
        return (False, 2, None, None, None, None, None)

    def fetchall(self) -> list[tuple]:
        return [("n2", "streaming", 0, 0.0, "async")]


@pytest.mark.parametrize(("env_role", "in_recovery", "role", "writable"), [
    ("primary", False, "primary", True),
    ("standby", False, "primary", True),  # the env's role is where it started; PostgreSQL says what it is now
    ("primary", True, "standby", False),
    ("witness", False, "witness", False),  # a witness is never in recovery, and never a primary
])
def test_gathered_roles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env_role: str, in_recovery: bool,
                        role: str, writable: bool) -> None:
    conns: list[FakeConn] = []

    def connect(**kw: str) -> FakeConn:
        conns.append(FakeConn(in_recovery))
        conns[-1].options = kw.get("options", "")
        return conns[-1]

    monkeypatch.setenv(contract.ENV_NODE, "n1")
    monkeypatch.setenv(contract.ENV_ROLE, env_role)
    monkeypatch.setenv(contract.ENV_PEERS, "n2=10.0.0.1:5432:2222")
    monkeypatch.setenv(contract.ENV_DATA_NODES, "n1,n2")
    monkeypatch.setattr(observe.postgres, "running", lambda: True)
    monkeypatch.setattr(observe.postgres, "local_conn", connect)
    monkeypatch.setattr(observe.postgres, "PG_HELD", tmp_path / "held")
    monkeypatch.setattr(observe.postgres, "PAUSED", tmp_path / "paused")
    monkeypatch.setattr(observe, "BOOTSTRAPPING", tmp_path / "bootstrapping")
    monkeypatch.setattr(observe, "BACKUP_LOG", tmp_path / "backups.log")
    facts = observe.gatherer(lambda: False, events=lambda: (("x", 1),))(True)
    assert (facts.role, facts.writable_primary) == (role, writable)
    assert conns and all("statement_timeout" in conn.options for conn in conns)
    if role == "standby":
        assert (facts.streaming, facts.upstream) == (True, "n2")
    if role == "primary":
        assert facts.replicas[0].name == "n2" and facts.archive is not None and facts.archive.pending == 3
    assert facts.events == (("x", 1),)


@pytest.mark.parametrize(("accepting", "code"), [(True, 200), (False, 503), (None, 503)])
def test_the_pooler_route_asks_the_pooler_not_postgresql(accepting: bool | None, code: int) -> None:
    down = Node(Facts(node="n1", role="down", answers=False))  # PostgreSQL down: the pooler may still forward
    looks = api.Looks(facts=down.look, state=lambda: STATE, pooler=lambda: accepting)
    assert api.answer(contract.API_POOLER, looks).code == code
    assert api.answer(contract.API_HEALTH, looks).code == 503
