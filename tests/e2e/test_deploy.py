"""Deploying through Docker contexts (issue 6): each node its own context and compose project.

The contexts all reach this machine's engine (there is no second engine here):
nodes use host networking with their own loopback address and ports, exactly as
several nodes sharing one server would. Config versions, reloads, restarts,
rollback and the secrecy of config images are exercised for real.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_on_whales import docker

from pgdock_gen import cluster, contract, deploy, images, lock, spec
from pgdock_gen.errors import UsageError

from .conftest import wait_until
from .servers import edit_parameter, pgdock, sql

SPEC = Path(__file__).parent / "specs" / "deploy.yaml"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    loaded = spec.load(SPEC)
    for node in loaded.members:
        subprocess.run(["ip", "addr", "add", f"{node.address}/32", "dev", "lo"], capture_output=True)
        if node.context in {c.name for c in docker.context.list()}:
            docker.context.remove(node.context, force=True)
        docker.context.create(node.context, docker={"host": "unix:///var/run/docker.sock"})
    deploy.down(loaded, list(loaded.members), remove_volumes=True, progress=print)  # leftovers
    folder = tmp_path_factory.mktemp("deploy") / "repo"
    folder.mkdir()
    (folder / "cluster.yaml").write_text(SPEC.read_text())
    assert pgdock(folder, "render").returncode == 0
    assert pgdock(folder, "contexts").returncode == 0
    images.build_all(loaded, folder, progress=print)
    yield folder
    deploy.down(loaded, list(loaded.members), remove_volumes=True, progress=print)
    for node in loaded.members:
        docker.context.remove(node.context, force=True)


def test_up_brings_the_cluster_up_through_contexts(repo: Path) -> None:
    result = pgdock(repo, "up")
    assert result.returncode == 0, result.stderr
    loaded = spec.load(repo / "cluster.yaml")
    rows = {r.name: r for r in cluster.Running(loaded, False).status()}
    assert rows["d1"].role == "primary" and rows["d2"].role == "standby" and rows["dw"].role == "witness"
    assert rows["d2"].upstream == "d1"
    assert "v1" in pgdock(repo, "history", "d1").stdout


def test_reloadable_change_applies_without_restart_and_rolls_back(repo: Path) -> None:
    loaded = spec.load(repo / "cluster.yaml")
    started = {n: sql(loaded, n, "SELECT pg_postmaster_start_time()") for n in ("d1", "d2")}
    edit_parameter(repo, "work_mem", "16MB")
    result = pgdock(repo, "deploy", "--all")
    assert result.returncode == 0 and "re-run with --restart" not in result.stdout
    for node in ("d1", "d2"):
        assert sql(loaded, node, "SHOW work_mem") == "16MB"
        assert sql(loaded, node, "SELECT pg_postmaster_start_time()") == started[node]
    assert "v2" in pgdock(repo, "history", "d1").stdout
    assert pgdock(repo, "deploy", "--all", "--version", "v1").returncode == 0
    for node in ("d1", "d2"):
        assert sql(loaded, node, "SHOW work_mem") == "8MB"
    assert "(rollback)" in pgdock(repo, "history", "d2").stdout


def test_restart_only_change_waits_for_restart_and_keeps_a_primary(repo: Path) -> None:
    loaded = spec.load(repo / "cluster.yaml")
    edit_parameter(repo, "shared_buffers", "160MB")
    result = pgdock(repo, "deploy", "--all")
    assert result.returncode == 0 and "shared_buffers take effect only after a restart" in result.stdout
    assert sql(loaded, "d1", "SHOW shared_buffers") == "128MB"
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(sum(r.role == "primary" for r in cluster.Running(loaded, False).status()))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = pgdock(repo, "deploy", "--all", "--restart")
    finally:
        stop.set()
        sampler.join()
    assert result.returncode == 0, result.stderr
    for node in ("d1", "d2"):
        assert sql(loaded, node, "SHOW shared_buffers") == "160MB"
    assert max(seen) == 1, "two primaries at once during the rolling restart"
    assert sum(r.role == "primary" for r in cluster.Running(loaded, False).status()) == 1


def test_config_images_carry_no_secret(repo: Path) -> None:
    """Every layer a carrier adds on top of the base image is opened and searched for secrets."""
    loaded = spec.load(repo / "cluster.yaml")
    secrets = [p.read_text().strip() for p in (repo / "secrets" / "passwords").iterdir()]
    base_layers = len(docker.image.inspect(images.names(loaded, repo).base).root_fs.layers)
    for node in loaded.members:
        tag = f"{images.names(loaded, repo).config_repo(node)}:{images.config_version(repo, node)}"
        with tarfile.open(fileobj=io.BytesIO(b"".join(docker.image.save(tag)))) as outer:
            own_layers = json.load(outer.extractfile("manifest.json"))[0]["Layers"][base_layers:]
            assert own_layers, f"{tag} adds no layer?"
            files = 0
            for layer in own_layers:
                with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                    for member in (m for m in inner.getmembers() if m.isfile()):
                        data = inner.extractfile(member).read()
                        files += 1
                        assert b"PRIVATE KEY" not in data, f"{tag}: a private key in {member.name}"
                        assert not any(secret.encode() in data for secret in secrets), f"{tag}: {member.name}"
            assert files >= 6, f"{tag}: expected the node's config files in its own layers"


def test_unknown_version_on_a_node_is_not_overwritten(repo: Path) -> None:
    loaded = spec.load(repo / "cluster.yaml")
    node = loaded.member("d2")
    target = cluster.Running(loaded, False).target("d2")
    deploy._record(target, {"version": "v9", "config": "cdeadbeef0000", "spec": "x", "compose": "x",
                            "time": "2026-01-01T00:00:00+00:00", "operator": "someone@elsewhere"})
    with pytest.raises(UsageError, match="someone@elsewhere"):
        deploy.plan(loaded, repo, node, version=None, force=False)
    refused = pgdock(repo, "deploy", "d2")
    assert refused.returncode == 2 and "pull their changes first" in refused.stderr
    assert pgdock(repo, "deploy", "d2", "--force").returncode == 0
    assert json.loads(json.dumps(deploy.history(loaded, node)[-1]))["config"] != "cdeadbeef0000"


def test_dry_run_changes_nothing(repo: Path) -> None:
    before = pgdock(repo, "history", "d1").stdout
    result = pgdock(repo, "deploy", "--context", "pgdock-test-d1", "--dry-run")
    assert result.returncode == 0 and "install config" in result.stdout
    assert pgdock(repo, "history", "d1").stdout == before


def deploy_in_background(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pgdock_gen", "deploy", *args, "-f", str(repo / "cluster.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lock_exists(loaded: spec.Spec, node: str) -> bool:
    return docker.container.exists(contract.lock_container(loaded.cluster, node))


def current_config(loaded: spec.Spec, node: str) -> dict[str, str]:
    """The node's config as its programs see it (through `current`), and which version folder that is."""
    container = contract.container(loaded.cluster, node)
    link = docker.execute(container, ["readlink", f"{contract.CONFIG_STORE}/{contract.CONFIG_CURRENT}"])
    conf = docker.execute(container, ["cat", f"{contract.CONFIG}/postgresql.conf"])
    files = docker.execute(container, ["ls", f"{contract.CONFIG}/"]).split()
    return {"link": link.strip(), "conf": conf, "files": " ".join(sorted(files))}


