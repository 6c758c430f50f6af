"""The agent's file work (installing a config or secrets version into a live volume), on a temp dir."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    from pgdock_agent import files

    return files


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_install_config_makes_the_target_exactly_the_source(agent: ModuleType, tmp_path: Path) -> None:
    source, target = tmp_path / "v2", tmp_path / "live"
    (source / "shared").mkdir(parents=True)
    (source / "postgresql.conf").write_text("work_mem = 16MB\n")
    (source / "shared" / "hook.sh").write_text("#!/bin/sh\n")
    os.chmod(source / "shared" / "hook.sh", 0o750)
    (target / "old").mkdir(parents=True)
    (target / "postgresql.conf").write_text("work_mem = 8MB\n")
    (target / "old" / "gone.conf").write_text("x")
    agent.install_config(source, target)
    assert tree(target) == {"postgresql.conf": "work_mem = 16MB\n", "shared/hook.sh": "#!/bin/sh\n"}
    assert (target / "shared" / "hook.sh").stat().st_mode & 0o777 == 0o750
    assert not (target / "old").exists()


def test_install_config_swaps_files_whole_instead_of_rewriting_them(agent: ModuleType, tmp_path: Path) -> None:
    """A reader holding the old file keeps reading the old content: nobody sees it truncated mid-deploy."""
    source, target = tmp_path / "v2", tmp_path / "live"
    source.mkdir()
    target.mkdir()
    (source / "repmgr").write_text("new-password\n")
    (target / "repmgr").write_text("old-password\n")
    with open(target / "repmgr") as reader:
        agent.install_config(source, target)
        assert reader.read() == "old-password\n"
    assert (target / "repmgr").read_text() == "new-password\n"


def test_install_config_leaves_a_staging_area_in_the_target_alone(agent: ModuleType, tmp_path: Path) -> None:
    """Secrets are staged inside their own volume (`.pgdock-incoming-*`) and installed from there."""
    target = tmp_path / "live"
    staging = target / ".pgdock-incoming-1a2b"
    staging.mkdir(parents=True)
    (staging / "s3.env").write_text("AWS_REGION=eu-central-1\n")
    agent.install_config(staging, target)
    assert tree(target) == {"s3.env": "AWS_REGION=eu-central-1\n", ".pgdock-incoming-1a2b/s3.env":
                            "AWS_REGION=eu-central-1\n"}


def config_version(root: Path, work_mem: str) -> Path:
    (root / "shared").mkdir(parents=True)
    (root / "postgresql.conf").write_text(f"work_mem = {work_mem}\n")
    (root / "pg_hba.conf").write_text(f"# for {work_mem}\n")
    (root / "shared" / "hook.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "shared" / "hook.sh", 0o750)
    return root


def test_install_version_switches_the_whole_config_in_one_step(agent: ModuleType, tmp_path: Path) -> None:
    """Issue 10, row 8: `current` names one complete version; the old one stays for a rollback."""
    store = tmp_path / "store"
    v1 = agent.install_version(config_version(tmp_path / "v1", "8MB"), store)
    v2 = agent.install_version(config_version(tmp_path / "v2", "16MB"), store)
    current = store / "current"
    assert os.readlink(current) == f"versions/{v2}" and v1 != v2
    assert tree(current) == {"pg_hba.conf": "# for 16MB\n", "postgresql.conf": "work_mem = 16MB\n",
                             "shared/hook.sh": "#!/bin/sh\n"}
    assert (current / "shared" / "hook.sh").stat().st_mode & 0o777 == 0o750
    assert agent.install_version(tmp_path / "v1", store) == v1  # a rollback reuses the version it finds
    assert os.readlink(current) == f"versions/{v1}"


def test_a_carrier_killed_midway_leaves_the_old_version_whole(agent: ModuleType, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    v1 = agent.install_version(config_version(tmp_path / "v1", "8MB"), store)

    def copy_half_then_die(source: Path, staging: Path, symlinks: bool) -> None:
        staging.mkdir()
        (staging / "postgresql.conf").write_text("work_mem = 16MB\n")
        raise KeyboardInterrupt  # the deploy's connection dropped: the carrier is killed here

    monkeypatch.setattr(agent.shutil, "copytree", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        agent.install_version(config_version(tmp_path / "v2", "16MB"), store)
    assert os.readlink(store / "current") == f"versions/{v1}"
    assert tree(store / "current")["postgresql.conf"] == "work_mem = 8MB\n"
    monkeypatch.undo()
    v2 = agent.install_version(tmp_path / "v2", store)  # the next deploy finishes it and sweeps the half copy
    assert sorted(p.name for p in (store / "versions").iterdir()) == sorted([v1, v2])


def test_install_version_keeps_only_the_newest_versions(agent: ModuleType, tmp_path: Path) -> None:
    store = tmp_path / "store"
    names = [agent.install_version(config_version(tmp_path / f"v{i}", f"{i}MB"), store, keep=2) for i in range(5)]
    assert sorted(p.name for p in (store / "versions").iterdir()) == sorted(names[-3:])


@pytest.mark.parametrize(("node", "logins", "ssh_client"), [
    ("n1", ["postgres", "repmgr", "replicator"], True),
    ("w1", ["postgres", "repmgr"], False),
])
def test_install_secrets_installs_what_the_node_received(
        agent: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shop_spec_text: str,
        node: str, logins: list[str], ssh_client: bool) -> None:
    """A data node gets every password and an ssh client; the witness only what it uses (it is reached
    over ssh, never reaches out), and installing its smaller bundle must not fail on what is missing."""
    from pgdock_agent import contract
    from pgdock_agent import node as agent_node

    from pgdock_gen import credentials, spec

    from .conftest import render_spec

    render_spec(shop_spec_text, tmp_path / "repo")
    parsed = spec.parse(shop_spec_text)
    secrets, home = tmp_path / "secrets", tmp_path / "home"
    for rel, data in credentials.node_bundle(parsed, parsed.member(node), tmp_path / "repo" / "secrets").items():
        (secrets / rel).parent.mkdir(parents=True, exist_ok=True)
        (secrets / rel).write_bytes(data)
    monkeypatch.setattr(agent_node, "SECRETS", secrets)
    monkeypatch.setattr(agent, "SECRETS", secrets)
    monkeypatch.setattr(agent, "HOME", home)
    monkeypatch.setattr(agent, "TLS", home / "tls")
    monkeypatch.setattr(os, "getuid", lambda: 999)  # not root: no chown, no /etc/ssh on this machine
    monkeypatch.setenv(contract.ENV_DATA_NODES, "n1,n2")
    monkeypatch.setenv(contract.ENV_ADDRESS, parsed.member(node).address)
    monkeypatch.setenv(contract.ENV_PEERS, ",".join(f"{m.name}={m.address}:{m.port}:{m.ssh_port}"
                                                    for m in parsed.members if m.name != node))
    agent.install_secrets()
    assert [line.split(":")[3] for line in (home / ".pgpass").read_text().splitlines()] == logins
    assert sorted(p.name for p in (home / "tls").iterdir()) == ["ca.crt", "server.crt", "server.key"]
    ssh = home / ".ssh"
    options, key = (ssh / "authorized_keys").read_text().split(" ", 1)
    assert key == (secrets / contract.SECRET_SSH_PUB).read_text()
    peers = [m.address for m in parsed.members if m.name != node] + [parsed.member(node).address]
    assert options == f'restrict,from="{",".join(peers)},127.0.0.1,::1"'  # the key works from members only
    assert sorted(p.name for p in ssh.iterdir()) == (
        ["authorized_keys", "config", "id_ed25519", "known_hosts"] if ssh_client else ["authorized_keys"])
