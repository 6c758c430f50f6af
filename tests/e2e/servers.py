"""Helpers for the tests that deploy to "servers" through Docker contexts (test_deploy, test_remote)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pgdock_gen import cluster, spec


def pgdock(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """`pgdock-gen ARGS -f REPO/cluster.yaml` as a user runs it; its output is printed for the test log."""
    result = subprocess.run([sys.executable, "-m", "pgdock_gen", *args, "-f", str(repo / "cluster.yaml")],
                            capture_output=True, text=True)
    print(result.stdout, result.stderr)
    return result


def edit_parameter(repo: Path, name: str, value: str) -> None:
    """Sets a postgresql.conf parameter already in the spec's `postgres.parameters`, and re-renders."""
    path = repo / "cluster.yaml"
    lines = [f"    {name}: {value}" if line.strip().startswith(f"{name}:") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    assert pgdock(repo, "render", "--force").returncode == 0


def sql(loaded: spec.Spec, node: str, query: str) -> str:
    """One statement as the superuser on a deployed node, through its context."""
    target = cluster.Running(loaded, False).target(node)
    return target.client.execute(target.container, cluster.psql_command(loaded, target, None, "postgres")
                                 + ["-Atc", query], user="postgres").strip()
