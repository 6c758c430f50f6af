"""The lab's HAProxy (issue 15): where it sits, what `lab up` does with an existing service container
(lab_service, shared with the lab's Prometheus), and the URI `dsn --lab --proxy` prints for it.
`lab.prepare` runs for real but for its one Docker question (a free subnet)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from pgdock_gen import cli, lab, lab_proxy, lab_service, spec
from pgdock_gen.lab_service import Found

from .test_proxy_monitoring import WITH_BOTH

SUBNET = "172.28.7.0/24"


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> lab.Lab:
    monkeypatch.setattr(lab, "_subnet", lambda client, network, name: SUBNET)
    path = tmp_path / "cluster.yaml"
    path.write_text(WITH_BOTH)
    return lab.prepare(path, spec.load(path), client=object())


@pytest.mark.parametrize(("found", "action"), [
    (None, "create"),
    (Found("sha256:old", "172.28.7.240", True), "replace"),  # another config packed (re-rendered, earlier lab)
    (Found("sha256:new", "172.28.7.9", True), "replace"),
    (Found("sha256:new", None, False), "replace"),  # not on the lab network at all
    (Found("sha256:new", "172.28.7.240", False), "start"),
    (Found("sha256:new", "172.28.7.240", True), "keep"),
])
def test_plan(found: Found | None, action: str) -> None:
    assert lab_service.plan(found, "sha256:new", "172.28.7.240") == action


def test_the_proxy_has_an_address_of_its_own_and_checks_the_lab_nodes(prepared: lab.Lab) -> None:
    taken = {n.address for n in prepared.lab_spec.members} | {lab_proxy.address(SUBNET)}
    assert prepared.proxy_address == "172.28.7.240"
    assert len(taken) == len(prepared.lab_spec.members) + 1
    cfg = (prepared.repo / "proxy" / "haproxy.cfg").read_text()
    for node in prepared.lab_spec.nodes:
        assert f"server {node.name} {node.address}:{node.port} check port {node.api_port}" in cfg
    assert "10.0.0." not in cfg  # the spec's own addresses are not the lab's


def test_no_proxy_no_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lab, "_subnet", lambda client, network, name: SUBNET)
    path = tmp_path / "cluster.yaml"
    path.write_text(WITH_BOTH.replace("proxy: {}\n", ""))
    assert lab.prepare(path, spec.load(path), client=object()).proxy_address is None


def test_dsn_lab_proxy_dials_the_proxy_container_with_the_labs_ca(run_cli, prepared: lab.Lab,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_lab_of", lambda spec_path, loaded: prepared)
    spec_file = prepared.root.parent.parent / "cluster.yaml"  # the lab renders under <spec dir>/.lab/<cluster>
    result = run_cli("dsn", "-f", spec_file, "--lab", "--proxy")
    assert result.exit_code == 0, result.stderr
    url = urlsplit(result.stdout.strip())
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.hostname, url.port) == ("localhost", 5000)  # the name every node's certificate carries
    assert query["hostaddr"] == "172.28.7.240" and query["sslmode"] == "verify-full"
    assert query["sslrootcert"] == str(prepared.repo / "secrets" / "tls" / "ca.crt")
    readonly = urlsplit(run_cli("dsn", "-f", spec_file, "--lab", "--proxy", "--readonly").stdout.strip())
    assert readonly.port == 5001
    direct = run_cli("dsn", "-f", spec_file, "--lab").stdout.strip()
    assert all(f"{n.address}:5432" in direct for n in prepared.lab_spec.nodes), direct


def test_lab_up_says_where_the_proxy_listens(prepared: lab.Lab) -> None:
    line = lab_proxy.where(prepared.lab_spec, "172.28.7.240", Path("shop/cluster.yaml"))
    assert "172.28.7.240" in line and "5000" in line and "5001" in line
    assert "dsn -f shop/cluster.yaml --lab --proxy" in line
