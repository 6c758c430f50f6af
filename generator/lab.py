"""The local lab: the exact production spec as containers on one machine.

What changes from production is only where nodes live: each node gets a fixed
address on a private bridge network named after the cluster, instead of the host
network and its server's address (a compose override resets `network_mode`).
Config, images, agent, repmgr, TLS and passwords are the ones production uses.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from . import backup, cluster, credentials, docker, images, render, volumes
from .errors import DockerError, UsageError
from .spec import Spec, parse
from .template import environment

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]
LAB_S3_IMAGE = "pgdock/lab-s3:latest"
_POOL = ipaddress.ip_network("172.28.0.0/14")
"""Where lab subnets are taken from, one /24 per cluster, avoiding networks that already exist."""


@dataclass(frozen=True)
class Lab:
    """A lab cluster: the spec as given and its lab variant, rendered under `<spec dir>/.lab/<cluster>/`."""

    spec: Spec
    lab_spec: Spec
    root: Path
    subnet: str
    s3_container: str | None = None
    """The S3-protocol server this lab's backups use, when the lab provides one (`--s3`, endpoint `lab`)."""

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def network(self) -> str:
        return self.spec.cluster

    def container(self, node_name: str) -> str:
        return f"{self.spec.cluster}-{node_name}"

    def compose(self, node_name: str) -> DockerClient:
        from python_on_whales import DockerClient

        return DockerClient(compose_files=[self.repo / "nodes" / node_name / "compose.yaml",
                                           self.root / "compose" / f"{node_name}.yaml"],
                            compose_project_name=f"{self.spec.cluster}-{node_name}")


def _subnet(client: DockerClient, network: str, cluster_name: str) -> str:
    """The subnet of the cluster's existing lab network, else a free /24 picked from the cluster name."""
    if client.network.exists(network):
        configs = client.network.inspect(network).ipam.config
        if configs:
            return str(configs[0]["Subnet"] if isinstance(configs[0], dict) else configs[0].subnet)
    taken = []
    for net in client.network.list():
        for cfg in net.ipam.config or []:
            subnet = cfg["Subnet"] if isinstance(cfg, dict) else cfg.subnet
            if subnet:
                taken.append(ipaddress.ip_network(subnet, strict=False))
    candidates = list(_POOL.subnets(new_prefix=24))
    start = int(hashlib.sha256(cluster_name.encode()).hexdigest(), 16) % len(candidates)
    for offset in range(len(candidates)):
        candidate = candidates[(start + offset) % len(candidates)]
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise DockerError(f"no free /24 left in {_POOL} for the lab network; remove unused docker networks")


def _lab_addresses(spec: Spec, subnet: str) -> dict[str, str]:
    hosts = list(ipaddress.ip_network(subnet).hosts())
    addresses = {node.name: str(hosts[10 + i]) for i, node in enumerate(spec.nodes)}
    if spec.witness:
        addresses[spec.witness.name] = str(hosts[199])
    return addresses


@dataclass(frozen=True)
class RestoreFrom:
    """A lab whose initial primary restores another cluster's backup instead of running initdb."""

    server: str
    target: str
    """An ISO timestamp, or `latest`."""
    secrets: Path
    """The source's secrets: passwords and keys must match the restored database."""
    s3_container: str | None


_S3_PORT = 5000
_SEEDED_SECRETS = ("passwords", "tls/ca.crt", "tls/ca.key", "ssh/id_ed25519", "ssh/id_ed25519.pub", "s3.env",
                   "s3-ca.crt")


def _lab_s3(raw: dict, cluster_name: str, wanted: bool, address: str) -> bool:
    """Points the spec's backups at the lab's S3 server when asked (`--s3`) or when its endpoint is `lab`."""
    backup = raw.get("backup")
    if not wanted and not (backup and backup["s3"].get("endpoint") == "lab"):
        return False
    if not backup:
        raw["backup"] = backup = {"s3": {"bucket": f"{cluster_name}-lab", "prefix": cluster_name}}
    backup["s3"] |= {"endpoint": f"http://{address}:{_S3_PORT}", "path_style": True, "region": "us-east-1"}
    return True


def _seed(secrets: Path, source: Path) -> None:
    for rel in _SEEDED_SECRETS:
        origin = source / rel
        if origin.is_dir():
            shutil.copytree(origin, secrets / rel, dirs_exist_ok=True)
        elif origin.exists():
            (secrets / rel).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copy2(origin, secrets / rel)


