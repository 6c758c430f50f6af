"""The lab's HAProxy: the lab render's proxy/ folder, run as `<cluster>-proxy` on the lab network.

Production runs proxy/compose.yaml on an app host's own network (`network_mode: host`). In the lab the
nodes live on a private bridge, so HAProxy joins that bridge at a fixed address instead, like the nodes
and the lab's S3 server, and this machine reaches it there. Everything else is what an app host runs:
the image is built from proxy/'s Dockerfile and haproxy.cfg, which the lab's render wrote with the lab's
node addresses, on the Debian image the nodes' base image comes from (no registry needed).
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
HOST_INDEX = 239
"""The proxy's place among the lab /24's host addresses (.240): after the nodes (from .11), the witness
(.200) and the S3 server (.230)."""

Action = Literal["create", "replace", "start", "keep"]


def address(subnet: str) -> str:
    """The lab proxy's fixed address on the lab network."""
    return str(list(ipaddress.ip_network(subnet).hosts())[HOST_INDEX])


@dataclass(frozen=True)
class Found:
    """What matters of an existing proxy container: the image it runs, where it sits, whether it runs."""

    image_id: str
    address: str | None
    """Its address on the lab network; None when it is not attached there."""
    running: bool


def plan(found: Found | None, image_id: str, wanted_address: str) -> Action:
    """What to do with the proxy container so it runs `image_id` at `wanted_address`.

    The haproxy.cfg is packed in the image, so a container on another image (a lab re-rendered with other
    nodes or ports, or left by an earlier lab of the same name) serves the wrong backends: replace it, as
    one at the wrong address. One that is right but stopped (after a reboot, `docker stop`) is started.
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


def start(spec: Spec, repo: Path, network: str, subnet: str, *, mirror: str | None = None,
          progress: Progress = print) -> str:
    """Builds the lab proxy's image from `repo`/proxy and makes its container run it; returns its address."""
    client = docker.client()
    name, tag, at = contract.proxy_container(spec.cluster), contract.lab_proxy_image(spec.cluster), address(subnet)
    debian = images.debian_image(images.DEBIAN_SUITES[spec.pg_version], mirror=mirror, progress=progress)
    progress(f"building {tag} from {debian}")
    images.build_image(repo / "proxy", tag, build_args={"DEBIAN_IMAGE": debian})
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


def remove(client: DockerClient, cluster: str) -> None:
    """Removes the lab proxy's container, if any (its image stays, as the nodes' do)."""
    name = contract.proxy_container(cluster)
    if client.container.exists(name):
        docker.call(f"removing {name}", client.container.remove, name, force=True)


def where(spec: Spec, at: str, spec_path: Path) -> str:
    """Where the lab proxy listens and how to get a URI through it, for the end of `lab up`."""
    assert spec.proxy
    return (f"proxy {contract.proxy_container(spec.cluster)} at {at}: port {spec.proxy.port} reaches the primary, "
            f"{spec.proxy.readonly_port} a standby; its URI: pgdock-gen dsn -f {spec_path} --lab --proxy")
