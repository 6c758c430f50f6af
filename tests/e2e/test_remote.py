"""A second Docker engine reached over ssh: contexts, image streaming and a cluster across two engines.

The "server" is a privileged container running sshd and dockerd (tests/e2e/host),
on its own network. Its engine starts empty, like a fresh server: `push` must
stream every image to it through `docker save | ssh | docker load`. The operator's
ssh settings (key, pinned host key) come from an `ssh` wrapper put first on PATH,
so this machine's own ~/.ssh is never touched.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_on_whales import DockerClient, docker

from generator import cluster, contexts, deploy, images, spec

from .conftest import wait_until

SPEC = Path(__file__).parent / "specs" / "remote.yaml"
HOST = "pgdock-test-host"
NETWORK, SUBNET, GATEWAY, ADDRESS = "pgdock-test-hosts", "192.168.213.0/24", "192.168.213.1", "192.168.213.2"

ENGINE_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
               "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK",
               "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN",
               "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
               "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND",
               "AUDIT_READ"]
"""What a nested dockerd needs. Not `--privileged`: this machine's engine lacks CAP_SYS_RESOURCE in its
bounding set, so a privileged container fails with "unable to apply caps"; every other capability, no
seccomp/AppArmor profile, unmasked /proc and /sys and the host's cgroup tree do the same job."""


def pgdock(repo: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "generator", *args, "-f", str(repo / "cluster.yaml")],
                            capture_output=True, text=True)
    print(result.stdout, result.stderr)
    return result


def remove_host() -> None:
    if docker.container.exists(HOST):
        docker.container.remove(HOST, force=True, volumes=True)
    if docker.network.exists(NETWORK):
        docker.network.remove(NETWORK)


def operator_ssh(folder: Path) -> Path:
    """An ssh key for the operator and a wrapper that uses it with a pinned host key; returns the bin folder."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id_ed25519")], check=True)
    (folder / "ssh_config").write_text(
        f"Host *\n  IdentityFile {folder / 'id_ed25519'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {folder / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  ConnectTimeout 4\n")
    wrapper = folder / "bin" / "ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {folder / 'ssh_config'} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper.parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    loaded = spec.load(SPEC)
    folder = tmp_path_factory.mktemp("remote")
    remove_host()
    for name in ("pgdock-test-r1", "pgdock-test-r2", "pgdock-test-bad", "pgdock-test-gone"):
        if name in {c.name for c in docker.context.list()}:
            docker.context.remove(name, force=True)
    docker.context.create("pgdock-test-r1", docker={"host": "unix:///var/run/docker.sock"})
    deploy.down(loaded, [loaded.member("r1")], remove_volumes=True, progress=print)  # leftovers
    bin_folder = operator_ssh(folder)
    debian = images.debian_image("trixie", progress=print)
    docker.buildx.build(Path(__file__).parent / "host", tags=["pgdock/test-host:latest"],
                        build_args={"DEBIAN_IMAGE": debian}, load=True)
    # no masquerading: r1 (host network) reaching its own address on this bridge would be NATed to the
    # machine's main address and refused by pg_hba, which only a test network like this one can cause
    docker.network.create(NETWORK, subnet=SUBNET, gateway=GATEWAY,
                          options=["com.docker.network.bridge.enable_ip_masquerade=false"])
    docker.run("pgdock/test-host:latest", detach=True, name=HOST, networks=[NETWORK], ip=ADDRESS,
               cap_add=ENGINE_CAPS, security_options=["seccomp=unconfined", "apparmor=unconfined",
                                                      "systempaths=unconfined"],
               volumes=[("/sys/fs/cgroup", "/sys/fs/cgroup")],
               envs={"AUTHORIZED_KEY": (folder / "id_ed25519.pub").read_text().strip()})
    wait_until(lambda: docker.execute(HOST, ["docker", "info", "--format", "{{.ServerVersion}}"]), 60,
               "the test host's Docker engine")
    host_key = docker.execute(HOST, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).split()
    (folder / "known_hosts").write_text(f"{ADDRESS} {host_key[0]} {host_key[1]}\n")
    repo = folder / "repo"
    repo.mkdir()
    (repo / "cluster.yaml").write_text(SPEC.read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
        assert pgdock(repo, "render").returncode == 0
        images.build_all(loaded, repo, progress=print)
        yield repo
        deploy.down(loaded, list(loaded.members), remove_volumes=True, progress=print)
    for name in ("pgdock-test-r1", "pgdock-test-r2", "pgdock-test-bad", "pgdock-test-gone"):
        if name in {c.name for c in docker.context.list()}:
            docker.context.remove(name, force=True)
    remove_host()


def test_contexts_creates_an_ssh_context_and_reaches_the_engine(repo: Path) -> None:
    result = pgdock(repo, "contexts")
    assert result.returncode == 0, result.stderr
    assert f"ssh://root@{ADDRESS}" in result.stdout
    assert docker.context.inspect("pgdock-test-r2").endpoints["docker"].host == f"ssh://root@{ADDRESS}"


def test_contexts_say_which_node_is_unreachable_or_refused(repo: Path) -> None:
    r2 = spec.load(repo / "cluster.yaml").member("r2")
    refused = contexts.check(dataclasses.replace(r2, context="pgdock-test-bad"), "nobody")
    assert refused.problem and refused.problem.startswith("ssh authentication refused"), refused
    gone = contexts.check(dataclasses.replace(r2, context="pgdock-test-gone", address="192.168.213.99"), "root")
    assert gone.problem and gone.problem.startswith("unreachable"), gone


def test_push_streams_images_to_the_other_engine_once(repo: Path) -> None:
    loaded = spec.load(repo / "cluster.yaml")
    remote = DockerClient(context="pgdock-test-r2")
    base = images.names(loaded).base
    assert not remote.image.exists(base), "the test host's engine should start empty"
    first = pgdock(repo, "push")
    assert first.returncode == 0, first.stderr
    assert f"r2: sending {base}" in first.stderr and "r2: 2 image(s) sent, 0 already there" in first.stdout
    assert "r1: 0 image(s) sent" in first.stdout  # the local engine has them all
    assert remote.image.inspect(base).id == docker.image.inspect(base).id
    second = pgdock(repo, "push")
    assert second.returncode == 0 and "r2: 0 image(s) sent, 2 already there" in second.stdout


def test_up_replicates_across_the_two_engines(repo: Path) -> None:
    started = time.monotonic()
    result = pgdock(repo, "up")
    assert result.returncode == 0, result.stderr
    print(f"up across two engines: {time.monotonic() - started:.1f} s")
    loaded = spec.load(repo / "cluster.yaml")
    rows = {r.name: r for r in cluster.status(loaded, lab=False)}
    assert rows["r1"].role == "primary" and rows["r2"].role == "standby" and rows["r2"].upstream == "r1"
    targets = {t.node.name: t for t in cluster.targets(loaded, lab=False)}

    def sql(node: str, query: str) -> str:
        target = targets[node]
        return target.client.execute(target.container, cluster.psql_command(loaded, target, None, "postgres")
                                     + ["-Atc", query], user="postgres").strip()

    sql("r1", "CREATE TABLE IF NOT EXISTS crossed (v text); INSERT INTO crossed VALUES ('over ssh')")
    wait_until(lambda: sql("r2", "SELECT v FROM crossed") == "over ssh", 30, "the row on r2")
    assert "v1" in pgdock(repo, "history", "r2").stdout
