"""End-to-end fixtures: real images, real containers, real PostgreSQL and repmgr.

One lab cluster is brought up per session and shared by the tests that leave it
healthy; leftovers of an earlier run (same names) are removed first, and the
cluster is removed at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgdock_gen import backup, cluster, lab, render, restore, spec

SPECS = Path(__file__).parent / "specs"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


LOG_LINES = 25
"""Per container, in a failed test's report: what CI keeps of a flaky failure."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed e2e test's report carries the tail of every lab container's log: a failure seen only in
    CI (a clean machine, no containers left to look at) can then be read from CI's output."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and call.excinfo is not None:
        # printed at once: scripts/test.sh reruns a failed e2e test, and a rerun's report keeps no traceback
        # of the first try, which is the one that shows what went wrong
        sys.stderr.write(f"\n{item.nodeid} failed (it may be rerun):\n{call.excinfo.getrepr(style='short')}\n")
    if report.failed and call.when == "call":
        names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                               text=True).stdout.split()
        for name in sorted(names):
            logs = subprocess.run(["docker", "logs", "--tail", str(LOG_LINES), name], capture_output=True, text=True)
            report.sections.append((f"docker logs {name}", (logs.stdout + logs.stderr)[-4000:]))


@pytest.fixture(scope="session", autouse=True)
def _docker_available() -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine here; run scripts/setup.sh on a machine with one")


@dataclass
class LabCluster:
    spec_path: Path
    spec: spec.Spec
    lab: lab.Lab

    @property
    def running(self) -> cluster.Running:
        return self.lab.running

    def sql(self, node: str, query: str, database: str | None = None) -> str:
        """Runs one statement as the superuser on `node`; returns psql's unaligned output."""
        target = self.running.target(node)
        command = cluster.psql_command(self.spec, target, None, database) + ["-Atc", query]
        return target.client.execute(target.container, command, user="postgres").strip()

    def status(self) -> dict[str, cluster.NodeStatus]:
        return {row.name: row for row in self.running.status()}

    def primary(self) -> str:
        primaries = [name for name, row in self.status().items() if row.role == "primary"]
        assert len(primaries) == 1, primaries
        return primaries[0]

    def wait_healthy(self, timeout: float = 120) -> None:
        lab.wait_healthy(self.lab, timeout, print)