def test_a_second_deploy_waits_its_turn_and_a_dead_ones_lock_is_broken_with_force(repo: Path) -> None:
    """Issue 10, row 8: while one deploy works on d2 (a restart, several seconds), another is refused with the
    holder named; a deploy killed midway leaves d2 on one whole config version and a stale lock, which only
    --force breaks."""
    loaded = spec.load(repo / "cluster.yaml")
    edit_parameter(repo, "shared_buffers", "176MB")
    first = deploy_in_background(repo, "d2", "--restart")
    wait_until(lambda: lock_exists(loaded, "d2") or first.poll() is not None, 120, "the first deploy's lock")
    second = pgdock(repo, "deploy", "d2")
    assert second.returncode == 2 and "another deploy holds its lock" in second.stderr, second.stderr
    assert lock.operator() in second.stderr and "Traceback" not in second.stderr
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert not lock_exists(loaded, "d2")
    assert sql(loaded, "d2", "SHOW shared_buffers") == "176MB"

    before = current_config(loaded, "d2")
    edit_parameter(repo, "work_mem", "12MB")
    killed = deploy_in_background(repo, "d2")
    wait_until(lambda: lock_exists(loaded, "d2") or killed.poll() is not None, 120, "the deploy's lock")
    time.sleep(1.0)  # midway: config, secrets or the reload
    killed.kill()
    killed.wait()
    after = current_config(loaded, "d2")
    assert after["files"] == before["files"] and after["link"].startswith(f"{contract.CONFIG_VERSIONS}/")
    assert ("work_mem = '12MB'" in after["conf"]) or after == before  # the old version or the new, whole
    refused = pgdock(repo, "deploy", "d2")
    assert refused.returncode == 2 and "--force" in refused.stderr
    forced = pgdock(repo, "deploy", "d2", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "breaking the deploy lock" in forced.stdout + forced.stderr and not lock_exists(loaded, "d2")
    assert sql(loaded, "d2", "SHOW work_mem") == "12MB"
    assert json.loads((repo / "versions.json").read_text())["d2"]  # recorded after the node confirmed
