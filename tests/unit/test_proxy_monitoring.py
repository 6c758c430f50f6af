"""The health API's port in the spec, and what `proxy` and `monitoring` render: checked by the spec rules,
by reading the files, and by the real tools (HAProxy's and Prometheus' own checkers, which
scripts/setup.sh installs from Debian: a missing one fails here, it is not skipped)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pgdock_agent import metrics
from pgdock_agent.health import Archive, Facts, Replica

from pgdock_gen import cron, dsn, render, spec
from pgdock_gen.errors import UsageError

from .conftest import MINIMAL_SPEC, render_spec
from .test_spec import only_problem, problems, with_nodes

WITH_BOTH = MINIMAL_SPEC + """\
  - name: n2
    address: 10.0.0.2
    api_port: 9000
witness:
  name: w1
  address: 10.0.0.3
proxy: {}
monitoring: {}
"""


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: scripts/setup.sh installs it (Debian's prometheus and haproxy packages)"
    return found


# ---------------------------------------------------------------- the spec


def test_defaults() -> None:
    parsed = spec.parse(WITH_BOTH)
    assert [n.api_port for n in parsed.members] == [8008, 9000, 8008]
    assert (parsed.proxy.port, parsed.proxy.readonly_port) == (5000, 5001)
    assert (parsed.monitoring.max_lag_seconds, parsed.monitoring.max_paused_minutes) == (30, 60)
    plain = spec.parse(MINIMAL_SPEC)
    assert (plain.proxy, plain.monitoring) == (None, None)


@pytest.mark.parametrize(("second", "clash"), [
    ("port: 5433\nssh_port: 2223", "is also nodes[0].api_port"),  # both on the default 8008
    ("port: 5433\nssh_port: 2223\napi_port: 5432", "is also nodes[0].port"),
    ("port: 5433\nssh_port: 2223\napi_port: 2222", "is also nodes[0].ssh_port"),
    ("port: 5433\nssh_port: 2223\napi_port: 2223", "is also nodes[1].ssh_port"),  # its own sshd
])
def test_api_ports_are_unique_per_address(second: str, clash: str) -> None:
    match = only_problem(with_nodes("name: n1\naddress: 10.0.0.1", f"name: n2\naddress: 10.0.0.1\n{second}"))
    assert (match["path"], clash in match["message"]) == ("nodes[1].api_port", True), match.string


def test_api_port_may_repeat_on_other_addresses_and_clash_with_the_witness() -> None:
    spec.parse(with_nodes("name: n1\naddress: 10.0.0.1", "name: n2\naddress: 10.0.0.2"))
    found = problems(MINIMAL_SPEC + "witness:\n  name: w\n  address: 10.0.0.1\n  port: 5433\n  ssh_port: 2223\n")
    assert any("witness.api_port" in p and "nodes[0].api_port" in p for p in found), found


@pytest.mark.parametrize(("proxy", "path", "message"), [
    ("{port: 80}", "proxy.port", "less than the minimum of 1024"),
    ("{readonly_port: 70000}", "proxy.readonly_port", "greater than the maximum of 65535"),
    ("{port: 6000, readonly_port: 6000}", "proxy.readonly_port", "is also proxy.port"),
    ("{port: 5001}", "proxy.readonly_port", "is also proxy.port"),  # against the default
    ("{host: x}", "proxy.host", "unknown key"),
])
def test_proxy_ports(proxy: str, path: str, message: str) -> None:
    match = only_problem(MINIMAL_SPEC + f"proxy: {proxy}\n")
    assert (match["path"], message in match["message"]) == (path, True), match.string


def test_monitoring_thresholds_are_bounded() -> None:
    assert only_problem(MINIMAL_SPEC + "monitoring: {max_lag_seconds: 0}\n")["path"] == "monitoring.max_lag_seconds"


@pytest.mark.parametrize(("schedule", "gap"), [
    ("0 3 * * *", dt.timedelta(days=1)), ("@hourly", dt.timedelta(hours=1)), ("0 3 * * 1-5", dt.timedelta(days=3)),
    ("0 3 1 * *", dt.timedelta(days=31)), ("0 3 29 2 *", dt.timedelta(days=4 * 365 + 1)),
])
def test_the_longest_gap_of_a_schedule(schedule: str, gap: dt.timedelta) -> None:
    assert cron.longest_gap(schedule) == gap


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("both") / "repo"
    render_spec(WITH_BOTH, out)
    return out


def test_the_folders_come_only_with_their_sections(shop_repo: Path, both: Path) -> None:
    assert not (shop_repo / "proxy").exists() and not (shop_repo / "monitoring").exists()
    assert sorted(p.name for p in (both / "proxy").iterdir()) == ["Dockerfile", "README.md", "compose.yaml",
                                                                   "haproxy.cfg"]
    assert sorted(p.name for p in (both / "monitoring").iterdir()) == ["alerts.yml", "prometheus.yml"]
    assert "PGDOCK_API_PORT=9000\n" in (both / "nodes" / "n2" / "env").read_text()
    assert "PGDOCK_API_PORT=8008\n" in (shop_repo / "nodes" / "w1" / "env").read_text()


def test_only_one_section_renders_only_its_folder(tmp_path: Path) -> None:
    render_spec(MINIMAL_SPEC + "monitoring: {}\n", tmp_path / "repo")
    assert (tmp_path / "repo" / "monitoring").is_dir() and not (tmp_path / "repo" / "proxy").exists()


def test_a_dropped_section_leaves_its_folder_stale(both: Path) -> None:
    text = WITH_BOTH.replace("proxy: {}\n", "")
    changes = render.compare(render.plan(spec.parse(text), text), both)
    assert changes.stale == ["proxy/"]


def test_haproxy_checks_every_data_node_by_its_api(both: Path) -> None:
    cfg = (both / "proxy" / "haproxy.cfg").read_text()
    for check in ("option httpchk GET /primary", "option httpchk GET /replica", "mode tcp", "bind :5000",
                  "bind :5001", "on-marked-down shutdown-sessions"):
        assert check in cfg, check
    servers = re.findall(r"^\s+server (\S+) (\S+) check port (\d+) on-marked-down shutdown-sessions$", cfg,
                         re.MULTILINE)
    assert servers == [("n1", "10.0.0.1:5432", "8008"), ("n2", "10.0.0.2:5432", "9000")] * 2  # the witness: never
    compose = yaml.safe_load((both / "proxy" / "compose.yaml").read_text())
    assert compose["services"]["haproxy"]["cap_drop"] == ["ALL"]


def test_prometheus_scrapes_every_member(both: Path) -> None:
    config = yaml.safe_load((both / "monitoring" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert [(t["targets"], t["labels"]) for t in job["static_configs"]] == [
        (["10.0.0.1:8008"], {"cluster": "c", "node": "n1"}), (["10.0.0.2:9000"], {"cluster": "c", "node": "n2"}),
        (["10.0.0.3:8008"], {"cluster": "c", "node": "w1"})]


def _alerts(repo: Path) -> dict[str, str]:
    rules = yaml.safe_load((repo / "monitoring" / "alerts.yml").read_text())["groups"][0]["rules"]
    return {rule["alert"]: rule["expr"] for rule in rules}


def test_the_alerts_the_issue_asks_for(both: Path, golden_repo: Path) -> None:
    asked = {"PgdockNodeDown", "PgdockNoPrimary", "PgdockTwoPrimaries", "PgdockReplicationLag", "PgdockFenced",
             "PgdockPausedTooLong"}
    backups = {"PgdockWalArchivingFailing", "PgdockWalArchivingBehind", "PgdockBaseBackupTooOld"}
    assert asked <= set(_alerts(both)) and not backups & set(_alerts(both))  # no backup section: no backup alerts
    golden = _alerts(golden_repo)
    assert asked | backups <= set(golden)
    assert golden["PgdockBaseBackupTooOld"].endswith(f"> {26 * 3600}")  # daily at 02:30, plus 2 h
    assert golden["PgdockReplicationLag"].endswith("> 60")


def test_alerts_name_only_metrics_the_agent_exports(golden_repo: Path) -> None:
    everything = Facts(node="n", role="primary", answers=True, timeline=1, lag_bytes=1, lag_seconds=1.0,
                       streaming=True, replicas=(Replica("r", True, 1, 1.0),),
                       archive=Archive(failing=False, pending=0, last_archived_age=1.0), backup_age=1.0,
                       events=(("e", 1),), pooler=True)
    exported = {m.name for m in metrics.metrics(everything)} | {"up"}
    named = set(re.findall(r"\b(pgdock_[a-z_]+|up)\{", (golden_repo / "monitoring" / "alerts.yml").read_text()))
    assert named and named <= exported, named - exported


@pytest.mark.parametrize("repo", ["both", "golden_repo"])
def test_promtool_accepts_the_config_and_the_rules(repo: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(repo) / "monitoring"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run([tool("promtool"), *args], cwd=folder, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("repo", ["both", "golden_repo"])
def test_haproxy_accepts_its_config(repo: str, request: pytest.FixtureRequest) -> None:
    cfg = request.getfixturevalue(repo) / "proxy" / "haproxy.cfg"
    result = subprocess.run([tool("haproxy"), "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "[WARNING]" not in result.stderr, result.stdout + result.stderr


# ---------------------------------------------------------------- dsn --proxy


def test_proxy_uris_keep_verify_full() -> None:
    parsed = spec.parse(WITH_BOTH)
    assert dsn.proxy_uri(parsed) == ("postgresql://app@localhost:5000/app?connect_timeout=3&sslmode=verify-full"
                                     "&sslrootcert=secrets/tls/ca.crt")
    assert dsn.proxy_uri(parsed, "10.0.5.7", readonly=True).startswith(
        "postgresql://app@localhost:5001/app?hostaddr=10.0.5.7&")
    with pytest.raises(UsageError, match="IP address"):
        dsn.proxy_uri(parsed, "app1")
    with pytest.raises(UsageError, match="no proxy"):
        dsn.proxy_uri(spec.parse(MINIMAL_SPEC))


def test_dsn_proxy_through_the_cli(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(WITH_BOTH)
    result = run_cli("dsn", "-f", path, "--proxy", "--readonly")
    assert result.exit_code == 0 and result.stdout.startswith("postgresql://app@localhost:5001/app?"), result
    assert run_cli("dsn", "-f", path, "--proxy", "fd00::7").stdout.count("hostaddr=fd00%3A%3A7") == 1
    assert run_cli("dsn", "-f", path).stdout.startswith("postgresql://app@10.0.0.1:5432,10.0.0.2:5432/")
