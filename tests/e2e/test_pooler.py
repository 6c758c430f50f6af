"""Issue 15's pooler on the real engine: PgBouncer on every data node, forwarding to the current primary.

One lab cluster of its own (tests/e2e/specs/pooler.yaml: two data nodes, a witness, `pooler: {}` and the proxy's
write port through the poolers), because its tests switch over and then kill the primary. In this order:

1. a standby's pooler takes a TLS + SCRAM login of the application's role and writes on the primary; it refuses
   a connection without TLS and the superuser (auth_query never serves it); no password is in its files;
2. pgbench (transaction mode, 4 clients) through `<cluster>-proxy` → poolers runs across a switchover with no
   failed transaction: the switchover pauses the pools, each resumes on seeing the new primary;
3. after the primary is killed, a client connection to the survivor's pooler, opened before the kill, writes
   again on the new primary without reconnecting.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgdock_gen import contract, lab

from .conftest import LabCluster, bring_up, wait_until

FOLLOW_SLACK = 20.0
"""After a kill the pooler writes again within detection_seconds plus this (the promotion, the agent seeing the
new primary, PgBouncer's server_connect_timeout on the dead one)."""


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    the_cluster = bring_up(tmp_path_factory.mktemp("pooler"), "pooler.yaml")
    yield the_cluster
    lab.down(the_cluster.spec_path, the_cluster.spec, remove_volumes=True, progress=lambda m: None)


def secret(the_cluster: LabCluster, name: str) -> str:
    return (the_cluster.lab.repo / "secrets" / "passwords" / name).read_text().strip()


def pooler_conn(the_cluster: LabCluster, node: str, user: str = "app", password: str | None = None,
                sslmode: str = "verify-full") -> psycopg.Connection:
    """A connection to `node`'s PgBouncer, as an application on this machine makes it."""
    member = the_cluster.lab.lab_spec.member(node)
    assert the_cluster.spec.pooler
    return psycopg.connect(host=member.address, port=the_cluster.spec.pooler.port, dbname="app", user=user,
                           password=password if password is not None else secret(the_cluster, "app"),
                           sslmode=sslmode, sslrootcert=str(the_cluster.lab.repo / "secrets" / "tls" / "ca.crt"),
                           connect_timeout=3, autocommit=True)


def server_of(conn: psycopg.Connection) -> tuple[str, bool]:
    row = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone()
    assert row
    return row[0], row[1]


def name_of(the_cluster: LabCluster, address: str) -> str:
    return next(n.name for n in the_cluster.lab.lab_spec.members if n.address == address)


def test_a_standbys_pooler_writes_on_the_primary_over_tls_and_scram(pool: LabCluster) -> None:
    primary = pool.primary()
    standby = next(n.name for n in pool.spec.nodes if n.name != primary)
    with pooler_conn(pool, standby) as conn:
        address, in_recovery = server_of(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS via_pooler (at timestamptz)")
        conn.execute("INSERT INTO via_pooler VALUES (now())")
    assert (name_of(pool, address), in_recovery) == (primary, False)
    with pytest.raises(psycopg.OperationalError):
        pooler_conn(pool, standby, sslmode="disable").close()
    with pytest.raises(psycopg.OperationalError):  # auth_query never serves a superuser's secret
        pooler_conn(pool, standby, user="postgres", password=secret(pool, "superuser")).close()
    target = pool.running.target(standby)
    files = target.client.execute(target.container, ["sh", "-c", "cat /run/pgdock/pgbouncer/*.ini "
                                                                 "/run/pgdock/pgbouncer/*.conf"])
    assert "auth_query" in files
    leaked = [name for name in contract.PASSWORD_FILES if secret(pool, name) in files]
    assert not leaked, f"PgBouncer's files hold the {leaked} password"


def pgbench(the_cluster: LabCluster, *args: str) -> subprocess.Popen:
    """pgbench (from a node's image: this machine may lack it) through the lab proxy's write port, verify-full
    against the name `localhost` the node certificates carry."""
    assert the_cluster.spec.proxy and the_cluster.lab.proxy_address
    node = the_cluster.spec.witness.name if the_cluster.spec.witness else the_cluster.spec.nodes[0].name
    target = the_cluster.running.target(node)
    settings = {"PGHOST": "localhost", "PGHOSTADDR": the_cluster.lab.proxy_address,
                "PGPORT": str(the_cluster.spec.proxy.port), "PGUSER": "app", "PGDATABASE": "app",
                "PGPASSWORD": secret(the_cluster, "app"), "PGSSLMODE": "verify-full",
                "PGSSLROOTCERT": str(contract.CA_CERT), "PGCONNECT_TIMEOUT": "5"}
    environment = [arg for key, value in settings.items() for arg in ("-e", f"{key}={value}")]
    return subprocess.Popen(["docker", "exec", "-u", "postgres", *environment, target.container, "pgbench", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pgbench_through_the_poolers_survives_a_switchover(pool: LabCluster) -> None:
    init = pgbench(pool, "-i", "-s", "2", "-q")
    _, err = init.communicate(timeout=180)
    assert init.returncode == 0, err
    old = pool.primary()
    new = next(n.name for n in pool.spec.nodes if n.name != old)
    run = pgbench(pool, "-c", "4", "-j", "2", "-T", "40", "-P", "1", "-n")
    time.sleep(8)
    switched = subprocess.run([sys.executable, "-m", "pgdock_gen", "switchover", "-f", str(pool.spec_path), "--lab",
                               new], capture_output=True, text=True, timeout=300)
    out, err = run.communicate(timeout=120)
    print(f"\nswitchover:\n{switched.stderr}\npgbench:\n{out}\n{err}")
    assert switched.returncode == 0, switched.stderr
    assert pool.primary() == new
    assert "poolers paused" in switched.stderr
    assert run.returncode == 0 and "aborted" not in err, err
    failed = re.search(r"number of failed transactions: (\d+)", out)
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert failed and processed, out
    assert (int(failed[1]), int(processed[1]) > 0) == (0, True), out
    stalled = [line for line in err.splitlines() if re.match(r"progress: .* 0\.0 tps", line)]
    print(f"seconds without a transaction during the switchover: {len(stalled)}")
    assert len(stalled) < 30, err  # the pools resumed: pgbench went on on the new primary


def test_a_pooler_client_keeps_its_connection_through_a_failover(pool: LabCluster) -> None:
    pool.wait_healthy()
    old = pool.primary()
    survivor = next(n.name for n in pool.spec.nodes if n.name != old)
    conn = pooler_conn(pool, survivor)
    conn.execute("CREATE TABLE IF NOT EXISTS via_pooler (at timestamptz)")
    killed = time.monotonic()
    lab.container_action(pool.spec, old, "kill")

    def writes() -> str | None:
        try:
            return conn.execute("INSERT INTO via_pooler VALUES (now()) RETURNING host(inet_server_addr())"
                                ).fetchone()[0]
        except psycopg.errors.ReadOnlySqlTransaction:
            raise AssertionError("the pooler resumed towards a standby") from None
        except psycopg.Error:
            return None  # only a transaction in flight fails: the next one is tried on the same connection

    bound = pool.spec.detection_seconds + FOLLOW_SLACK
    address = wait_until(writes, bound, "a write through the survivor's pooler", pause=0.2)
    wrote = time.monotonic() - killed
    print(f"\nthe pooler's client wrote again {wrote:.2f} s after the kill (bound {bound:.0f} s)")
    assert name_of(pool, str(address)) == survivor and not conn.closed
    conn.close()
