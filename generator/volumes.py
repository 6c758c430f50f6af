"""Fills a node's config and secrets volumes on whichever engine runs it.

Compose files through a remote context cannot bind-mount from the operator's
disk, so config arrives in a carrier image that writes it into a named volume,
and secrets are copied straight into their own volume: neither is ever baked
into an image.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import contract, credentials, docker, images

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from .spec import Node, Spec


def ensure(client: DockerClient, name: str, labels: dict[str, str]) -> None:
    if not client.volume.exists(name):
        docker.call(f"creating volume {name}", client.volume.create, name, labels=labels)


def install_config(client: DockerClient, carrier: str, volume: str) -> None:
    """Runs the node's config carrier, which adds its files to `volume` as a version and switches to it."""
    docker.call(f"installing config {carrier} into {volume}", client.run, carrier,
                volumes=[(volume, str(contract.CONFIG_STORE))], remove=True)


def install_secrets(client: DockerClient, image: str, volume: str, bundle: dict[str, bytes]) -> None:
    """Makes `volume` hold exactly `bundle` (files mode 0600, owned by the image's postgres user so repmgr's
    hooks can read them). The files are staged in the volume first and then swapped in one by one, so a
    running node never finds a secret missing (its agent reads passwords while supervising)."""
    mount = str(contract.SECRETS)
    staging = f"{mount}/.pgdock-incoming-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="pgdock-secrets-") as tmp:
        for rel, data in bundle.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_bytes(data)
            os.chmod(path, 0o600)
        with docker.translated(f"copying secrets into {volume}"):
            holder = client.container.create(image, ["true"], entrypoint="true", volumes=[(volume, mount)])
            try:
                client.copy(f"{tmp}/.", (holder, staging))
            finally:
                holder.remove(force=True)
    swap = f"chown -R 999:999 {staging} && pgdock-agent install-config {staging} {mount} && rm -rf {staging}"
    docker.call(f"installing secrets into {volume}", client.run, image, ["-c", swap], entrypoint="sh",
                volumes=[(volume, mount)], remove=True)


def deliver_secrets(client: DockerClient, spec: Spec, node: Node, secrets_dir: Path) -> None:
    """The node's share of `secrets_dir` (credentials.node_bundle) into its secrets volume; `secrets_dir` is a
    cluster repo's secrets/, so the helper container runs that repo's base image where the engine has it."""
    install_secrets(client, images.helper_image(client, spec, secrets_dir.parent),
                    contract.volume(spec.cluster, node.name, "secrets"),
                    credentials.node_bundle(spec, node, secrets_dir))
