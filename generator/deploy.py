"""`pgdock-gen deploy | up | down | history`: real servers through Docker contexts.

pg-dock's idea, finished: a node's config travels in a tiny carrier image that
writes it into the node's config volume in place (running containers see it at
once), secrets go straight into their own volume, and every deployment is
recorded on the node, so any recorded version can be put back. Changes apply
with the least disruption: a reload when that is enough; a restart only when
asked (`--restart`), standbys first and the primary last, after a switchover.

Versions are numbered per node in the cluster repo's `versions.json` (commit it):
an operator whose repo does not know the version a node runs is refused, so two
operators cannot silently overwrite each other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import contract, docker, images, lock, ship, switchover, volumes
from .cluster import Running, Target, json_lines
from .errors import PgdockError, UsageError
from .spec import Node, Spec

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]
HISTORY = str(contract.HISTORY)
HISTORY_KEYS = ("version", "config", "spec", "time", "operator")
"""What every deployment record has: `history` shows them, `deploy` compares them."""


@dataclass(frozen=True)
class Plan:
    """What deploying one node will do; `--dry-run` prints it and stops."""

    node: Node
    context: str
    version: str
    config: str
    first: bool
    steps: list[str]


# ---------------------------------------------------------------- versions


def versions_path(repo: Path) -> Path:
    return repo / "versions.json"


def load_versions(repo: Path) -> dict[str, dict[str, str]]:
    path = versions_path(repo)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}); take it back from git") from None


def version_for(repo: Path, node: Node, config: str) -> tuple[str, bool]:
    """The vN naming this config of this node; the next number when the config is new (not yet recorded)."""
    mine = load_versions(repo).get(node.name, {})
    for version, digest in mine.items():
        if digest == config:
            return version, False
    return f"v{len(mine) + 1}", True


def remember_version(repo: Path, node: Node, version: str, config: str) -> None:
    """Records the version in versions.json, once the node confirmed it runs it (written beside, then renamed)."""
    known = load_versions(repo)
    known.setdefault(node.name, {})[version] = config
    fresh = versions_path(repo).with_name(".versions.json.new")
    fresh.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    fresh.replace(versions_path(repo))


def compose_hash(repo: Path, node: Node) -> str:
    """Changes here (compose.yaml, env) recreate the container: they need `--restart` on a running node."""
    folder = repo / "nodes" / node.name
    return hashlib.sha256((folder / "compose.yaml").read_bytes() + (folder / "env").read_bytes()).hexdigest()[:12]


def spec_hash(repo: Path) -> str:
    return hashlib.sha256((repo / "cluster.yaml").read_bytes()).hexdigest()[:12]


# ---------------------------------------------------------------- the node's own record


def _volume(spec: Spec, node: Node, kind: str) -> str:
    return contract.volume(spec.cluster, node.name, kind)


def history(spec: Spec, node: Node) -> list[dict[str, Any]]:
    """The deployments recorded on the node (read from its data volume, running or not)."""
    client = docker.client(node.context)
    volume = _volume(spec, node, "data")
    if not client.volume.exists(volume):
        return []
    text = docker.call(f"reading {node.name}'s history", client.run, images.helper_image(client, spec),
                       ["-c", f"cat {HISTORY} 2>/dev/null || true"], entrypoint="sh",
                       volumes=[(volume, str(contract.STATE))], remove=True)
    return json_lines(text or "", f"{node.name}: {HISTORY}", HISTORY_KEYS)


def _record(target: Target, entry: dict[str, Any]) -> None:
    line = json.dumps(entry)
    docker.call(f"recording the deployment on {target.node.name}", target.client.execute, target.container,
                ["sh", "-c", f"cat >> {HISTORY} <<'EOF'\n{line}\nEOF"])


# ---------------------------------------------------------------- applying


def _running(client: DockerClient, container: str) -> bool:
    return client.container.exists(container) and client.container.inspect(container).state.running


def _sql(target: Target, query: str) -> str:
    command = ["psql", "-XAtq", "-h", str(contract.SOCKET_DIR), "-p", str(target.node.port), "-U", "postgres",
               "-d", "postgres", "-c", query]
    return docker.call(f"asking {target.node.name}", target.client.execute, target.container, command,
                       user="postgres").strip()


def reload(target: Target) -> list[str]:
    """pg_reload_conf() and a repmgrd reload; returns the settings that still wait for a restart."""
    docker.call(f"reloading {target.node.name}", target.client.execute, target.container,
                ["pgdock-agent", "reload"])
    pending = _sql(target, "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name")
    return [name for name in pending.splitlines() if name]


def restart(spec: Spec, target: Target, progress: Progress) -> None:
    """A clean restart; a primary hands over to a standby first, so the cluster keeps a primary."""
    rows = {r.name: r for r in Running(spec, False).status()}
    if rows[target.node.name].role == "primary":
        candidates = [r for r in rows.values() if switchover.check(spec, r.name, list(rows.values())) is None]
        if candidates:
            best = max(candidates, key=lambda r: spec.member(r.name).priority)
            switchover.switchover(Running(spec), best.name, force=False, progress=progress)
    progress(f"{target.node.name}: restarting")
    docker.call(f"restarting {target.node.name}", target.client.container.restart, target.container, time=120)


# ---------------------------------------------------------------- deploy


def plan(spec: Spec, repo: Path, node: Node, *, version: str | None, force: bool) -> Plan:
    recorded = history(spec, node)
    known = load_versions(repo).get(node.name, {})
    if version:
        if version not in known:
            raise UsageError(f"{node.name} has no version {version}; known: {', '.join(known) or 'none'} "
                             f"(see `pgdock-gen history -f cluster.yaml {node.name}`)")
        config = known[version]
    else:
        config = images.config_version(repo, node)
        version = next((v for v, d in known.items() if d == config), "new")
    current = recorded[-1] if recorded else None
    if current and current["config"] not in known.values() and not force:
        raise UsageError(f"{node.name} runs config {current['version']} ({current['config']}), deployed by "
                         f"{current['operator']} at {current['time']}, which this repo does not know: pull their "
                         "changes first, or pass --force to overwrite it")
    steps = [f"send missing images to context {node.context}",
             f"install config {version} ({config}) into {_volume(spec, node, 'config')}",
             f"copy {node.name}'s secrets into {_volume(spec, node, 'secrets')}"]
    steps.append("start the compose project" if current is None else "reload; restart only with --restart if needed")
    return Plan(node, node.context, version, config, current is None, steps)


def deploy_node(spec: Spec, repo: Path, node: Node, *, version: str | None = None, force: bool = False,
                allow_restart: bool = False, registry: str | None = None, wait: bool = True,
                progress: Progress = print) -> list[str]:
    """Deploys one node; returns the settings left waiting for a restart (empty when all applied). With `wait`,
    returns once its PostgreSQL answers (a new standby may first clone for long: callers that watch the whole
    cluster anyway pass False)."""
    the_plan = plan(spec, repo, node, version=version, force=force)
    client = docker.client(node.context)
    target = Target(node, node.context, contract.container(spec.cluster, node.name))
    names = images.names(spec, repo)
    if version is None:
        carrier = images.build_config(spec, repo, node)
        the_version, _ = version_for(repo, node, the_plan.config)
    else:
        carrier, the_version = f"{names.config_repo(node)}:{the_plan.config}", version
    wanted = [names.base, carrier] + ([names.backup] if spec.backup and not node.witness else [])
    if version is not None and client.image.exists(carrier):
        wanted.remove(carrier)  # a rollback finds its carrier on the node; it may be long gone here
    elif version is not None and not docker.client().image.exists(carrier):
        raise UsageError(f"the carrier image {carrier} of {version} is neither here nor on {node.name}")
    ship.ship(client, wanted, node=node.name, registry=registry, progress=progress)
    with lock.held(client, spec.cluster, node.name, names.base, force=force, progress=progress):
        plan(spec, repo, node, version=version, force=force)  # again: another deploy may have finished meanwhile
        pending = _apply(spec, repo, node, target, carrier, the_version, allow_restart=allow_restart,
                         wait=wait, progress=progress)
        _record(target, {"version": the_version, "config": the_plan.config, "spec": spec_hash(repo),
                         "compose": compose_hash(repo, node), "time": datetime.now(UTC).isoformat(timespec="seconds"),
                         "operator": lock.operator(), "rollback": version is not None, "pending_restart": pending})
    remember_version(repo, node, the_version, the_plan.config)
    return pending


def _apply(spec: Spec, repo: Path, node: Node, target: Target, carrier: str, the_version: str, *,
           allow_restart: bool, wait: bool, progress: Progress) -> list[str]:
    """Config, secrets, then start, reload or restart (under the node's deploy lock); returns what waits for
    a restart."""
    client = target.client
    labels = {contract.LABEL_CLUSTER: spec.cluster}
    volumes.ensure(client, _volume(spec, node, "config"), labels)
    volumes.ensure(client, _volume(spec, node, "secrets"), labels)
    progress(f"{node.name}: installing config {the_version}")
    volumes.install_config(client, carrier, _volume(spec, node, "config"))
    volumes.deliver_secrets(client, spec, node, repo / "secrets")
    previous = history(spec, node)
    compose_changed = bool(previous) and previous[-1].get("compose") != compose_hash(repo, node)
    pending: list[str] = []
    if not _running(client, target.container):
        progress(f"{node.name}: starting its compose project")
        _compose_up(spec, repo, node)
    else:
        pending = reload(target)
        if compose_changed:
            pending.append("compose.yaml/env")
        if pending and allow_restart:
            if compose_changed:
                _compose_up(spec, repo, node)
            restart(spec, target, progress)
            pending = []
    if wait:
        _wait_running(target)
    return pending


def node_compose(spec: Spec, repo: Path, node: Node) -> DockerClient:
    """The node's compose project on its context, from the rendered repo."""
    return docker.compose(node.context, [repo / "nodes" / node.name / "compose.yaml"],
                          contract.container(spec.cluster, node.name))


def _compose_up(spec: Spec, repo: Path, node: Node, *, recreate: bool = False) -> None:
    client = node_compose(spec, repo, node)
    docker.call(f"starting {node.name}", client.compose.up, detach=True, quiet=True, force_recreate=recreate)


def recreate(spec: Spec, repo: Path, node: Node) -> None:
    """A new container for the node on the image its tag names on its engine now (after `push`), data kept."""
    _compose_up(spec, repo, node, recreate=True)


def _wait_running(target: Target, timeout: float = 600) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if target.client.execute(target.container, ["pgdock-agent", "health"]) is not None:
                return
        except Exception:  # starting: the container or PostgreSQL is not ready yet
            time.sleep(1)
    raise PgdockError(f"{target.node.name} did not become healthy within {timeout:.0f} s; "
                      f"see `docker --context {target.node.context} logs {target.container}`")


def order(spec: Spec, nodes: list[Node]) -> list[Node]:
    """Standbys and witness first, the primary last: a restart of the primary comes after everyone else."""
    rows = {r.name: r.role for r in Running(spec, False).status()}
    return sorted(nodes, key=lambda n: rows.get(n.name) == "primary")


def up(spec: Spec, repo: Path, *, registry: str | None, progress: Progress) -> None:
    """A new cluster across contexts: the first node (primary) first, then the others."""
    first, rest = spec.primary, [n for n in spec.members if n.name != spec.primary.name]
    deploy_node(spec, repo, first, registry=registry, progress=progress)
    for node in rest:
        deploy_node(spec, repo, node, registry=registry, progress=progress)
    Running(spec, False).wait_healthy(timeout=600, progress=progress)


def down(spec: Spec, nodes: list[Node], *, remove_volumes: bool, progress: Progress) -> None:

    for node in nodes:
        progress(f"{node.name}: removing its containers{' and data' if remove_volumes else ''}")
        client = docker.client(node.context)
        for container in client.container.list(all=True, filters=[
                ("label", f"com.docker.compose.project={contract.container(spec.cluster, node.name)}")]):
            container.remove(force=True)
        if client.container.exists(contract.lock_container(spec.cluster, node.name)):  # a dead deploy's lock
            client.container.remove(contract.lock_container(spec.cluster, node.name), force=True)
        if remove_volumes:
            gone = [v for kind in contract.VOLUME_KINDS
                    if client.volume.exists(v := _volume(spec, node, kind))]
            if gone:
                client.volume.remove(gone)
