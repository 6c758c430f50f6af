"""Deploying through Docker contexts: a whole `up`, and a config change from `deploy` to applied.

    python bench/deploy.py [--runs 3]

Three contexts (`bench-dp-*`) all reach this machine's engine; nodes use host networking with their own
loopback address and ports, as several nodes sharing one server would. Each run changes `work_mem`,
re-renders, and times `pgdock-gen deploy --all` until every data node shows the new value.
Shipping images to a node that has none is measured against a second, empty Docker engine reached
over ssh (the e2e tests' stand-in server): streaming them (`docker save | ssh | docker load`, what
`push` does) against building the base image on that engine through its context. Everything is
removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import REPO, metric, save, timed

from pgdock_gen import deploy, spec

CLUSTER = "bench-dp"
NODES = (("p1", "127.0.2.1", 5451, 2251), ("p2", "127.0.2.2", 5452, 2252))
WITNESS = ("pw", "127.0.2.3", 5453, 2253)


def spec_text(work_mem: int) -> str:
    def member(name: str, address: str, port: int, ssh_port: int) -> dict[str, object]:
        return {"name": name, "address": address, "port": port, "ssh_port": ssh_port, "context": f"{CLUSTER}-{name}"}

    return yaml.safe_dump({"cluster": CLUSTER, "postgres": {"version": 17, "parameters": {"work_mem": f"{work_mem}MB"}},
                           "nodes": [member(*n) for n in NODES], "witness": member(*WITNESS)}, sort_keys=False)


def pgdock(repo: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pgdock_gen", *args, "-f", str(repo / "cluster.yaml")], check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - started


def show_work_mem(node: str) -> str:
    port = next(n[2] for n in NODES if n[0] == node)
    return subprocess.run(["docker", "exec", "-u", "postgres", f"{CLUSTER}-{node}", "psql", "-XAt", "-h",
                           "/var/run/postgresql", "-p", str(port), "-c", "SHOW work_mem"],
                          capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    for _, address, _, _ in NODES + (WITNESS,):
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True)
    for name, *_ in NODES + (WITNESS,):
        subprocess.run(["docker", "context", "rm", "-f", f"{CLUSTER}-{name}"], capture_output=True)
        subprocess.run(["docker", "context", "create", f"{CLUSTER}-{name}", "--docker",
                        "host=unix:///var/run/docker.sock"], capture_output=True, check=True)
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-deploy-") as tmp:
        repo = Path(tmp)
        (repo / "cluster.yaml").write_text(spec_text(8))
        loaded = spec.load(repo / "cluster.yaml")
        try:
            pgdock(repo, "render")
            build = pgdock(repo, "build")
            up = pgdock(repo, "up")
            changes = []
            for run in range(runs):
                value = 16 + 8 * run
                (repo / "cluster.yaml").write_text(spec_text(value))
                pgdock(repo, "render", "--force")
                started = time.perf_counter()
                pgdock(repo, "deploy", "--all")
                while any(show_work_mem(n[0]) != f"{value}MB" for n in NODES):
                    time.sleep(0.1)
                changes.append(time.perf_counter() - started)
            shipping = ship_to_an_empty_engine(loaded, repo)
        finally:
            deploy.down(loaded, list(loaded.members), remove_volumes=True, progress=lambda m: None)
            for name, *_ in NODES + (WITNESS,):
                subprocess.run(["docker", "context", "rm", "-f", f"{CLUSTER}-{name}"], capture_output=True)
    save("deploy", [
        metric("`up`: new cluster (2 data nodes + witness) through 3 contexts → healthy", up, "s",
               notes=f"images already built (build step {build:.1f} s, cached); one engine, host networking"),
        metric("config change (work_mem): `deploy --all` → applied on every node, median",
               statistics.median(changes), "s",
               notes=f"max {max(changes):.1f} s over {runs} runs; carrier build, config + secrets volumes, reload, "
                     "history record, 3 nodes in turn; no restart"),
        *shipping,
    ], repo=str(REPO))


def ship_to_an_empty_engine(loaded: spec.Spec, repo: Path) -> list[dict]:
    """`push` to a fresh engine over ssh, against building the base image there through its context."""
    from python_on_whales import DockerClient, docker

    from pgdock_gen import images, ship
    from tests.e2e import remote_host

    context = f"{CLUSTER}-remote"
    names = images.names(loaded, repo)
    tags = [names.base, f"{names.config_repo(loaded.primary)}:{images.config_version(repo, loaded.primary)}"]
    size = docker.image.inspect(names.base).size  # the config image adds a few kB on top of it
    path = os.environ["PATH"]
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-host-") as tmp:
        try:
            os.environ["PATH"] = f"{remote_host.start(Path(tmp), outbound=True)}{os.pathsep}{path}"
            subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True)
            docker.context.create(context, docker={"host": f"ssh://root@{remote_host.ADDRESS}"})
            remote = DockerClient(context=context)
            stream = timed(lambda: ship.ship(remote, tags, node="remote", progress=lambda m: None))
            debian = images.debian_image("trixie")
            send_debian = timed(lambda: ship.ship(remote, [debian], node="remote", progress=lambda m: None))
            # host network: the build reaches the host's DNS (a nested bridge network cannot)
            build = timed(lambda: remote.buildx.build(REPO / "base-image", tags=["bench/base:remote"],
                                                      build_args={"DEBIAN_IMAGE": debian}, network="host",
                                                      load=True))
        finally:
            os.environ["PATH"] = path
            subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True)
            remote_host.remove()
    return [
        metric("ship base + config image to an empty engine over ssh (`push`: save | ssh | load)", stream, "s",
               notes=f"{size / 1e6:.0f} MB, {size / 1e6 / stream:.0f} MB/s; a second Docker engine in a "
                     "container on this machine, so the network is not the limit here"),
        metric("build the base image on that engine instead (through its context)", build, "s",
               notes=f"after sending it the Debian image ({send_debian:.1f} s); apt downloads on the node; "
                     "config images would still be built or shipped"),
    ]


if __name__ == "__main__":
    main()
