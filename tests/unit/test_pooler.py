"""Issue 15's pooler: the spec's `pooler` and `proxy.via_pooler`, what they render (env, pg_hba, pg_ident,
haproxy.cfg), the agent's pure decisions (where a pool forwards, when a paused pool resumes, pgbouncer.ini) and
which nodes a switchover pauses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pgdock_agent import health, pooler

from pgdock_gen import contract, spec
from pgdock_gen.cluster import NodeStatus, Running
from pgdock_gen.switchover import pooler_targets

from .conftest import render_spec
from .test_spec import only_problem

POOLED = """\
cluster: c
postgres:
  version: 17
  database: shop
nodes:
  - name: n1
    address: 10.0.0.1
  - name: n2
    address: 10.0.0.2
witness:
  name: w1
  address: 10.0.0.3
pooler: {}
proxy: {via_pooler: true}
"""


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pooled") / "repo"
    render_spec(POOLED, out)
    return out


# ---------------------------------------------------------------- the spec


def test_defaults() -> None:
    parsed = spec.parse(POOLED)
    assert (parsed.pooler.port, parsed.pooler.pool_mode, parsed.proxy.via_pooler) == (6432, "transaction", True)
    assert spec.parse(POOLED.replace("pooler: {}", "pooler: {pool_mode: session}")).pooler.pool_mode == "session"
    assert spec.parse(POOLED.replace("proxy: {via_pooler: true}", "proxy: {}")).proxy.via_pooler is False


@pytest.mark.parametrize(("change", "path", "message"), [
    (("pooler: {}", "pooler: {port: 5432}"), "pooler.port", "is also nodes[0].port"),
    (("pooler: {}", "pooler: {port: 8008}"), "pooler.port", "is also nodes[0].api_port"),
    (("pooler: {}", "pooler: {port: 80}"), "pooler.port", "less than the minimum of 1024"),
    (("pooler: {}", "pooler: {pool_mode: statement}"), "pooler.pool_mode", "use one of transaction, session"),
    (("pooler: {}\n", ""), "proxy.via_pooler", "needs a `pooler:` section"),
    (("version: 17", "version: 15"), "pooler", "needs postgres.version 17"),
    (("database: shop", "database: shop\n  user: pgdock_pooler"), "postgres.user", "is reserved"),
])
def test_bad_pooler_specs_name_the_field(change: tuple[str, str], path: str, message: str) -> None:
    match = only_problem(POOLED.replace(*change))
    assert (match["path"], message in match["message"]) == (path, True), match.string


def test_the_pooler_port_may_be_a_port_of_the_witness_on_its_own_address() -> None:
    spec.parse(POOLED.replace("pooler: {}", "pooler: {port: 5433}").replace("address: 10.0.0.3",
                                                                             "address: 10.0.0.3\n  port: 5433"))


# ---------------------------------------------------------------- what it renders


def test_data_nodes_run_a_pooler_and_the_witness_none(pooled: Path) -> None:
    for node in ("n1", "n2"):
        env = (pooled / "nodes" / node / "env").read_text()
        assert f"{contract.ENV_POOLER_PORT}=6432\n{contract.ENV_POOL_MODE}=transaction\n" in env
    assert contract.ENV_POOLER_PORT not in (pooled / "nodes" / "w1" / "env").read_text()


def test_the_pooler_role_logs_in_by_certificate_from_data_nodes_only(pooled: Path) -> None:
    hba = (pooled / "nodes" / "n1" / "pg_hba.conf").read_text()
    cert = re.findall(rf"^hostssl +shop +{contract.POOLER_ROLE} +(\S+) +cert map={contract.IDENT_MAP}$", hba, re.M)
    assert cert == ["10.0.0.1/32", "10.0.0.2/32"]
    rules = [line.split() for line in hba.splitlines() if line.startswith("hostssl")]
    first_app_rule = rules.index(["hostssl", "all", "all", "0.0.0.0/0", "scram-sha-256"])
    reject = rules.index(["hostssl", "all", contract.POOLER_ROLE, "0.0.0.0/0", "reject"])
    assert reject < first_app_rule  # no password login for it from anywhere
    ident = (pooled / "nodes" / "n1" / "pg_ident.conf").read_text()
    assert re.findall(r"^(\S+) +(\S+) +(\S+)$", ident, re.M) == [
        (contract.IDENT_MAP, "n1", contract.POOLER_ROLE), (contract.IDENT_MAP, "n2", contract.POOLER_ROLE)]
    assert "ident_file = '/etc/pgdock/pg_ident.conf'" in (pooled / "nodes" / "n1" / "postgresql.conf").read_text()


def test_without_a_pooler_no_cert_login_exists(tmp_path: Path) -> None:
    render_spec(POOLED.replace("pooler: {}\n", "").replace("proxy: {via_pooler: true}", "proxy: {}"), tmp_path)
    assert contract.POOLER_ROLE not in (tmp_path / "nodes" / "n1" / "pg_hba.conf").read_text()
    assert contract.IDENT_MAP + " " not in (tmp_path / "nodes" / "n1" / "pg_ident.conf").read_text()


def test_haproxy_sends_the_write_port_to_any_live_pooler(pooled: Path) -> None:
    cfg = (pooled / "proxy" / "haproxy.cfg").read_text()
    assert "default_backend c-pooler" in cfg
    backend = cfg.split("\nbackend c-pooler\n")[1].split("\n\n")[0]
    assert "balance first" in backend and "option httpchk GET /pooler" in backend
    assert re.findall(r"server (\S+) (\S+) check port (\d+)$", backend, re.M) == [
        ("n1", "10.0.0.1:6432", "8008"), ("n2", "10.0.0.2:6432", "8008")]
    assert "shutdown-sessions" not in backend  # a pooler keeps its clients through a change of primary
    assert cfg.count("on-marked-down shutdown-sessions") == 4  # the primary and replica backends' servers


# ---------------------------------------------------------------- the agent's decisions


@pytest.mark.parametrize(("i_am_primary", "seen", "current", "expected"), [
    (True, "10.0.0.2:5432", "10.0.0.2:5432", "10.0.0.1:5432"),  # this node is the primary: itself
    (False, "10.0.0.2:5432", "10.0.0.1:5432", "10.0.0.2:5432"),  # another primary is ready: follow it
    (False, None, "10.0.0.1:5432", "10.0.0.1:5432"),  # none seen (failover under way): keep, clients wait
    (False, None, None, None),  # never seen one: not started yet
])
def test_where_the_pool_forwards(i_am_primary: bool, seen: str | None, current: str | None,
                                 expected: str | None) -> None:
    assert pooler.forward_to("10.0.0.1:5432", i_am_primary, seen, current) == expected


@pytest.mark.parametrize(("paused_on", "target", "paused_for", "due"), [
    ("10.0.0.1:5432", "10.0.0.1:5432", 2.0, False),  # still the old primary: hold
    ("10.0.0.1:5432", "10.0.0.2:5432", 2.0, True),  # the new primary is ready
    ("10.0.0.1:5432", None, 2.0, False),
    ("10.0.0.1:5432", "10.0.0.1:5432", contract.POOLER_PAUSE_MAX_SECONDS, True),  # nobody lifted it
    ("", "10.0.0.1:5432", 1.0, True),  # paused before it knew a target
])
def test_when_a_paused_pool_resumes(paused_on: str, target: str | None, paused_for: float, due: bool) -> None:
    assert pooler.resume_due(paused_on, target, paused_for) is due


def test_pgbouncer_ini_has_tls_both_ways_and_no_secret() -> None:
    settings = pooler.Settings("n1", "10.0.0.1", 6432, "transaction", "shop")
    text = pooler.config_text(settings, "10.0.0.2:5433")
    for line in ("[databases]\nshop = host=10.0.0.2 port=5433 dbname=shop auth_dbname=shop\n\n[pgbouncer]",
                 "listen_addr = 10.0.0.1", "listen_port = 6432", "pool_mode = transaction",
                 "client_tls_sslmode = require", "server_tls_sslmode = verify-full", "auth_type = hba",
                 f"auth_user = {contract.POOLER_ROLE}",
                 f"auth_query = SELECT usename, passwd FROM {contract.POOLER_AUTH_FUNCTION}($1)"):
        assert f"\n{line}\n" in text, line
    assert "password" not in text.lower()
    assert "local    pgbouncer  postgres                 peer" in pooler.HBA_TEXT
    rules = [line.split() for line in pooler.HBA_TEXT.splitlines() if line and not line.startswith("#")]
    assert [r for r in rules if "postgres" in r and r[0] != "local"] == [
        ["hostssl", "all", "postgres", "0.0.0.0/0", "reject"], ["hostssl", "all", "postgres", "::/0", "reject"]]
    assert rules.index(["hostssl", "all", "postgres", "0.0.0.0/0", "reject"]) < rules.index(
        ["hostssl", "all", "all", "0.0.0.0/0", "scram-sha-256"])  # its empty userlist entry is never a login
    assert "trust" not in pooler.HBA_TEXT and pooler.USERS_TEXT == '"postgres" ""\n'


def test_the_auth_function_never_serves_pgdocks_roles() -> None:
    function = next(s for s in pooler.AUTH_SQL if "FUNCTION" in s and "SECURITY DEFINER" in s)
    for guard in ("NOT rolsuper", "NOT rolreplication", "'repmgr'", "'replicator'", "'postgres'",
                  f"'{contract.POOLER_ROLE}'", "search_path = pg_catalog"):
        assert guard in function, guard
    assert any(s.startswith("REVOKE ALL ON FUNCTION") and "FROM PUBLIC" in s for s in pooler.AUTH_SQL)


# ---------------------------------------------------------------- the switchover


def _row(name: str, role: str, reachable: bool = True) -> NodeStatus:
    return NodeStatus(name, role, None, 1, None, None, True, reachable, True, "")


def test_a_switchover_pauses_the_reachable_data_nodes_pools() -> None:
    rows = [_row("n1", "primary"), _row("n2", "down", reachable=False), _row("w1", "witness")]
    assert [t.node.name for t in pooler_targets(Running(spec.parse(POOLED), lab=True), rows)] == ["n1"]
    plain = POOLED.replace("pooler: {}\n", "").replace("proxy: {via_pooler: true}", "proxy: {}")
    assert pooler_targets(Running(spec.parse(plain), lab=True), rows) == []


@pytest.mark.parametrize(("accepting", "code", "reason"), [
    (True, 200, "n1: PgBouncer accepts connections"),
    (False, 503, "n1: PgBouncer does not accept connections"),
    (None, 503, "n1: no pooler on this node"),
])
def test_the_pooler_check_haproxy_uses(accepting: bool | None, code: int, reason: str) -> None:
    assert health.pooler("n1", accepting) == health.Verdict(code, reason)


def test_pooler_metrics_only_where_a_pooler_runs() -> None:
    from pgdock_agent import metrics

    base = health.Facts(node="n1", role="standby", answers=True)
    assert "pgdock_pooler" not in metrics.exposition(base)
    text = metrics.exposition(health.Facts(node="n1", role="standby", answers=True, pooler=False))
    assert "pgdock_pooler_up 0\n" in text and "pgdock_pooler_paused 0\n" in text
    paused = metrics.exposition(health.Facts(node="n1", role="standby", answers=True, pooler=True,
                                             pooler_paused=True))
    assert "pgdock_pooler_up 1\n" in paused and "pgdock_pooler_paused 1\n" in paused


def test_the_pooler_alerts_come_with_the_pooler(tmp_path: Path) -> None:
    render_spec(POOLED + "monitoring: {}\n", tmp_path / "with")
    render_spec(POOLED.replace("pooler: {}\n", "").replace("proxy: {via_pooler: true}", "proxy: {}")
                + "monitoring: {}\n", tmp_path / "without")
    with_pooler = (tmp_path / "with" / "monitoring" / "alerts.yml").read_text()
    assert "alert: PgdockPoolerDown" in with_pooler and "alert: PgdockPoolerPausedTooLong" in with_pooler
    assert "Pooler" not in (tmp_path / "without" / "monitoring" / "alerts.yml").read_text()
