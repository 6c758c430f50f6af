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
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from . import backup, cluster, contract, credentials, docker, images, lab_monitoring, lab_proxy, render, volumes
from .errors import DockerError, PgdockError, UsageError
from .spec import Spec, parse
from .template import environment

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]
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

    @property
    def running(self) -> cluster.Running:
        """The lab cluster as a running cluster (every node on the local engine)."""
        return cluster.Running(self.lab_spec, lab=True)

    @property
    def proxy_address(self) -> str | None:
        """Where the lab's HAProxy listens, when the spec has `proxy`."""
        return lab_proxy.address(self.subnet) if self.lab_spec.proxy else None

    @property
    def prometheus_address(self) -> str | None:
        """Where the lab's Prometheus listens when it runs (`lab up --monitoring`, for a spec with `monitoring`)."""
        return lab_monitoring.address(self.subnet) if self.lab_spec.monitoring else None

    def container(self, node_name: str) -> str:
        return contract.container(self.spec.cluster, node_name)

    def compose(self, node_name: str) -> DockerClient:
        return docker.compose(None, [self.repo / "nodes" / node_name / "compose.yaml",
                                     self.root / "compose" / f"{node_name}.yaml"], self.container(node_name))


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


_SEEDED_SECRETS = ("passwords", "tls/ca.crt", "tls/ca.key", "ssh/id_ed25519", "ssh/id_ed25519.pub", "s3.env",
                   "s3-ca.crt")


def _lab_s3(raw: dict, cluster_name: str, wanted: bool, address: str, ca_bundle: Path) -> bool:
    """Points the spec's backups at the lab's S3 server when asked (`--s3`) or when its endpoint is `lab`:
    HTTPS with a certificate from the lab's CA, which `ca_bundle` will hold (`_trust_lab_s3`)."""
    backup = raw.get("backup")
    if not wanted and not (backup and backup["s3"].get("endpoint") == "lab"):
        return False
    if not backup:
        raw["backup"] = backup = {"s3": {"bucket": f"{cluster_name}-lab", "prefix": cluster_name}}
    backup["s3"] |= {"endpoint": f"https://{address}:{contract.LAB_S3_PORT}", "path_style": True,
                     "region": "us-east-1", "ca_bundle": str(ca_bundle)}
    return True


def _trust_lab_s3(secrets: Path) -> None:
    """The lab's CA becomes the store's CA (`s3-ca.crt`): nodes and this machine verify the lab's S3 server
    with it, as they would a production store with a private CA."""
    target = secrets / contract.SECRET_S3_CA
    target.write_bytes((secrets / "tls" / "ca.crt").read_bytes())


def _seed(secrets: Path, source: Path) -> None:
    for rel in _SEEDED_SECRETS:
        origin = source / rel
        if origin.is_dir():
            shutil.copytree(origin, secrets / rel, dirs_exist_ok=True)
        elif origin.exists():
            (secrets / rel).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copy2(origin, secrets / rel)


def rendered_repo(folder: Path) -> bool:
    """Whether `folder`, a spec's folder, is a cluster repo `pgdock-gen render` wrote (a fork).

    render leaves no marker file, but it always writes `shared/` and a Dockerfile per node under
    `nodes/` next to cluster.yaml; a folder that merely holds a spec (examples/, a tests' tmp dir) has
    neither. Any node's Dockerfile counts, so a spec edited since its last render is still recognised.
    """
    return (folder / "shared").is_dir() and any(p.is_file() for p in (folder / "nodes").glob("*/Dockerfile"))


