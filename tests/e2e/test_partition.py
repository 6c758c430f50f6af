"""Real partitions in the lab (issue 9): `lab isolate --partition drop|reject` on the real engine.

A standby is cut off (so the shared cluster stays healthy for the other tests) and probed by TCP
from the primary's container and back: with `drop` a connect hangs until its own timeout, as when
a network fails; with `reject` it is refused at once. Loopback inside the node keeps working, and
`lab heal` removes exactly the filter: the node answers again and the cluster is whole.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from python_on_whales import docker

from pgdock_gen import lab

from .conftest import LabCluster, wait_until

PROBE = """
import socket, sys, time
started = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    result = "open"
except TimeoutError:
    result = "timeout"
except ConnectionRefusedError:
    result = "refused"
except OSError as exc:
    result = type(exc).__name__
print(result, round(time.monotonic() - started, 3))
"""
CONNECT_TIMEOUT = 3.0


def probe(cluster: LabCluster, source: str, target: str, address: str | None = None) -> tuple[str, float]:
    """A TCP connect from inside `source`'s container to `target`'s PostgreSQL port: (outcome, seconds)."""
    node = cluster.lab.lab_spec.member(target)
    out = docker.execute(cluster.lab.container(source), ["python3", "-c", PROBE, address or node.address,
                                                          str(node.port), str(CONNECT_TIMEOUT)])
    outcome, seconds = out.split()
    return outcome, float(seconds)


def pgdock(cluster: LabCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgdock_gen", *args[:2], "-f", str(cluster.spec_path), *args[2:]],
                          capture_output=True, text=True, check=False)


def filter_rules(cluster: LabCluster, node: str) -> str:
    """The node's own iptables rules, read from the host as `lab` writes them."""
    pid = docker.container.inspect(cluster.lab.container(node)).state.pid
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", "-w", "-S"], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture()
def standby_and_primary(lab3: LabCluster) -> Iterator[tuple[str, str]]:
    """The lowest-priority standby and the primary; the standby is healed and the cluster whole afterwards."""
    lab3.wait_healthy()
    primary = lab3.primary()
    standby = min((n for n in lab3.spec.nodes if n.name != primary), key=lambda n: n.priority).name
    assert probe(lab3, primary, standby)[0] == "open"
    try:
        yield standby, primary
    finally:
        lab.container_action(lab3.spec, standby, "heal")
        lab3.wait_healthy()
    assert lab3.primary() == primary
    assert lab.PARTITION_CHAIN not in filter_rules(lab3, standby)


def test_drop_partition_makes_connects_hang_until_healed(lab3: LabCluster, standby_and_primary) -> None:
    standby, primary = standby_and_primary
    isolated = pgdock(lab3, "lab", "isolate", "--partition", "drop", standby)
    assert isolated.returncode == 0, isolated.stderr
    assert isolated.stdout.strip() == f"isolate (drop): {standby}"
    again = pgdock(lab3, "lab", "isolate", standby)  # drop is the default; isolating twice changes nothing
    assert again.returncode == 0, again.stderr
    rules = filter_rules(lab3, standby)
    assert rules.count(f"-j {lab.PARTITION_CHAIN}") == 2, rules  # one hook in INPUT, one in OUTPUT
    outcome, seconds = probe(lab3, primary, standby)
    assert outcome == "timeout" and seconds >= CONNECT_TIMEOUT - 0.5, (outcome, seconds)
    outcome, seconds = probe(lab3, standby, primary)  # both directions
    assert outcome == "timeout", (outcome, seconds)
    assert probe(lab3, standby, standby, "127.0.0.1")[0] == "open"  # loopback is not cut
    healed = pgdock(lab3, "lab", "heal", standby)
    assert healed.returncode == 0, healed.stderr
    assert lab.PARTITION_CHAIN not in filter_rules(lab3, standby)
    wait_until(lambda: probe(lab3, primary, standby)[0] == "open", 10, f"{standby} to answer after heal")


def test_reject_partition_refuses_connects_at_once(lab3: LabCluster, standby_and_primary) -> None:
    standby, primary = standby_and_primary
    lab.container_action(lab3.spec, standby, "isolate", "reject")
    outcome, seconds = probe(lab3, primary, standby)
    assert outcome == "refused" and seconds < 1, (outcome, seconds)
    outcome, seconds = probe(lab3, standby, primary)
    assert outcome == "refused" and seconds < 1, (outcome, seconds)
    assert probe(lab3, standby, standby, "127.0.0.1")[0] == "open"
    lab.container_action(lab3.spec, standby, "heal")
    wait_until(lambda: probe(lab3, primary, standby)[0] == "open", 10, f"{standby} to answer after heal")
