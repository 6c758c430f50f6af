"""The standbys of a major upgrade brought over without a new clone: the `rsync --hard-links` method of
pg_upgrade's documentation, over the cluster's own sshd (the node's host key, the cluster key, `restrict`ed
to members' addresses).

`pgdock-gen upgrade` runs both ends as one-off containers of a node's new image while every node is stopped,
after `pg_upgrade --link` and before the new primary's first start: `sshd` on each standby (its old data
directory renamed to data.old beforehand), `upgrade-push ADDRESS...` on the primary, whose data.old and data
(the new major, hard-linked to data.old) go to each standby in one rsync. rsync sees that the two share their
files, finds the standby's own copies of them in its data.old (same sizes: a caught-up standby), and links
them into the standby's new data directory: only the new catalogs travel."""

from __future__ import annotations

import os
import socket
import time
from typing import NoReturn

from . import contract
from .files import install_secrets
from .node import log, sshd_command
from .peers import peers
from .postgres import as_postgres

SSHD_WAIT_SECONDS = 60


def serve_ssh() -> NoReturn:
    """The standby's end: the node's sshd alone (no PostgreSQL), in the foreground until stopped."""
    install_secrets()
    command = sshd_command()
    os.execv(command[0], command)


def push(addresses: list[str]) -> int:
    """The primary's end: data.old and data to each standby's data volume, one standby after another."""
    install_secrets()
    ports = {p.address: p.ssh_port for p in peers()}
    for address in addresses:
        if address not in ports:
            log(f"upgrade-push: {address} is not a member of this cluster")
            return 2
        _wait_for(address, ports[address])
        log(f"upgrade-push: rsync --hard-links to {address}")
        as_postgres(["rsync", "--archive", "--delete", "--hard-links", "--size-only", "--no-inc-recursive",
                     "-e", "ssh -o BatchMode=yes -o ConnectTimeout=10", str(contract.UPGRADE_OLD),
                     str(contract.PGDATA), f"postgres@{address}:{contract.STATE}/"])
    return 0


def _wait_for(address: str, port: int) -> None:
    """Until the standby's sshd accepts connections (its one-off container starts alongside this one)."""
    deadline = time.monotonic() + SSHD_WAIT_SECONDS
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