def overlay_shared(fork: Path, lab_repo: Path) -> list[str]:
    """Copies the fork's `shared/` over the lab repo's: the lab runs the fork's hooks and SQL.

    Only `shared/` is taken from the fork: it is the one part of a cluster repo that does not depend on
    node addresses (every file in it is copied verbatim by render), so the user's edits and additions
    there (`shared/failover/user-hook`, SQL under `shared/initdb/`, anything else) are exactly what the
    fork's config carriers would pack. Everything else stays the lab's own render: `nodes/` and
    `cluster.yaml` carry lab addresses (change those through the spec, not by editing rendered node
    files), `secrets/` are the lab's (never the fork's; restore seeds them as before), and the images
    are built from this pgdock's base-image/ and backup-image/.

    Files are copied with their modes (an executable hook stays executable) and symlinks as symlinks,
    as `docker build` would pack them; a fork's file wins over the rendered one of the same name.
    A rendered file the fork deleted stays in the lab (the agent may rely on it): to turn a hook off,
    edit it rather than delete it. `prepare` starts the lab's `shared/` from a fresh render each time,
    so a file dropped from the fork does not linger in the lab. Returns the files taken from the fork.
    """
    source, target = fork / "shared", lab_repo / "shared"
    taken = []
    for folder, dirs, files in os.walk(source):
        for name in sorted(dirs) + sorted(files):
            origin = Path(folder) / name
            dest = target / origin.relative_to(source)
            link = origin.is_symlink()
            if origin.is_dir() and not link:
                if dest.is_symlink() or dest.is_file():
                    dest.unlink()
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copystat(origin, dest)
                continue
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.is_symlink() or dest.exists():
                dest.unlink()
            if link:
                os.symlink(os.readlink(origin), dest)
            else:
                shutil.copy2(origin, dest)
            taken.append(dest.relative_to(lab_repo).as_posix())
    return sorted(taken)


def prepare(spec_path: Path, spec: Spec, client: DockerClient | None = None, *, s3: bool = False,
            restore: RestoreFrom | None = None) -> Lab:
    """Renders the lab variant of the spec (addresses swapped for lab ones) and its compose overrides.

    When the spec sits in a rendered cluster repo, the lab takes that repo's `shared/` over its own
    render (see `overlay_shared`), so user hooks and SQL reach the lab as they would reach production.
    """
    client = client or docker.client()
    root = spec_path.parent / ".lab" / spec.cluster
    subnet = _subnet(client, spec.cluster, spec.cluster)
    addresses = _lab_addresses(spec, subnet)
    raw = copy.deepcopy(spec.raw)
    for entry in raw["nodes"] + ([raw["witness"]] if raw.get("witness") else []):
        entry["address"] = addresses[entry["name"]]
    s3_address = str(list(ipaddress.ip_network(subnet).hosts())[229])
    with_s3 = _lab_s3(raw, spec.cluster, s3 or bool(restore and restore.s3_container), s3_address,
                      root / "repo" / "secrets" / contract.SECRET_S3_CA)
    text = (f"# Lab variant of {spec_path.name}, written by `pgdock-gen lab up`: only the addresses differ.\n"
            + yaml.safe_dump(raw, sort_keys=False))
    lab_spec = parse(text, str(root / "repo" / "cluster.yaml"))
    if restore:
        # the restored database keeps the source's passwords: start from the source's secrets every time
        shutil.rmtree(root / "repo" / "secrets", ignore_errors=True)
        _seed(root / "repo" / "secrets", restore.secrets)
    shutil.rmtree(root / "repo" / "shared", ignore_errors=True)  # fresh: no file of an earlier overlay lingers
    render.write(lab_spec, render.plan(lab_spec, text), root / "repo", force=True)
    if rendered_repo(spec_path.parent):
        overlay_shared(spec_path.parent, root / "repo")
    if with_s3 and not (root / "repo" / "secrets" / "s3.env").exists():
        (root / "repo" / "secrets" / "s3.env").write_text("AWS_ACCESS_KEY_ID=lab\nAWS_SECRET_ACCESS_KEY=lab-secret\n")
    if with_s3:
        _trust_lab_s3(root / "repo" / "secrets")
    template = environment().get_template("lab/compose.override.yaml.j2")
    for node in lab_spec.members:
        environment_vars = {}
        if restore and node.name == lab_spec.primary.name:
            environment_vars = {contract.ENV_RESTORE_SERVER: restore.server,
                                contract.ENV_RESTORE_TARGET: restore.target}
        (root / "compose").mkdir(parents=True, exist_ok=True)
        (root / "compose" / f"{node.name}.yaml").write_text(template.render(
            network=spec.cluster, address=addresses[node.name], environment=environment_vars,
            backup=bool(lab_spec.backup) and not node.witness))
    s3_container = (restore.s3_container if restore else contract.lab_s3_container(spec.cluster)) if with_s3 else None
    return Lab(spec, lab_spec, root, subnet, s3_container)


