"""The lab's Prometheus (issue 15, `lab up --monitoring`): where it sits, the lab's copy of monitoring/ (only the
intervals differ, and promtool accepts it), and the refusal of a spec without `monitoring`. What `lab up` does
with an existing container is lab_service.plan, tested with the proxy (test_lab_proxy.py)."""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import pytest
import yaml

from pgdock_gen import contract, lab, lab_monitoring, lab_proxy, spec
from pgdock_gen.errors import PgdockError

from .test_lab_proxy import SUBNET, prepared  # noqa: F401 - a fixture
from .test_proxy_monitoring import WITH_BOTH, tool


def test_prometheus_has_an_address_of_its_own(prepared: lab.Lab) -> None:  # noqa: F811
    # the nodes', the proxy's and the lab S3 server's (.230, with `lab up --s3`)
    taken = {n.address for n in prepared.lab_spec.members} | {lab_proxy.address(SUBNET), "172.28.7.230"}
    assert lab_monitoring.address(SUBNET) == "172.28.7.241" == prepared.prometheus_address
    assert lab_monitoring.address(SUBNET) not in taken
    assert lab_monitoring.address("10.5.0.0/24") == "10.5.0.241"


def test_no_monitoring_no_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lab, "_subnet", lambda client, network, name: SUBNET)
    path = tmp_path / "cluster.yaml"
    path.write_text(WITH_BOTH.replace("monitoring: {}\n", ""))
    assert lab.prepare(path, spec.load(path), client=object()).prometheus_address is None


def test_the_lab_copy_changes_only_the_intervals(prepared: lab.Lab, tmp_path: Path) -> None:  # noqa: F811
    rendered = prepared.repo / "monitoring"
    context = lab_monitoring.write_context(prepared.repo, tmp_path / "prometheus")
    production = (rendered / "prometheus.yml").read_text()
    lab_copy = (context / "prometheus.yml").read_text()
    changed = [line for line in difflib.ndiff(production.splitlines(), lab_copy.splitlines())
               if line[:1] in "+-"]
    assert sorted(changed) == ["+   evaluation_interval: 5s", "+   scrape_interval: 5s",
                               "-   evaluation_interval: 15s", "-   scrape_interval: 15s"], changed
    assert (context / "alerts.yml").read_text() == (rendered / "alerts.yml").read_text()
    loaded = yaml.safe_load(lab_copy)
    assert loaded["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    targets = [t for group in loaded["scrape_configs"][0]["static_configs"] for t in group["targets"]]
    assert targets == [f"{n.address}:{n.api_port}" for n in prepared.lab_spec.members]  # the lab's addresses
    checked = subprocess.run([tool("promtool"), "check", "config", "prometheus.yml"], cwd=context,
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # it loads alerts.yml beside it too
    dockerfile = (context / "Dockerfile").read_text()
    assert "FROM ${DEBIAN_IMAGE}" in dockerfile and "install -y --no-install-recommends prometheus" in dockerfile
    assert "\nUSER prometheus\n" in dockerfile


@pytest.mark.parametrize("text", [
    "global:\n  scrape_interval: 15s\n",  # evaluation_interval gone
    "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nx:\n  scrape_interval: 1m\n",  # a third
])
def test_a_template_the_lab_does_not_know_is_refused(text: str) -> None:
    with pytest.raises(PgdockError, match="interval lines"):
        lab_monitoring.lab_config(text)


def test_lab_up_monitoring_needs_monitoring_in_the_spec(run_cli, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdock_gen import docker

    def no_docker() -> None:
        raise AssertionError("refused before any Docker call")

    monkeypatch.setattr(docker, "client", no_docker)
    path = tmp_path / "cluster.yaml"
    path.write_text(WITH_BOTH.replace("monitoring: {}\n", ""))
    result = run_cli("lab", "up", "-f", path, "--monitoring")
    assert result.exit_code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--monitoring" in lines[0] and "monitoring: {}" in lines[0], lines
    assert str(path) in lines[0]


def test_lab_up_help_shows_monitoring(run_cli) -> None:
    result = run_cli("lab", "up", "--help")
    assert result.exit_code == 0
    assert "--monitoring" in result.stdout and "lab up -f examples/shop.yaml --monitoring" in result.stdout


def test_lab_up_says_where_to_open_prometheus(prepared: lab.Lab) -> None:  # noqa: F811
    line = lab_monitoring.where(prepared.lab_spec, "172.28.7.241")
    assert "http://172.28.7.241:9090" in line and contract.prometheus_container("c") in line


def test_names_come_from_the_contract(prepared: lab.Lab, tmp_path: Path) -> None:  # noqa: F811
    service = lab_monitoring.service(prepared.lab_spec, tmp_path)
    assert (service.container, service.image) == ("c-prometheus", "pgdock/lab-prometheus:c")
    assert service.address(SUBNET) == lab_monitoring.address(SUBNET)
    proxy = lab_proxy.service(prepared.lab_spec, prepared.repo)
    assert (proxy.container, proxy.image, proxy.context) == ("c-proxy", "pgdock/lab-proxy:c", prepared.repo / "proxy")
