"""A second Docker engine reached over ssh: contexts, image streaming and a cluster across two engines.

The "server" is a container running sshd and dockerd (remote_host.py), on its own
network. Its engine starts empty, like a fresh server: `push` must stream every
image to it through `docker save | ssh | docker load`. r1 runs on this machine's
engine at the network's gateway address, so the cluster spans two engines. It runs PostgreSQL 15 until the
last test upgrades it to 17 through the contexts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_on_whales import DockerClient, docker

from pgdock_gen import cluster, contexts, deploy, images, spec

from . import remote_host
from .conftest import wait_until
from .servers import edit_parameter, pgdock, sql

SPEC = Path(__file__).parent / "specs" / "remote.yaml"
CONTEXTS = ("pgdock-test-r1", "pgdock-test-r2", "pgdock-test-bad", "pgdock-test-gone")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    loaded = spec.load(SPEC)
    folder = tmp_path_factory.mktemp("remote")
    drop_contexts()
    docker.context.create("pgdock-test-r1", docker={"host": "unix:///var/run/docker.sock"})
    deploy.down(loaded, [loaded.member("r1")], remove_volumes=True, progress=print)  # leftovers
    bin_folder = remote_host.start(folder)
    repo = folder / "repo"
    repo.mkdir()
    (repo / "cluster.yaml").write_text(SPEC.read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
        assert pgdock(repo, "render").returncode == 0
        images.build_all(loaded, repo, progress=print)
        yield repo
        deploy.down(loaded, list(loaded.members), remove_volumes=True, progress=print)
    drop_contexts()
    remote_host.remove()


def drop_contexts() -> None:
    for name in CONTEXTS:
        if name in {c.name for c in docker.context.list()}:
            docker.context.remove(name, force=True)


def test_contexts_creates_an_ssh_context_and_reaches_the_engine(repo: Path) -> None:
    result = pgdock(repo, "contexts")
    assert result.returncode == 0, result.stderr
    assert f"ssh://root@{remote_host.ADDRESS}" in result.stdout
    assert docker.context.inspect("pgdock-test-r2").endpoints["docker"].host == f"ssh://root@{remote_host.ADDRESS}"


def test_contexts_say_which_node_is_unreachable_or_refused(repo: Path) -> None:
    r2 = spec.load(repo / "cluster.yaml").member("r2")
    refused = contexts.check(dataclasses.replace(r2, context="pgdock-test-bad"), "nobody")
    assert refused.problem and refused.problem.startswith("ssh authentication refused"), refused
    gone = contexts.check(dataclasses.replace(r2, context="pgdock-test-gone", address="192.168.213.99"), "root")
    assert gone.problem and gone.problem.startswith("unreachable"), gone


def test_push_streams_images_to_the_other_engine_once(repo: Path) -> None:
    loaded = spec.load(repo / "cluster.yaml")
    remote = DockerClient(context="pgdock-test-r2")
    base = images.names(loaded, repo).base
    assert not remote.image.exists(base), "the test host's engine should start empty"
    first = pgdock(repo, "push")
    assert first.returncode == 0, first.stderr
    assert f"r2: sending {base}" in first.stderr and "r2: 2 image(s) sent, 0 already there" in first.stdout
    assert "r1: 0 image(s) sent" in first.stdout  # the local engine has them all
    assert remote.image.inspect(base).id == docker.image.inspect(base).id
    second = pgdock(repo, "push")
    assert second.returncode == 0 and "r2: 0 image(s) sent, 2 already there" in second.stdout


def test_up_replicates_across_the_two_engines(repo: Path) -> None:
    started = time.monotonic()
    result = pgdock(repo, "up")
    assert result.returncode == 0, result.stderr
    print(f"up across two engines: {time.monotonic() - started:.1f} s")
    loaded = spec.load(repo / "cluster.yaml")
    rows = {r.name: r for r in cluster.Running(loaded, False).status()}
    assert rows["r1"].role == "primary" and rows["r2"].role == "standby" and rows["r2"].upstream == "r1"
    sql(loaded, "r1", "CREATE TABLE IF NOT EXISTS crossed (v text); INSERT INTO crossed VALUES ('over ssh')")
    wait_until(lambda: sql(loaded, "r2", "SELECT v FROM crossed") == "over ssh", 30, "the row on r2")
    assert "v1" in pgdock(repo, "history", "r2").stdout


def test_a_config_change_reaches_the_remote_node_by_reload_and_rolls_back(repo: Path) -> None:
    loaded = spec.load(repo / "cluster.yaml")
    started = sql(loaded, "r2", "SELECT pg_postmaster_start_time()")
    edit_parameter(repo, "work_mem", "12MB")
    result = pgdock(repo, "deploy", "r2")
    assert result.returncode == 0, result.stderr
    assert sql(loaded, "r2", "SHOW work_mem") == "12MB"
    assert sql(loaded, "r2", "SELECT pg_postmaster_start_time()") == started
    assert "v2" in pgdock(repo, "history", "r2").stdout
    assert pgdock(repo, "deploy", "r2", "--version", "v1").returncode == 0
    assert sql(loaded, "r2", "SHOW work_mem") == "8MB"


def test_day2_pause_resume_and_restart_through_the_contexts(repo: Path) -> None:
    """Issue 12 on servers: pause and resume reach both engines, and `restart` recreates the remote standby's
    container on its own engine (a new container, a new postmaster), the cluster healthy afterwards."""
    loaded = spec.load(repo / "cluster.yaml")
    assert pgdock(repo, "pause").returncode == 0
    paused = json.loads(pgdock(repo, "status", "--json").stdout)
    assert paused["paused"] is True and all(n["paused"] for n in paused["nodes"]), paused
    assert pgdock(repo, "resume").returncode == 0
    resumed = json.loads(pgdock(repo, "status", "--json").stdout)
    assert resumed["paused"] is False and resumed["state"] == "healthy", resumed

    target = cluster.Running(loaded, False).target("r2")
    container = target.client.container.inspect(target.container).id
    started = sql(loaded, "r2", "SELECT pg_postmaster_start_time()")
    result = pgdock(repo, "restart", "r2", "--yes")
    assert result.returncode == 0, result.stderr
    assert target.client.container.inspect(target.container).id != container
    assert sql(loaded, "r2", "SELECT pg_postmaster_start_time()") != started
    rows = {r.name: r for r in cluster.Running(loaded, False).status()}
    assert rows["r1"].role == "primary" and rows["r2"].role == "standby" and rows["r2"].upstream == "r1", rows


def test_major_upgrade_through_the_contexts(repo: Path) -> None:
    """Issue 13 on servers: 15 → 17 with the new images sent through each node's context, the upgrade image on
    the primary's engine, and the standby on the other engine brought over by rsync --hard-links over its own
    sshd (no new clone); the rows written before are on both, the standby streams, --finish cleans up."""
    loaded = spec.load(repo / "cluster.yaml")
    sql(loaded, "r1", "INSERT INTO crossed VALUES ('before the upgrade')")
    spec_path = repo / "cluster.yaml"
    spec_path.write_text(spec_path.read_text().replace("version: 15", "version: 17"))
    assert pgdock(repo, "render", "--force").returncode == 0
    checked = pgdock(repo, "upgrade", "--check")
    assert checked.returncode == 0 and "compatible" in checked.stdout, checked.stderr[-3000:]
    result = pgdock(repo, "upgrade", "--yes")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "r2: rsync --hard-links from r1" in result.stderr, result.stderr[-3000:]
    upgraded = spec.load(repo / "cluster.yaml")
    for node in ("r1", "r2"):
        assert int(sql(upgraded, node, "SHOW server_version_num")) // 10000 == 17
    wait_until(lambda: sql(upgraded, "r2", "SELECT count(*) FROM crossed") == "2", 60, "both rows on r2")
    rows = {r.name: r for r in cluster.Running(upgraded, False).status()}
    assert rows["r1"].role == "primary" and rows["r2"].role == "standby" and rows["r2"].upstream == "r1", rows
    finished = pgdock(repo, "upgrade", "--finish")
    assert finished.returncode == 0 and "r2: deleted" in finished.stdout, finished.stdout
