"""A lab service: one container on the lab network at a fixed address, its image built from a folder.

The lab's HAProxy (lab_proxy) and Prometheus (lab_monitoring) are such services: what an app host or a
monitoring host runs in production, run in the lab beside the nodes. Each image packs its config (the lab
render's addresses are in it) and is built FROM the Debian image the nodes' base image comes from, so no
registry is needed. Each container runs unprivileged, without capabilities, with its log rotated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import contract, docker, images
from .spec import Spec

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]
Action = Literal["create", "replace", "start", "keep"]


@dataclass(frozen=True)
class Service:
    """One lab service of a cluster: its container, the image it runs, where it sits, what it is built from."""

    container: str
    image: str
    host_index: int
    """Its place among the lab /24's host addresses (0 is .1): each service has its own, apart from the nodes'."""
    context: Path
    """The build context: a folder with a Dockerfile that takes DEBIAN_IMAGE."""

    def address(self, subnet: str) -> str:
        return host_address(subnet, self.host_index)


def host_address(subnet: str, host_index: int) -> str:
    """The `host_index`-th host address of the lab network (0 is its first, .1 of a /24)."""
    return str(list(ipaddress.ip_network(subnet).hosts())[host_index])


@dataclass(frozen=True)
class Found:
    """What matters of an existing service container: the image it runs, where it sits, whether it runs."""

    image_id: str
    address: str | None
    """Its address on the lab network; None when it is not attached there."""
    running: bool


def plan(found: Found | None, image_id: str, wanted_address: str) -> Action:
    """What to do with a service container so it runs `image_id` at `wanted_address`.

    The config is packed in the image, so a container on another image (a lab re-rendered with other nodes
    or ports, or left by an earlier lab of the same name) runs the wrong config: replace it, as one at the
    wrong address. One that is right but stopped (after a reboot, `docker stop`) is started.
    """
    if found is None:
        return "create"
    if found.image_id != image_id or found.address != wanted_address:
        return "replace"
    return "keep" if found.running else "start"


def _found(client: DockerClient, name: str, network: str) -> Found | None:
    if not client.container.exists(name):
        return None
    info = client.container.inspect(name)
    attached = (info.network_settings.networks or {}).get(network)
    return Found(image_id=info.image, address=attached.ip_address if attached else None,
                 running=bool(info.state.running))


def start(service: Service, spec: Spec, network: str, subnet: str, *, mirror: str | None = None,
          progress: Progress = print) -> str:
    """Builds the service's image from its context and makes its container run it; returns its address."""
    client = docker.client()
    name, tag, at = service.container, service.image, service.address(subnet)
    debian = images.debian_image(images.DEBIAN_SUITES[spec.pg_version], mirror=mirror, progress=progress)
    progress(f"building {tag} from {debian}")
    images.build_image(service.context, tag, build_args={"DEBIAN_IMAGE": debian})
    action = plan(_found(client, name, network), client.image.inspect(tag).id, at)
    if action == "replace":
        docker.call(f"removing the old {name}", client.container.remove, name, force=True)
    if action in ("create", "replace"):
        progress(f"starting {name} at {at}")
        docker.call(f"creating {name}", client.container.create, tag, name=name, networks=[network], ip=at,
                    restart="unless-stopped", cap_drop=["ALL"], security_options=["no-new-privileges:true"],
                    labels={contract.LABEL_CLUSTER: spec.cluster}, log_driver=contract.LOG_DRIVER,
                    log_options=[f"{key}={value}" for key, value in contract.LOG_OPTIONS.items()])
    if action != "keep":
        docker.call(f"starting {name}", client.container.start, name)
    return at


def remove(client: DockerClient, name: str) -> None:
    """Removes a service's container, if any (its image stays, as the nodes' do)."""
    if client.container.exists(name):
        docker.call(f"removing {name}", client.container.remove, name, force=True)