def lab_id(lab: Lab) -> str:
    """Identifies one lab's secrets; volumes left by another lab of the same name carry a different one."""
    return hashlib.sha256((lab.repo / "secrets" / "tls" / "ca.crt").read_bytes()).hexdigest()[:16]


def _volume_names(lab: Lab, node_name: str) -> dict[str, str]:
    return {kind: contract.volume(lab.spec.cluster, node_name, kind) for kind in contract.VOLUME_KINDS}


def _drop_leftovers(lab: Lab, client: DockerClient, progress: Progress) -> None:
    """Removes containers and volumes of an earlier lab with this name whose secrets are not ours."""
    ours = lab_id(lab)
    for node in lab.lab_spec.members:
        names = _volume_names(lab, node.name)
        if not client.volume.exists(names["secrets"]):
            continue
        if client.volume.inspect(names["secrets"]).labels.get(contract.LABEL_LAB_ID) == ours:
            continue
        progress(f"removing leftovers of an earlier lab for {node.name}")
        if client.container.exists(lab.container(node.name)):
            client.container.remove(lab.container(node.name), force=True, volumes=True)
        client.volume.remove([n for n in names.values() if client.volume.exists(n)])


def _ensure_network(lab: Lab, client: DockerClient) -> None:
    if not client.network.exists(lab.network):
        docker.call(f"creating network {lab.network}", client.network.create, lab.network, driver="bridge",
                    subnet=lab.subnet, labels={contract.LABEL_CLUSTER: lab.spec.cluster})


def install_node(lab: Lab, client: DockerClient, node_name: str, carrier: str) -> None:
    node = lab.lab_spec.member(node_name)
    names = _volume_names(lab, node_name)
    labels = {contract.LABEL_CLUSTER: lab.spec.cluster, contract.LABEL_LAB_ID: lab_id(lab)}
    volumes.ensure(client, names["config"], labels)
    volumes.ensure(client, names["secrets"], labels)
    volumes.install_config(client, carrier, names["config"])
    deliver_secrets(lab, client, node.name)


def deliver_secrets(lab: Lab, client: DockerClient, node_name: str) -> None:
    """(Re)fills a node's secrets volume from the lab repo's secrets/; hooks see new *.env files at once."""
    volumes.deliver_secrets(client, lab.lab_spec, lab.lab_spec.member(node_name), lab.repo / "secrets")


def wait_healthy(lab: Lab, timeout: float, progress: Progress) -> list[cluster.NodeStatus]:
    return cluster.Running(lab.lab_spec, True).wait_healthy(timeout=timeout, progress=progress,
                                hint=f"see `docker logs {lab.container(lab.spec.primary.name)}` and the other nodes")


def _start_s3(lab: Lab, client: DockerClient, progress: Progress) -> None:
    """Runs (or joins) the lab's S3-protocol server and makes sure the spec's bucket exists."""
    assert lab.s3_container and lab.lab_spec.backup
    address = lab.lab_spec.backup.s3.endpoint.split("//")[1].split(":")[0]
    if not client.container.exists(lab.s3_container):
        progress(f"starting the lab's S3 server {lab.s3_container}")
        debian = images.debian_image("trixie", progress=progress)
        with docker.translated("building the lab S3 image"):
            client.build(lab.repo / "backup-image", tags=[contract.LAB_S3_IMAGE], file=lab.repo / "backup-image" /
                         "lab-s3.Dockerfile", build_args={"DEBIAN_IMAGE": debian}, load=True, progress=False)
        docker.call("starting the lab S3 server", client.container.create, contract.LAB_S3_IMAGE,
                    [contract.LAB_S3_TLS_DIR, str(contract.LAB_S3_PORT)], name=lab.s3_container,
                    networks=[lab.network], restart="unless-stopped", log_driver=contract.LOG_DRIVER,
                    log_options=[f"{key}={value}" for key, value in contract.LOG_OPTIONS.items()])
        client.network.disconnect(lab.network, lab.s3_container)
    attached = client.container.inspect(lab.s3_container).network_settings.networks
    if lab.network not in attached:
        client.network.connect(lab.network, lab.s3_container, ip=address)
    _s3_certificate(lab, client, address)
    if not client.container.inspect(lab.s3_container).state.running:
        client.container.start(lab.s3_container)
    else:
        docker.call("reloading the lab S3 server's certificate", client.container.kill, lab.s3_container, "HUP")
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