def prepare(spec_path: Path, spec: Spec, client: DockerClient | None = None, *, s3: bool = False,
            restore: RestoreFrom | None = None) -> Lab:
    """Renders the lab variant of the spec (addresses swapped for lab ones) and its compose overrides."""
    client = client or docker.client()
    root = spec_path.parent / ".lab" / spec.cluster
    subnet = _subnet(client, spec.cluster, spec.cluster)
    addresses = _lab_addresses(spec, subnet)
    raw = copy.deepcopy(spec.raw)
    for entry in raw["nodes"] + ([raw["witness"]] if raw.get("witness") else []):
        entry["address"] = addresses[entry["name"]]
    s3_address = str(list(ipaddress.ip_network(subnet).hosts())[229])
    with_s3 = _lab_s3(raw, spec.cluster, s3 or bool(restore and restore.s3_container), s3_address)
    text = (f"# Lab variant of {spec_path.name}, written by `pgdock-gen lab up`: only the addresses differ.\n"
            + yaml.safe_dump(raw, sort_keys=False))
    lab_spec = parse(text, str(root / "repo" / "cluster.yaml"))
    if restore:
        # the restored database keeps the source's passwords: start from the source's secrets every time
        shutil.rmtree(root / "repo" / "secrets", ignore_errors=True)
        _seed(root / "repo" / "secrets", restore.secrets)
    render.write(lab_spec, render.plan(lab_spec, text), root / "repo", force=True)
    if with_s3 and not (root / "repo" / "secrets" / "s3.env").exists():
        (root / "repo" / "secrets" / "s3.env").write_text("AWS_ACCESS_KEY_ID=lab\nAWS_SECRET_ACCESS_KEY=lab-secret\n")
    template = environment().get_template("lab/compose.override.yaml.j2")
    for node in lab_spec.members:
        environment_vars = {}
        if restore and node.name == lab_spec.primary.name:
            environment_vars = {"PGDOCK_RESTORE_SERVER": restore.server, "PGDOCK_RESTORE_TARGET": restore.target}
        (root / "compose").mkdir(parents=True, exist_ok=True)
        (root / "compose" / f"{node.name}.yaml").write_text(template.render(
            network=spec.cluster, address=addresses[node.name], environment=environment_vars,
            backup=bool(lab_spec.backup) and not node.witness))
    s3_container = (restore.s3_container if restore else f"{spec.cluster}-s3") if with_s3 else None
    return Lab(spec, lab_spec, root, subnet, s3_container)


def lab_id(lab: Lab) -> str:
    """Identifies one lab's secrets; volumes left by another lab of the same name carry a different one."""
    return hashlib.sha256((lab.repo / "secrets" / "tls" / "ca.crt").read_bytes()).hexdigest()[:16]


def _volume_names(lab: Lab, node_name: str) -> dict[str, str]:
    return {kind: f"{lab.spec.cluster}-{node_name}-{kind}" for kind in ("config", "secrets", "data", "socket")}


def _drop_leftovers(lab: Lab, client: DockerClient, progress: Progress) -> None:
    """Removes containers and volumes of an earlier lab with this name whose secrets are not ours."""
    ours = lab_id(lab)
    for node in lab.lab_spec.members:
        names = _volume_names(lab, node.name)
        if not client.volume.exists(names["secrets"]):
            continue
        if client.volume.inspect(names["secrets"]).labels.get("org.pgdock.lab-id") == ours:
            continue
        progress(f"removing leftovers of an earlier lab for {node.name}")
        if client.container.exists(lab.container(node.name)):
            client.container.remove(lab.container(node.name), force=True, volumes=True)
        client.volume.remove([n for n in names.values() if client.volume.exists(n)])


def _ensure_network(lab: Lab, client: DockerClient) -> None:
    if not client.network.exists(lab.network):
        docker.call(f"creating network {lab.network}", client.network.create, lab.network, driver="bridge",
                    subnet=lab.subnet, labels={"org.pgdock.cluster": lab.spec.cluster})


def install_node(lab: Lab, client: DockerClient, node_name: str, carrier: str) -> None:
    node = lab.lab_spec.member(node_name)
    names = _volume_names(lab, node_name)
    labels = {"org.pgdock.cluster": lab.spec.cluster, "org.pgdock.lab-id": lab_id(lab)}
    volumes.ensure(client, names["config"], labels)
    volumes.ensure(client, names["secrets"], labels)
    volumes.install_config(client, carrier, names["config"])
    deliver_secrets(lab, client, node.name)


def deliver_secrets(lab: Lab, client: DockerClient, node_name: str) -> None:
    """(Re)fills a node's secrets volume from the lab repo's secrets/; hooks see new *.env files at once."""
    node = lab.lab_spec.member(node_name)
    bundle = credentials.node_bundle(lab.lab_spec, node, lab.repo / "secrets")
    volumes.install_secrets(client, images.names(lab.spec).base, _volume_names(lab, node_name)["secrets"], bundle)


def wait_healthy(lab: Lab, timeout: float, progress: Progress) -> list[cluster.NodeStatus]:
    return cluster.wait_healthy(lab.lab_spec, lab=True, timeout=timeout, progress=progress,
                                hint=f"see `docker logs {lab.container(lab.spec.primary.name)}` and the other nodes")


