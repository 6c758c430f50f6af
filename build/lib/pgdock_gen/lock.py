"""One deploy at a time per node: a lock that lives on the node's own engine.

The lock is a stopped container with a fixed name (contract.lock_container): the engine creates a
named container only once, so two operators' deploys cannot both take it, from however many
machines. Its labels say who holds it since when; a deploy that died leaves it behind, and
`--force` breaks it. (Docker has no lock primitive; a container name is the one atomic claim every
engine offers, local or over ssh.)
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from . import contract, docker
from .errors import DockerError, UsageError

if TYPE_CHECKING:
    from python_on_whales import DockerClient


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _holder(client: DockerClient, name: str) -> str:
    """Who holds the lock and for how long, as a phrase."""
    labels = client.container.inspect(name).config.labels or {}
    since = labels.get(contract.LABEL_LOCK_SINCE, "")
    try:
        age = f", {int((datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds() // 60)} min ago"
    except ValueError:
        age = ""
    return f"{labels.get(contract.LABEL_LOCK_HOLDER, 'someone')} since {since or '?'}{age}"


def _take(client: DockerClient, name: str, image: str, labels: dict[str, str]) -> bool:
    """Creates the lock container; False when it exists already."""
    from python_on_whales.exceptions import DockerException

    try:
        client.container.create(image, ["true"], entrypoint="true", name=name, labels=labels)
    except DockerException as exc:
        if client.container.exists(name):
            return False
        raise DockerError(f"taking the deploy lock {name} failed: {(exc.stderr or '').strip()}") from None
    return True


@contextmanager
def held(client: DockerClient, cluster: str, node: str, image: str, *, force: bool,
         progress: Callable[[str], None]) -> Iterator[None]:
    """Holds `node`'s deploy lock for the block; refuses (exit 2, holder named) when another deploy has it."""
    name = contract.lock_container(cluster, node)
    labels = {contract.LABEL_CLUSTER: cluster, contract.LABEL_LOCK_HOLDER: operator(),
              contract.LABEL_LOCK_SINCE: datetime.now(UTC).isoformat(timespec="seconds")}
    if not _take(client, name, image, labels):
        holder = _holder(client, name)
        if not force:
            raise UsageError(f"{node}: another deploy holds its lock ({holder}); wait for it to finish, or pass "
                             "--force if that deploy died")
        progress(f"{node}: breaking the deploy lock held by {holder} (--force)")
        docker.call(f"breaking the deploy lock {name}", client.container.remove, name, force=True)
        if not _take(client, name, image, labels):
            raise UsageError(f"{node}: another deploy took its lock meanwhile ({_holder(client, name)})")
    try:
        yield
    finally:
        docker.call(f"releasing the deploy lock {name}", client.container.remove, name, force=True)