def _s3_certificate(lab: Lab, client: DockerClient, address: str) -> None:
    """Copies a certificate for every address the lab's S3 server has (a restored lab adds one on its own
    network) into the server, signed by this lab's CA (a restored lab's is its source's)."""
    assert lab.s3_container
    networks = client.container.inspect(lab.s3_container).network_settings.networks.values()
    addresses = {address} | {n.ip_address for n in networks if n.ip_address} | {
        n.ipam_config.ipv4_address for n in networks if n.ipam_config and n.ipam_config.ipv4_address}
    key, certificate = credentials.server_certificate(lab.repo / "secrets" / "tls", lab.spec.cluster,
                                                      lab.s3_container, addresses)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server.key").write_bytes(key)
        (Path(tmp) / "server.crt").write_bytes(certificate)
        docker.call("giving the lab S3 server its certificate", client.copy, f"{tmp}/.",
                    (lab.s3_container, contract.LAB_S3_TLS_DIR))


def up(spec_path: Path, spec: Spec, *, timeout: float = 300, no_cache: bool = False, mirror: str | None = None,
       s3: bool = False, restore: RestoreFrom | None = None, monitoring: bool = False,
       progress: Progress = print) -> tuple[Lab, list[cluster.NodeStatus]]:
    """Renders the lab, builds its images and starts every node (with `monitoring`, Prometheus too: the spec
    must have `monitoring`); waits until the cluster is healthy."""
    if monitoring:
        lab_monitoring.require(spec, spec_path)
    client = docker.client()
    lab = prepare(spec_path, spec, client, s3=s3, restore=restore)
    progress(f"lab network {lab.network} ({lab.subnet}); rendered {lab.repo}")
    tags = images.build_all(lab.lab_spec, lab.repo, no_cache=no_cache, mirror=mirror, progress=progress)
    _drop_leftovers(lab, client, progress)
    _ensure_network(lab, client)
    if lab.s3_container:
        _start_s3(lab, client, progress)
    if lab.lab_spec.proxy:  # before the nodes: its checks find the primary while the cluster settles
        lab_proxy.start(lab.lab_spec, lab.repo, lab.network, lab.subnet, mirror=mirror, progress=progress)
    if monitoring:  # before the nodes too: it sees them come up
        lab_monitoring.start(lab.lab_spec, lab.repo, lab.root / "prometheus", lab.network, lab.subnet, mirror=mirror,
                             progress=progress)
    for node in lab.lab_spec.members:
        progress(f"starting {lab.container(node.name)}")
        install_node(lab, client, node.name, tags[node.name])
        docker.call(f"starting {node.name}", lab.compose(node.name).compose.up, detach=True, quiet=True)
    return lab, wait_healthy(lab, timeout, progress)


def remove_node(lab: Lab, node_name: str, *, remove_volumes: bool, progress: Progress = print) -> None:
    """Stops and removes one node's containers (and with `remove_volumes` its volumes)."""
    client = docker.client()
    progress(f"removing {lab.container(node_name)}")
    docker.call(f"stopping {node_name}", lab.compose(node_name).compose.down, volumes=remove_volumes,
                remove_orphans=True, quiet=True)
    if client.container.exists(lab.container(node_name)):
        client.container.remove(lab.container(node_name), force=True)
    if remove_volumes:
        leftovers = [n for n in _volume_names(lab, node_name).values() if client.volume.exists(n)]
        if leftovers:
            client.volume.remove(leftovers)


def recreate_node(lab: Lab, node_name: str) -> None:
    """A new container for one node on the image its tag names now (a rebuilt base image), data kept."""
    docker.call(f"recreating {node_name}", lab.compose(node_name).compose.up, detach=True, quiet=True,
                force_recreate=True)