def cli(the_cluster: LabCluster, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`pgdock-gen COMMAND -f SPEC --lab ARGS`, as an operator runs it."""
    result = subprocess.run([sys.executable, "-m", "pgdock_gen", command, "-f", str(the_cluster.spec_path), "--lab",
                             *args], capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{command} {args}: exit {result.returncode}\n{result.stderr[-4000:]}"
    return result


def wait_until(check: Callable[[], object], timeout: float, what: str, pause: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the check may fail while the cluster settles
            last = exc
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def render_fork(tmp: Path, spec_file: str, added: dict[str, str]) -> Path:
    """A rendered cluster repo with files a user added (executable when they start with #!); its cluster.yaml."""
    text = (SPECS / spec_file).read_text()
    parsed = spec.parse(text, str(tmp / "repo" / "cluster.yaml"))
    render.write(parsed, render.plan(parsed, text), tmp / "repo")
    for rel, content in added.items():
        (tmp / "repo" / rel).write_text(content)
        (tmp / "repo" / rel).chmod(0o755 if content.startswith("#!") else 0o644)
    return tmp / "repo" / "cluster.yaml"


def bring_up(tmp: Path, spec_file: str, added: dict[str, str] | None = None, timeout: float = 240, *,
             monitoring: bool = False) -> LabCluster:
    """A lab cluster of `spec_file`, from a fork with `added` files when given (with `monitoring`, the lab's
    Prometheus too); leftovers removed first."""
    if added:
        spec_path = render_fork(tmp, spec_file, added)
    else:
        spec_path = tmp / "cluster.yaml"
        shutil.copy(SPECS / spec_file, spec_path)
    loaded = spec.load(spec_path)
    lab.down(spec_path, loaded, remove_volumes=True, progress=lambda m: None)  # leftovers of an earlier run
    the_lab, _ = lab.up(spec_path, loaded, timeout=timeout, monitoring=monitoring, progress=print)
    return LabCluster(spec_path, loaded, the_lab)


@pytest.fixture(scope="session")
def lab3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    """Three data nodes and a witness, shared by every test that leaves it healthy."""
    the_cluster = bring_up(tmp_path_factory.mktemp("lab3"), "lab3.yaml")
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


@pytest.fixture(scope="session")
def lab2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    """Two data nodes and a witness in synchronous mode."""
    the_cluster = bring_up(tmp_path_factory.mktemp("lab2"), "lab2.yaml")
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


def archive_everything(the_cluster: LabCluster, primary: str | None = None, timeout: float = 90) -> str:
    """Closes the current WAL file and waits until the primary has archived it; the file's name. A commit goes
    first: right after a switch (pgBackRest's backup ends with one) there is nothing to close, and
    pg_switch_wal would do nothing while naming the file in use, which is never archived."""
    primary = primary or the_cluster.primary()
    the_cluster.sql(primary, "SELECT txid_current()")
    switched = the_cluster.sql(primary, "SELECT pg_walfile_name(pg_switch_wal())")
    wait_until(lambda: the_cluster.sql(primary, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
               >= switched, timeout, f"{switched} archived by {primary}")
    return switched


def restored_spec(the_cluster: LabCluster, name: str) -> spec.Spec:
    """The spec of a lab cluster `name` restored from `the_cluster`'s backups (to remove it afterwards)."""
    return spec.parse(json.dumps(restore.restored_raw(the_cluster.spec.raw, name)), "restored")


def restore_to_a_moment(the_cluster: LabCluster, name: str) -> LabCluster:
    """Point-in-time restore, checked exactly: 100 rows at a moment T, 50 more and the table dropped after it,
    all archived; `restore --to T` into the new lab cluster `name` has the 100 rows. The caller removes it."""
    primary = the_cluster.primary()
    the_cluster.sql(primary, "DROP TABLE IF EXISTS pitr")  # a rerun finds the first try's table
    the_cluster.sql(primary, "CREATE TABLE pitr (id int)")
    the_cluster.sql(primary, "INSERT INTO pitr SELECT generate_series(1, 100)")
    time.sleep(1.5)
    target = the_cluster.sql(primary, "SELECT now()")
    time.sleep(1.5)
    the_cluster.sql(primary, "INSERT INTO pitr SELECT generate_series(101, 150)")
    the_cluster.sql(primary, "DROP TABLE pitr")
    archive_everything(the_cluster)
    result = restore.restore(the_cluster.spec_path, the_cluster.spec, to=target, latest=False, name=name,
                             progress=print)
    assert result.recovered_to is not None and result.recovered_to <= dt.datetime.fromisoformat(
        target).astimezone(dt.UTC).isoformat()
    restored = LabCluster(the_cluster.spec_path, result.lab.spec, result.lab)
    assert restored.sql(restored.primary(), "SELECT count(*) FROM pitr") == "100"
    return restored


def cli_last(the_cluster: LabCluster, *args: str) -> subprocess.CompletedProcess:
    """`pgdock-gen ARGS -f SPEC --lab` (the flags after a subcommand group's command: `backup now`), unchecked."""
    return subprocess.run([sys.executable, "-m", "pgdock_gen", *args, "-f", str(the_cluster.spec_path), "--lab"],
                          capture_output=True, text=True)


def s3_of(the_cluster: LabCluster):
    """The cluster's backup location and a boto3 client for it (the lab's S3 server, its CA)."""
    loc = backup.location(the_cluster.lab.lab_spec)
    return loc, backup.client(loc, backup.credentials(the_cluster.lab.repo / "secrets"))


def burst_then_fail_over(the_cluster: LabCluster, stored: Callable[[], set[str]]) -> str:
    """Issue 14's durability check, then a failover: six WAL files (more than one batch) reported archived are
    all in the store (`stored` lists its segments) although the primary is killed right then; a new primary
    writes 42 rows into `after_failover`, the old one starts again and the cluster is healthy. The new
    primary's name."""
    old_primary = the_cluster.primary()
    the_cluster.sql(old_primary, "DROP TABLE IF EXISTS burst")  # a rerun (scripts/test.sh) finds the first try's
    the_cluster.sql(old_primary, "CREATE TABLE burst (id int)")
    switched = []
    for _ in range(6):
        the_cluster.sql(old_primary, "INSERT INTO burst SELECT generate_series(1, 1000)")
        switched.append(the_cluster.sql(old_primary, "SELECT pg_walfile_name(pg_switch_wal())"))
    wait_until(lambda: the_cluster.sql(old_primary, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
               >= switched[-1], 60, f"{switched[-1]} archived", pause=0.1)
    lab.container_action(the_cluster.spec, old_primary, "kill")
    missing = set(switched) - stored()
    assert not missing, f"reported archived but not in S3: {sorted(missing)}"
    new_primary = wait_until(lambda: next((n for n, r in the_cluster.status().items() if r.role == "primary"
                                           and n != old_primary), None), 90, "a new primary")
    the_cluster.sql(new_primary, "DROP TABLE IF EXISTS after_failover")
    the_cluster.sql(new_primary, "CREATE TABLE after_failover AS SELECT generate_series(1, 42) AS id")
    lab.container_action(the_cluster.spec, old_primary, "start")
    the_cluster.wait_healthy()
    return str(new_primary)
