"""A stand-in server with its own Docker engine, reached over ssh (tests/e2e/host), for tests and benchmarks.

It is a container running sshd and dockerd on its own network; its engine starts
empty, like a fresh server. The operator's ssh settings (key, pinned host key)
come from an `ssh` wrapper meant to go first on PATH, so this machine's own
~/.ssh is never touched.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from python_on_whales import docker

from pgdock_gen import images

NAME = "pgdock-test-host"
IMAGE = "pgdock/test-host:latest"
NETWORK, SUBNET, GATEWAY, ADDRESS = "pgdock-test-hosts", "192.168.213.0/24", "192.168.213.1", "192.168.213.2"
ENGINE_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
               "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
               "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
               "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
               "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND",
               "AUDIT_READ"]
"""What a nested dockerd needs. Not `--privileged`: this machine's engine lacks CAP_SYS_RESOURCE in its
bounding set, so a privileged container fails with "unable to apply caps"; every other capability, no
seccomp/AppArmor profile, unmasked /proc and /sys and the host's cgroup tree do the same job."""


def remove() -> None:
    """Removes the host, its engine's data and its network (also leftovers of an earlier run)."""
    if docker.container.exists(NAME):
        docker.container.remove(NAME, force=True, volumes=True)
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


def start(folder: Path, *, outbound: bool = False, progress=print) -> Path:
    """Starts a fresh host that trusts a new operator key kept in `folder`; returns the ssh wrapper's folder.
    `outbound` lets it reach the internet (NAT), for builds on the host; a cluster test wants it off."""
    remove()
    bin_folder = operator_ssh(folder)
    debian = images.debian_image("trixie", progress=progress)
    docker.buildx.build(Path(__file__).parent / "host", tags=[IMAGE], build_args={"DEBIAN_IMAGE": debian},
                        load=True)
    # without NAT: a host-network node reaching its own address on this bridge would be NATed to the
    # machine's main address and refused by pg_hba, which only a test network like this one can cause
    docker.network.create(NETWORK, subnet=SUBNET, gateway=GATEWAY,
                          options=[f"com.docker.network.bridge.enable_ip_masquerade={str(outbound).lower()}"])
    docker.run(IMAGE, detach=True, name=NAME, networks=[NETWORK], ip=ADDRESS, cap_add=ENGINE_CAPS,
               security_options=["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"],
               volumes=[("/sys/fs/cgroup", "/sys/fs/cgroup")],
               envs={"AUTHORIZED_KEY": (folder / "id_ed25519.pub").read_text().strip()})
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "exec", NAME, "docker", "info"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{NAME}'s Docker engine did not start: {docker.container.logs(NAME)[-2000:]}")
        time.sleep(0.5)
    host_key = docker.execute(NAME, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).split()
    (folder / "known_hosts").write_text(f"{ADDRESS} {host_key[0]} {host_key[1]}\n")
    return bin_folder