def down(spec_path: Path, spec: Spec, *, remove_volumes: bool, progress: Progress = print) -> None:
    client = docker.client()
    lab = prepare(spec_path, spec, client)
    for node in lab.lab_spec.members:
        remove_node(lab, node.name, remove_volumes=remove_volumes, progress=progress)
    lab_proxy.remove(client, spec.cluster)
    lab_monitoring.remove(client, spec.cluster)
    own_s3 = contract.lab_s3_container(spec.cluster)
    if client.container.exists(own_s3):
        client.container.remove(own_s3, force=True)
    if client.network.exists(lab.network):
        for container in client.network.inspect(lab.network).containers.values():
            client.network.disconnect(lab.network, container.name, force=True)  # e.g. another lab's S3
        docker.call(f"removing network {lab.network}", client.network.remove, lab.network)


PARTITIONS = ("drop", "reject", "disconnect")
"""How `lab isolate` cuts a node off: packets vanish (drop), are refused (reject), or the network goes (disconnect)."""
PARTITION_CHAIN = "PGDOCK-PARTITION"
_HOOKS = (("INPUT", "-i"), ("OUTPUT", "-o"))
"""The chain sees every packet in and out of the node except loopback: its own processes still talk to each other."""


@dataclass(frozen=True)
class IptablesStep:
    """One iptables call in a node's network namespace.

    With a `guard`, it runs only when `iptables GUARD` succeeds (`if_guard`) or only when it fails (`not
    if_guard`): that makes isolating twice, healing twice and healing a node never isolated no-ops.
    """

    args: tuple[str, ...]
    guard: tuple[str, ...] = ()
    if_guard: bool = True


def _hook(builtin: str, flag: str) -> tuple[str, ...]:
    return (builtin, "!", flag, "lo", "-j", PARTITION_CHAIN)


def partition_plan(mode: str) -> list[IptablesStep]:
    """The iptables calls that put a node behind a `drop` or `reject` partition (a filter of its own chain).

    The chain is created unless it exists, flushed and filled for `mode`, and hooked first into INPUT and
    OUTPUT unless already hooked, so isolating again (even with the other mode) leaves one chain and one
    hook each. `reject` answers TCP with a reset and anything else with port-unreachable, so a peer's
    connect fails at once; the resets and port-unreachables the node itself sends back are let out, or
    the OUTPUT hook would swallow them and the peer would wait for its timeout as with `drop`.
    """
    if mode == "drop":
        rules = [("-j", "DROP")]
    elif mode == "reject":
        rules = [("-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "RETURN"),
                 ("-p", "icmp", "--icmp-type", "port-unreachable", "-j", "RETURN"),
                 ("-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"),
                 ("-j", "REJECT", "--reject-with", "icmp-port-unreachable")]
    else:
        raise UsageError(f"partition mode {mode!r} is not filtered by iptables; choose drop or reject")
    steps = [IptablesStep(("-N", PARTITION_CHAIN), guard=("-n", "-L", PARTITION_CHAIN), if_guard=False),
             IptablesStep(("-F", PARTITION_CHAIN))]
    steps += [IptablesStep(("-A", PARTITION_CHAIN, *rule)) for rule in rules]
    steps += [IptablesStep(("-I", builtin, "1", *_hook(builtin, flag)[1:]), guard=("-C", *_hook(builtin, flag)),
                           if_guard=False) for builtin, flag in _HOOKS]
    return steps


def heal_plan() -> list[IptablesStep]:
    """The iptables calls that remove exactly what `partition_plan` added, whatever of it is in place."""
    steps = [IptablesStep(("-D", *_hook(builtin, flag)), guard=("-C", *_hook(builtin, flag)))
             for builtin, flag in _HOOKS]
    return steps + [IptablesStep((action, PARTITION_CHAIN), guard=("-n", "-L", PARTITION_CHAIN))
                    for action in ("-F", "-X")]


def _tool(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name)
                                       if p.is_file()), None)


