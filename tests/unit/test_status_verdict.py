"""`status`'s verdict and exit status, table-tested over observed rows (no Docker)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from pgdock_gen import cluster, exits
from pgdock_gen.cluster import NodeStatus
from pgdock_gen.spec import parse

SPEC = parse("""
cluster: shop
postgres: {version: 17}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: n3, address: 10.0.0.3}
witness: {name: w1, address: 10.0.0.4}
""")


def row(name: str, role: str, **changes: object) -> NodeStatus:
    base = NodeStatus(name=name, role=role, upstream="n1" if role == "standby" else None, timeline=1, lag_bytes=0,
                      lag_seconds=0.0, repmgrd=True, reachable=True, registered=True, detail="running")
    return replace(base, **changes)


def down(name: str, detail: str = "container shop-x is not running or its engine is unreachable") -> NodeStatus:
    return row(name, "down", upstream=None, timeline=None, repmgrd=False, reachable=False, registered=False,
               detail=detail)


HEALTHY = [row("n1", "primary"), row("n2", "standby"), row("n3", "standby"), row("w1", "witness")]


def swap(rows: list[NodeStatus], new: NodeStatus) -> list[NodeStatus]:
    return [new if r.name == new.name else r for r in rows]


CASES = [
    ("all in", HEALTHY, cluster.HEALTHY, exits.OK, None),
    ("a standby down", swap(HEALTHY, down("n2")), cluster.DEGRADED, exits.DEGRADED, "n2 is down"),
    ("a standby not streaming", swap(HEALTHY, row("n3", "standby", upstream=None)), cluster.DEGRADED,
     exits.DEGRADED, "n3 is not streaming"),
    ("a fenced former primary", swap(HEALTHY, row("n3", "down", upstream=None, repmgrd=False,
                                                  detail="fenced: too few peers answered")),
     cluster.DEGRADED, exits.DEGRADED, "fenced"),
    ("the witness down", swap(HEALTHY, down("w1")), cluster.DEGRADED, exits.DEGRADED, "w1 is down"),
    ("repmgrd stopped on a standby", swap(HEALTHY, row("n2", "standby", repmgrd=False)), cluster.DEGRADED,
     exits.DEGRADED, "repmgrd"),
    ("repmgrd stopped on the primary", swap(HEALTHY, row("n1", "primary", repmgrd=False)), cluster.DEGRADED,
     exits.DEGRADED, "repmgrd is not running on n1"),
    ("a standby unregistered", swap(HEALTHY, row("n2", "standby", registered=False)), cluster.DEGRADED,
     exits.DEGRADED, "not registered"),
    ("two primaries", swap(HEALTHY, row("n2", "primary", upstream=None)), cluster.DEGRADED, exits.DEGRADED,
     "2 primaries (n1, n2)"),
    ("no primary, standbys streaming nothing", swap(HEALTHY, down("n1")), cluster.DOWN, exits.DOWN,
     "no writable primary"),
    ("nothing reachable", [down(r.name) for r in HEALTHY], cluster.DOWN, exits.DOWN, "no writable primary"),
]


@pytest.mark.parametrize(("rows", "state", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict(rows: list[NodeStatus], state: str, code: int, says: str | None) -> None:
    found = cluster.verdict(SPEC, rows)
    assert (found.state, found.exit_code) == (state, code)
    if says is None:
        assert found.problems == ()
        assert cluster.healthy(SPEC, rows) is None
    else:
        assert any(says in p for p in found.problems), found.problems
        assert cluster.healthy(SPEC, rows) == found.problems[0]


def test_a_down_cluster_names_the_nodes_that_are_down() -> None:
    found = cluster.verdict(SPEC, swap(HEALTHY, down("n1", "fenced: peers name n2")))
    assert found.problems == ("no writable primary", "n1 is down: fenced: peers name n2")


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = [exits.OK, exits.FAILED, exits.USAGE, exits.DEGRADED, exits.DOWN]
    assert codes == [0, 1, 2, 3, 4]
    assert set(exits.MEANINGS) == set(codes)
    assert set(cluster.VERDICT_EXITS.values()) == {exits.OK, exits.DEGRADED, exits.DOWN}


def test_the_readme_lists_every_exit_status() -> None:
    from .conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    listed = {int(code) for code in re.findall(r"^\| (\d) \| ", readme, re.MULTILINE)}
    assert listed == set(exits.MEANINGS)
