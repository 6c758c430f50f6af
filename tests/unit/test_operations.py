"""Fast checks of the operations' pure parts: client URIs, version numbering, restore targets, context errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgdock_gen import contexts, deploy, dsn, restore
from pgdock_gen.errors import UsageError
from pgdock_gen.spec import parse

SPEC = """
cluster: shop
postgres: {version: 17, database: app, user: app}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2, port: 6432}
witness: {name: w1, address: 10.0.0.3}
"""


def test_dsn_lists_data_nodes_and_targets_the_primary() -> None:
    uri = dsn.uri(parse(SPEC))
    assert uri.startswith("postgresql://app@10.0.0.1:5432,10.0.0.2:6432/app?")
    assert "target_session_attrs=read-write" in uri and "10.0.0.3" not in uri
    assert "connect_timeout=3" in uri


def test_dsn_readonly_prefers_standbys_and_spreads() -> None:
    uri = dsn.uri(parse(SPEC), readonly=True)
    assert "target_session_attrs=prefer-standby" in uri and "load_balance_hosts=random" in uri


def test_versions_are_numbered_per_node_and_reused_for_the_same_config(tmp_path: Path) -> None:
    spec = parse(SPEC)
    n1, n2 = spec.member("n1"), spec.member("n2")
    assert deploy.version_for(tmp_path, n1, "caaa") == ("v1", True)
    assert not (tmp_path / "versions.json").exists()  # recorded only once the node confirmed the deploy
    deploy.remember_version(tmp_path, n1, "v1", "caaa")
    assert deploy.version_for(tmp_path, n1, "cbbb") == ("v2", True)
    deploy.remember_version(tmp_path, n1, "v2", "cbbb")
    assert deploy.version_for(tmp_path, n1, "caaa") == ("v1", False)
    assert deploy.version_for(tmp_path, n2, "cbbb") == ("v1", True)
    deploy.remember_version(tmp_path, n2, "v1", "cbbb")
    assert json.loads((tmp_path / "versions.json").read_text()) == {"n1": {"v1": "caaa", "v2": "cbbb"},
                                                                    "n2": {"v1": "cbbb"}}


@pytest.mark.parametrize(("given", "expected"), [
    ("2026-11-25 17:03:00+00", "2026-11-25T17:03:00+00:00"),
    ("2026-11-25T18:03:00+01:00", "2026-11-25T17:03:00+00:00"),
    ("2026-11-25 17:03:00", "2026-11-25T17:03:00+00:00"),
])
def test_restore_targets_become_utc(given: str, expected: str) -> None:
    assert restore._target(given, False) == expected


def test_a_restored_cluster_archives_to_a_folder_of_its_own() -> None:
    raw = {"cluster": "shop", "backup": {"s3": {"bucket": "b"}, "server": "shop-pg17", "jobs": 2}}
    assert restore.restored_raw(raw, "shop-restore") == {"cluster": "shop-restore",
                                                         "backup": {"s3": {"bucket": "b"}, "jobs": 2}}
    assert raw["backup"]["server"] == "shop-pg17"  # the source's spec is left as it was
    assert restore.restored_raw({"cluster": "shop"}, "x") == {"cluster": "x"}


def test_restore_needs_exactly_one_target() -> None:
    with pytest.raises(UsageError, match="exactly one"):
        restore._target(None, False)
    with pytest.raises(UsageError, match="exactly one"):
        restore._target("2026-11-25 17:03:00", True)
    with pytest.raises(UsageError, match="not a timestamp"):
        restore._target("yesterday", False)
    assert restore._target(None, True) == "latest"


@pytest.mark.parametrize(("error", "says"), [
    ("ssh: connect to host 10.0.0.9 port 22: No route to host", "unreachable"),
    ("Permission denied (publickey).", "authentication refused"),
    ("Host key verification failed.", "host key is unknown"),
    ("bash: line 1: docker: command not found", "docker is not installed"),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock", "engine is not running"),
])
def test_context_failures_are_named(error: str, says: str) -> None:
    assert says in contexts._classify(error)


def test_ssh_complaint_is_taken_out_of_the_docker_cli_sentence() -> None:
    """A recent docker CLI prints the version JSON on stdout and wraps ssh's words in one long stderr line."""
    stderr = ('error during connect: Get "http://docker.example.com/v1.50/version": command [ssh -o '
              'ConnectTimeout=30 -T -l nobody -- 192.168.213.2 docker system dial-stdio] has exited with exit '
              'status 255, make sure the URL is valid: stderr=nobody@192.168.213.2: Permission denied (publickey).\n')
    assert contexts._complaint(stderr, 1) == "nobody@192.168.213.2: Permission denied (publickey)."
    assert contexts._classify(contexts._complaint(stderr, 1)).startswith("ssh authentication refused")
    assert "exit status 1" in contexts._complaint("", 1)


def test_dsn_brackets_ipv6_addresses() -> None:
    uri = dsn.uri(parse(SPEC.replace("10.0.0.1", "'fd00::1'").replace("10.0.0.2", "db2.example.com")))
    assert uri.startswith("postgresql://app@[fd00::1]:5432,db2.example.com:6432/app?")