def _iptables_in(client: DockerClient, container: str) -> list[str]:
    """`nsenter -t PID -n iptables -w`: iptables in a running container's own network namespace.

    Raises when there is no such namespace to reach (not running, no tools, the engine is not on this
    machine, iptables does not work in there). The pid must belong to the namespace Docker made for this
    container (its sandbox) and not be ours, so a stale or foreign pid never gets this machine's traffic
    filtered.
    """
    tools = {name: _tool(name) for name in ("nsenter", "iptables")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise DockerError(f"{' and '.join(missing)} not found on this machine: run scripts/setup.sh (or "
                          "apt-get install iptables util-linux), or use --partition disconnect")
    info = docker.call(f"inspecting {container}", client.container.inspect, container)
    if not info.state.running or not info.state.pid:
        raise UsageError(f"{container} is not running; start it with `pgdock-gen lab start`, "
                         "or use --partition disconnect")
    pid, sandbox = info.state.pid, info.network_settings.sandbox_key
    try:
        namespace = os.stat(f"/proc/{pid}/ns/net").st_ino
        reachable = (namespace != os.stat("/proc/self/ns/net").st_ino and bool(sandbox)
                     and namespace == os.stat(str(sandbox)).st_ino)
    except OSError:
        reachable = False
    if not reachable:
        raise DockerError(f"cannot reach {container}'s network namespace from this machine (is the lab's "
                          "Docker engine remote or rootless?); use --partition disconnect")
    prefix = [str(tools["nsenter"]), "-t", str(pid), "-n", str(tools["iptables"]), "-w"]
    _iptables(prefix, container, ("-S", "INPUT"))  # iptables works in there: else every guard would mislead
    return prefix


def _iptables(prefix: list[str], container: str, args: tuple[str, ...], *, check: bool = True) -> bool:
    try:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DockerError(f"iptables in {container}'s network namespace failed: {exc}") from None
    if check and done.returncode != 0:
        reason = [line for line in (done.stderr or done.stdout).strip().splitlines() if not line.startswith("Try ")]
        raise DockerError(f"iptables {' '.join(args)} in {container}'s network namespace failed: "
                          f"{reason[0] if reason else f'exit status {done.returncode}'}")
    return done.returncode == 0


def apply_iptables(prefix: list[str], container: str, steps: list[IptablesStep]) -> None:
    """Runs a plan: each step whose guard allows it, failing on the first call that fails."""
    for step in steps:
        if not step.guard or _iptables(prefix, container, step.guard, check=False) == step.if_guard:
            _iptables(prefix, container, step.args)


def container_action(spec: Spec, node_name: str, action: str, partition: str = "drop") -> None:
    """stop | start | kill | isolate | heal one lab node.

    `isolate` cuts the node off as `partition` says; the latest isolate decides, so one mode replaces the
    other. `heal` undoes whichever is in place: the filter chain and/or the network disconnect. A filter
    lives in the container's network namespace, so a restart of the container ends it too.
    """
    if partition not in PARTITIONS:
        raise UsageError(f"unknown partition mode {partition!r}; choose one of {', '.join(PARTITIONS)}")
    client = docker.client()
    node = spec.member(node_name)
    name = f"{spec.cluster}-{node.name}"
    if not client.container.exists(name):
        raise UsageError(f"no lab container {name}; start the lab with `pgdock-gen lab up`")
    if action in ("stop", "start", "kill"):
        docker.call(f"{action} {name}", getattr(client.container, action), name)
        return
    if action not in ("isolate", "heal"):
        raise UsageError(f"unknown lab action {action!r}")
    network = spec.cluster
    attached = network in client.container.inspect(name).network_settings.networks
    if action == "isolate" and partition != "disconnect":
        # the filter goes in before a reconnect below, so the node is never open in between
        apply_iptables(_iptables_in(client, name), name, partition_plan(partition))
    if action == "isolate" and partition == "disconnect" and attached:
        docker.call(f"isolating {name}", client.network.disconnect, network, name)
    elif not attached and (action == "heal" or partition != "disconnect"):
        address = _lab_addresses(spec, _subnet(client, network, spec.cluster))[node.name]
        docker.call(f"reconnecting {name}", client.network.connect, network, name, ip=address)
    if action == "heal" or partition == "disconnect":
        try:
            prefix = _iptables_in(client, name)
        except PgdockError:
            return  # no namespace this machine can reach (stopped, no tools): nothing can have a filter there
        apply_iptables(prefix, name, heal_plan())
