"""Deploying through Docker contexts: a whole `up`, and a config change from `deploy` to applied.

    python bench/deploy.py [--runs 3]

Three contexts (`bench-dp-*`) all reach this machine's engine; nodes use host networking with their own
loopback address and ports, as several nodes sharing one server would. Each run changes `work_mem`,
re-renders, and times `pgdock-gen deploy --all` until every data node shows the new value. Shipping
images to an engine that has none cannot be measured here (there is one engine); the time to stream
the base image out (`docker save`) is reported as its lower bound. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import REPO, metric, save

from generator import deploy, spec

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
    subprocess.run([sys.executable, "-m", "generator", *args, "-f", str(repo / "cluster.yaml")], check=True,
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
            started = time.perf_counter()
            out = subprocess.run(["docker", "save", "pgdock/base:pg17"], stdout=subprocess.PIPE, check=True).stdout
            save_seconds = time.perf_counter() - started
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
        metric("ship the base image: `docker save` stream, lower bound of save | load", save_seconds, "s",
               notes=f"{len(out) / 1e6:.0f} MB at {len(out) / 1e6 / save_seconds:.0f} MB/s; a load into another "
                     "engine adds its unpack time and the network; not measurable here (one engine)"),
    ], repo=str(REPO))


if __name__ == "__main__":
    main()