def _start_s3(lab: Lab, client: DockerClient, progress: Progress) -> None:
    """Runs (or joins) the lab's S3-protocol server and makes sure the spec's bucket exists."""
    assert lab.s3_container and lab.lab_spec.backup
    address = lab.lab_spec.backup.s3.endpoint.split("//")[1].split(":")[0]
    if not client.container.exists(lab.s3_container):
        progress(f"starting the lab's S3 server {lab.s3_container}")
        debian = images.debian_image("trixie", progress=progress)
        with docker.translated("building the lab S3 image"):
            client.build(lab.repo / "backup-image", tags=[LAB_S3_IMAGE], file=lab.repo / "backup-image" /
                         "lab-s3.Dockerfile", build_args={"DEBIAN_IMAGE": debian}, load=True, progress=False)
        docker.call("starting the lab S3 server", client.container.create, LAB_S3_IMAGE, name=lab.s3_container,
                    networks=[lab.network], restart="unless-stopped")
        client.network.disconnect(lab.network, lab.s3_container)
    attached = client.container.inspect(lab.s3_container).network_settings.networks
    if lab.network not in attached:
        client.network.connect(lab.network, lab.s3_container, ip=address)
    if not client.container.inspect(lab.s3_container).state.running:
        client.container.start(lab.s3_container)
    loc = backup.location(lab.lab_spec)
    s3 = backup.client(loc, backup.credentials(lab.repo / "secrets"))
    deadline = time.monotonic() + 60
    while True:
        try:
            existing = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
            if loc.bucket not in existing:
                s3.create_bucket(Bucket=loc.bucket)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise DockerError(f"the lab S3 server at {loc.endpoint} does not answer: {exc}") from None
            time.sleep(1)


def up(spec_path: Path, spec: Spec, *, timeout: float = 300, no_cache: bool = False, mirror: str | None = None,
       s3: bool = False, restore: RestoreFrom | None = None,
       progress: Progress = print) -> tuple[Lab, list[cluster.NodeStatus]]:
    client = docker.client()
    lab = prepare(spec_path, spec, client, s3=s3, restore=restore)
    progress(f"lab network {lab.network} ({lab.subnet}); rendered {lab.repo}")
    tags = images.build_all(lab.lab_spec, lab.repo, no_cache=no_cache, mirror=mirror, progress=progress)
    _drop_leftovers(lab, client, progress)
    _ensure_network(lab, client)
    if lab.s3_container:
        _start_s3(lab, client, progress)
    for node in lab.lab_spec.members:
        progress(f"starting {lab.container(node.name)}")
        install_node(lab, client, node.name, tags[node.name])
        docker.call(f"starting {node.name}", lab.compose(node.name).compose.up, detach=True, quiet=True)
    return lab, wait_healthy(lab, timeout, progress)


def down(spec_path: Path, spec: Spec, *, remove_volumes: bool, progress: Progress = print) -> None:
    client = docker.client()
    lab = prepare(spec_path, spec, client)
    for node in lab.lab_spec.members:
        progress(f"removing {lab.container(node.name)}")
        docker.call(f"stopping {node.name}", lab.compose(node.name).compose.down, volumes=remove_volumes,
                    remove_orphans=True, quiet=True)
        if client.container.exists(lab.container(node.name)):
            client.container.remove(lab.container(node.name), force=True)
        if remove_volumes:
            leftovers = [n for n in _volume_names(lab, node.name).values() if client.volume.exists(n)]
            if leftovers:
                client.volume.remove(leftovers)
    own_s3 = f"{spec.cluster}-s3"
    if client.container.exists(own_s3):
        client.container.remove(own_s3, force=True)
    if client.network.exists(lab.network):
        for container in client.network.inspect(lab.network).containers.values():
            client.network.disconnect(lab.network, container.name, force=True)  # e.g. another lab's S3
        docker.call(f"removing network {lab.network}", client.network.remove, lab.network)


def container_action(spec: Spec, node_name: str, action: str) -> None:
    """stop | start | kill | isolate | heal one lab node."""
    client = docker.client()
    node = spec.member(node_name)
    name = f"{spec.cluster}-{node.name}"
    if not client.container.exists(name):
        raise UsageError(f"no lab container {name}; start the lab with `pgdock-gen lab up`")
    if action in ("stop", "start", "kill"):
        docker.call(f"{action} {name}", getattr(client.container, action), name)
        return
    network = spec.cluster
    attached = network in client.container.inspect(name).network_settings.networks
    if action == "isolate" and attached:
        docker.call(f"isolating {name}", client.network.disconnect, network, name)
    elif action == "heal" and not attached:
        address = _lab_addresses(spec, _subnet(client, network, spec.cluster))[node.name]
        docker.call(f"reconnecting {name}", client.network.connect, network, name, ip=address)
