"""The lab's HAProxy: the lab render's proxy/ folder, run as `<cluster>-proxy` on the lab network.

Production runs proxy/compose.yaml on an app host's own network (`network_mode: host`). In the lab the
nodes live on a private bridge, so HAProxy joins that bridge at a fixed address instead, like the nodes
and the lab's S3 server, and this machine reaches it there. Everything else is what an app host runs:
the image is built from proxy/'s Dockerfile and haproxy.cfg, which the lab's render wrote with the lab's
node addresses (lab_service builds and runs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import contract, lab_service
from .lab_service import Progress
from .spec import Spec

if TYPE_CHECKING:
    from python_on_whales import DockerClient

HOST_INDEX = 239
"""The proxy's place among the lab /24's host addresses (.240): after the nodes (from .11), the witness
(.200) and the S3 server (.230)."""


def address(subnet: str) -> str:
    """The lab proxy's fixed address on the lab network."""
    return lab_service.host_address(subnet, HOST_INDEX)


def service(spec: Spec, repo: Path) -> lab_service.Service:
    """The lab proxy: proxy/ of the lab's render `repo`."""
    return lab_service.Service(contract.proxy_container(spec.cluster), contract.lab_proxy_image(spec.cluster),
                               HOST_INDEX, repo / "proxy")


def start(spec: Spec, repo: Path, network: str, subnet: str, *, mirror: str | None = None,
          progress: Progress = print) -> str:
    """Builds the lab proxy's image from `repo`/proxy and makes its container run it; returns its address."""
    return lab_service.start(service(spec, repo), spec, network, subnet, mirror=mirror, progress=progress)


def remove(client: DockerClient, cluster: str) -> None:
    """Removes the lab proxy's container, if any (its image stays, as the nodes' do)."""
    lab_service.remove(client, contract.proxy_container(cluster))


def where(spec: Spec, at: str, spec_path: Path) -> str:
    """Where the lab proxy listens and how to get a URI through it, for the end of `lab up`."""
    assert spec.proxy
    return (f"proxy {contract.proxy_container(spec.cluster)} at {at}: port {spec.proxy.port} reaches the primary, "
            f"{spec.proxy.readonly_port} a standby; its URI: pgdock-gen dsn -f {spec_path} --lab --proxy")
