"""The images and the lab (issue 3): a replicating cluster from one command, on the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from python_on_whales import docker

from pgdock_gen import contract, events, images

from .conftest import LabCluster, wait_until


def repmgr_cluster_show(lab3: LabCluster, node: str) -> dict[str, dict[str, str]]:
    out = docker.execute(f"{lab3.spec.cluster}-{node}",
                         ["repmgr", "-f", "/etc/pgdock/repmgr.conf", "cluster", "show"], user="postgres")
    rows = [[cell.strip() for cell in line.split("|")] for line in out.splitlines()[2:] if "|" in line]
    return {row[1]: {"role": row[2], "status": row[3], "upstream": row[4]} for row in rows}


def test_three_nodes_and_witness_come_up_as_one_primary_two_standbys(lab3: LabCluster) -> None:
    result = subprocess.run([sys.executable, "-m", "pgdock_gen", "status", "-f", str(lab3.spec_path), "--lab",
                             "--json"], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["cluster"] == "pgdock-e2e"
    nodes = {n["name"]: n for n in report["nodes"]}
    assert set(nodes["e1"]) >= {"name", "role", "upstream", "timeline", "lag_bytes", "lag_seconds", "repmgrd",
                                "reachable"}
    primary = lab3.primary()
    standbys = [n for n in ("e1", "e2", "e3") if n != primary]
    assert all(nodes[n]["role"] == "standby" and nodes[n]["upstream"] == primary for n in standbys), nodes
    assert nodes["ew"]["role"] == "witness"
    assert all(n["repmgrd"] and n["reachable"] for n in nodes.values()), nodes
    shown = repmgr_cluster_show(lab3, primary)
    for name, node in nodes.items():
        assert shown[name]["role"] == node["role"], (name, shown, node)
        assert "running" in shown[name]["status"]
    assert all(shown[n]["upstream"] == primary for n in standbys)


def test_pg_dock_walkthrough_million_rows_reach_every_standby(lab3: LabCluster) -> None:
    primary = lab3.primary()
    lab3.sql(primary, "DROP TABLE IF EXISTS testtable")
    for step in ("prepare", "insert"):
        sql_file = (lab3.lab.repo / "shared" / "tests" / f"{step}.sql").read_text()
        lab3.sql(primary, sql_file)
    assert lab3.sql(primary, "SELECT count(*) FROM testtable") == "1000000"
    started = time.monotonic()
    for standby in (n for n in ("e1", "e2", "e3") if n != primary):
        wait_until(lambda s=standby: lab3.sql(s, "SELECT count(*) FROM testtable") == "1000000",
                   max(1.0, 30 - (time.monotonic() - started)), f"1,000,000 rows on {standby}")


def test_restarted_standby_resumes_without_reclone(lab3: LabCluster) -> None:
    primary = lab3.primary()
    standby = next(n for n in ("e3", "e2", "e1") if n != primary)
    container = f"{lab3.spec.cluster}-{standby}"
    system_id = lab3.sql(standby, "SELECT system_identifier FROM pg_control_system()")
    docker.execute(container, ["touch", "/var/lib/pgdock/data/e2e-marker"], user="postgres")
    lab3.sql(primary, "CREATE TABLE IF NOT EXISTS while_down (id int)")
    stopped_at = datetime.now(UTC)
    docker.container.stop(container)
    lab3.sql(primary, "INSERT INTO while_down SELECT generate_series(1, 500)")
    docker.container.start(container)
    wait_until(lambda: lab3.sql(standby, "SELECT count(*) FROM while_down") == "500", 60,
               f"rows written while {standby} was down")
    assert lab3.sql(standby, "SELECT system_identifier FROM pg_control_system()") == system_id
    docker.execute(container, ["test", "-f", "/var/lib/pgdock/data/e2e-marker"])  # not rebuilt by a clone
    assert "cloning" not in docker.container.logs(container, since=stopped_at)
    lab3.sql(primary, "DROP TABLE while_down")
    lab3.wait_healthy()


def test_docker_stop_of_primary_is_a_fast_clean_shutdown(lab3: LabCluster) -> None:
    primary = lab3.primary()
    container = f"{lab3.spec.cluster}-{primary}"
    repmgr = ["repmgr", "-f", "/etc/pgdock/repmgr.conf", "service"]
    docker.execute(container, repmgr + ["pause"], user="postgres")  # a planned stop: no failover wanted
    try:
        started = time.monotonic()
        docker.container.stop(container, time=60)
        took = time.monotonic() - started
        logs = docker.container.logs(container, since="1m")
        assert docker.container.inspect(container).state.exit_code == 0
        assert "received fast shutdown request" in logs
        assert "database system is shut down" in logs
        assert took < 30, f"docker stop took {took:.1f} s: was PostgreSQL killed instead of stopped?"
        docker.container.start(container)
    finally:
        wait_until(lambda: docker.execute(container, repmgr + ["unpause"], user="postgres") is not None, 60,
                   "repmgrd unpaused")
    lab3.wait_healthy()
    assert lab3.primary() == primary


@pytest.fixture()
def outsider(lab3: LabCluster):
    """A client container on the lab network at an address that is not a cluster member."""
    ip = lab3.lab.subnet.rsplit(".", 1)[0] + ".250"
    name = f"{lab3.spec.cluster}-outsider"
    if docker.container.exists(name):
        docker.container.remove(name, force=True)
    base = images.names(lab3.lab.lab_spec, lab3.lab.repo).base
    container = docker.run(base, ["infinity"], entrypoint="sleep", name=name,
                           detach=True, networks=[lab3.lab.network], remove=True)
    docker.network.disconnect(lab3.lab.network, container)
    docker.network.connect(lab3.lab.network, container, ip=ip)
    yield container
    container.remove(force=True)


def test_authentication_needs_password_and_tls_and_keeps_repmgr_inside(lab3: LabCluster, outsider) -> None:
    primary = lab3.lab.lab_spec.member(lab3.primary())
    secrets = lab3.lab.repo / "secrets" / "passwords"

    def psql(conninfo: str, password: str | None) -> subprocess.CompletedProcess:
        envs = {"PGPASSWORD": password} if password else {}
        return subprocess.run(["docker", "exec", *sum((["-e", f"{k}={v}"] for k, v in envs.items()), []),
                               outsider.name, "psql", "-w", "-Atc",
                               "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                               f"host={primary.address} port={primary.port} {conninfo}"],
                              capture_output=True, text=True)

    app_password = secrets.joinpath("app").read_text().strip()
    no_password = psql("user=app dbname=app sslmode=require", None)
    assert no_password.returncode != 0 and "no password supplied" in no_password.stderr
    wrong = psql("user=app dbname=app sslmode=require", "not-the-password")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    good = psql("user=app dbname=app sslmode=require", app_password)
    assert good.returncode == 0 and good.stdout.strip() == "t", good.stderr
    plain = psql("user=app dbname=app sslmode=disable", app_password)
    assert plain.returncode != 0 and "no pg_hba.conf entry" in plain.stderr
    repmgr = psql("user=repmgr dbname=repmgr sslmode=require", secrets.joinpath("repmgr").read_text().strip())
    assert repmgr.returncode != 0 and ("rejects connection" in repmgr.stderr or "no pg_hba" in repmgr.stderr)


def test_debian_base_can_be_bootstrapped_without_a_registry() -> None:
    tag = "pgdock/debian-e2e:trixie"
    try:
        images.bootstrap("trixie", tag, progress=print)
        release = docker.run(tag, ["cat", "/etc/debian_version"], remove=True)
        assert release.startswith("13") or "trixie" in release, release
    finally:
        if docker.image.exists(tag):
            docker.image.remove(tag, force=True)


BASE_IMAGE_MAX = 245e6
"""238 MB on trixie / PostgreSQL 17 (2026-12-02): LLVM (127 MB) or perl's modules (49 MB) coming back
would break it, and so would anything else over 7 MB. Issue 11's 160 MB is not reached; see bench/images.py."""


def test_base_image_is_lean_and_dpkg_and_apt_agree_with_it(lab3: LabCluster) -> None:
    """Issue 11, item 5: nothing is removed behind dpkg's back, so dpkg's database is consistent, apt
    sees no unmet dependency, and `apt-get install` in a derived image needs no `apt-get -f install`."""
    base = images.names(lab3.lab.lab_spec, lab3.lab.repo).base
    size = docker.image.inspect(base).size
    assert size <= BASE_IMAGE_MAX, f"{base} is {size / 1e6:.0f} MB"
    audit = subprocess.run(["docker", "run", "--rm", "--entrypoint", "dpkg", base, "--audit"],
                           capture_output=True, text=True)
    assert audit.returncode == 0 and not audit.stdout.strip() and not audit.stderr.strip(), audit
    check = subprocess.run(["docker", "run", "--rm", "--entrypoint", "apt-get", base, "check", "-q"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    install = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", base, "-c",
                              "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                              "apt-get install -y -qq --no-install-recommends jq >/dev/null && jq --version"],
                             capture_output=True, text=True)
    assert install.returncode == 0 and install.stdout.startswith("jq-"), install.stdout + install.stderr


def test_cluster_roles_from_a_stranger_are_refused_before_a_password(lab3: LabCluster, outsider) -> None:
    """Issue 10, row 4: postgres and replicator log in only from members; anyone else is turned away by
    pg_hba before a password is even asked (so there is nothing to guess)."""
    primary = lab3.lab.lab_spec.member(lab3.primary())
    for user, database in (("postgres", "app"), ("postgres", "postgres"), ("replicator", "app")):
        result = subprocess.run(["docker", "exec", outsider.name, "psql", "-w", "-Atc", "SELECT 1",
                                 f"host={primary.address} port={primary.port} user={user} dbname={database} "
                                 "sslmode=require"], capture_output=True, text=True)
        assert result.returncode != 0 and "pg_hba.conf rejects connection" in result.stderr, (user, result.stderr)
        assert "password" not in result.stderr


def test_the_cluster_key_works_from_members_only(lab3: LabCluster, outsider) -> None:
    """Issue 10, row 4: the cluster's ssh key is bound to the members' addresses (from=), so a copy of it
    is useless elsewhere; members still reach each other (switchover and rejoin need it)."""
    names = [n.name for n in lab3.spec.nodes]
    target = lab3.lab.lab_spec.member(names[1])
    key = lab3.lab.repo / "secrets" / "ssh" / "id_ed25519"
    subprocess.run(["docker", "cp", str(key), f"{outsider.name}:/tmp/key"], check=True)
    ssh = ["ssh", "-i", "/tmp/key", "-p", str(target.ssh_port), "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", f"postgres@{target.address}", "true"]
    stranger = subprocess.run(["docker", "exec", outsider.name, "sh", "-c", "chmod 600 /tmp/key && " +
                               " ".join(ssh)], capture_output=True, text=True)
    assert stranger.returncode != 0 and "Permission denied" in stranger.stderr, stranger.stderr
    member = docker.execute(f"{lab3.spec.cluster}-{names[0]}", ["ssh", "-o", "BatchMode=yes", target.address,
                                                               "echo", "reached"], user="postgres")
    assert member.strip() == "reached"


def test_a_node_presenting_another_nodes_certificate_is_refused(lab3: LabCluster, outsider) -> None:
    """Issue 10, row 3: clients verify the server's name (verify-full). A standby given another node's
    certificate and key still passes verify-ca (same CA) but is refused under verify-full."""
    primary = lab3.primary()
    standby, other = [n.name for n in lab3.spec.nodes if n.name != primary][:2]
    node = lab3.lab.lab_spec.member(standby)
    tls, container = lab3.lab.repo / "secrets" / "tls", f"{lab3.spec.cluster}-{standby}"
    subprocess.run(["docker", "cp", str(tls / "ca.crt"), f"{outsider.name}:/tmp/ca.crt"], check=True)
    password = (lab3.lab.repo / "secrets" / "passwords" / "app").read_text().strip()

    def connect(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-e", f"PGPASSWORD={password}", outsider.name, "psql", "-w", "-Atc",
                               "SELECT 1", f"host={node.address} port={node.port} user=app dbname=app "
                               f"sslmode={mode} sslrootcert=/tmp/ca.crt"], capture_output=True, text=True)

    def serve(name: str) -> None:
        for suffix in ("crt", "key"):
            subprocess.run(["docker", "cp", str(tls / f"{name}.{suffix}"),
                            f"{container}:/var/lib/postgresql/tls/server.{suffix}"], check=True)
        docker.execute(container, ["chown", "postgres:postgres", "/var/lib/postgresql/tls/server.crt",
                                   "/var/lib/postgresql/tls/server.key"])
        docker.execute(container, ["chmod", "600", "/var/lib/postgresql/tls/server.key"])
        docker.execute(container, ["pgdock-agent", "pg-reload"], user="postgres")

    assert connect("verify-full").returncode == 0, connect("verify-full").stderr
    try:
        serve(other)
        impostor = wait_until(lambda: (r := connect("verify-full")).returncode != 0 and r, 20,
                              "the impostor certificate to be served")
        assert "does not match host name" in impostor.stderr, impostor.stderr
        assert connect("verify-ca").returncode == 0  # the same CA: only the name check catches it
    finally:
        serve(standby)
    wait_until(lambda: connect("verify-full").returncode == 0, 20, "the node's own certificate again")
    lab3.wait_healthy()


def test_rotate_passwords_and_certificates_without_a_restart_or_a_failover(lab3: LabCluster, outsider) -> None:
    """Issue 10, row 7: new app and repmgr passwords and node certificates on the running cluster: the old
    app password stops working, the new one works under verify-full, PostgreSQL is not restarted, and no
    node fences or promotes meanwhile."""
    primary = lab3.primary()
    node = lab3.lab.lab_spec.member(primary)
    secrets = lab3.lab.repo / "secrets"
    started = lab3.sql(primary, "SELECT pg_postmaster_start_time()")
    old_app, cert = (secrets / "passwords" / "app").read_text().strip(), secrets / "tls" / f"{primary}.crt"
    old_cert = cert.read_bytes()
    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    result = subprocess.run([sys.executable, "-m", "pgdock_gen", "rotate", "-f", str(lab3.spec_path), "--lab",
                             "--password", "app", "--password", "repmgr", "--certificates"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    new_app = (secrets / "passwords" / "app").read_text().strip()
    assert new_app != old_app and cert.read_bytes() != old_cert
    assert new_app not in result.stdout + result.stderr
    subprocess.run(["docker", "cp", str(secrets / "tls" / "ca.crt"), f"{outsider.name}:/tmp/ca.crt"], check=True)

    def login(password: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-e", f"PGPASSWORD={password}", outsider.name, "psql", "-w", "-Atc",
                               "SELECT 1", f"host={node.address} port={node.port} user=app dbname=app "
                               "sslmode=verify-full sslrootcert=/tmp/ca.crt"], capture_output=True, text=True)

    assert login(new_app).returncode == 0, login(new_app).stderr
    assert "password authentication failed" in login(old_app).stderr
    assert lab3.sql(primary, "SELECT pg_postmaster_start_time()") == started
    served = docker.execute(f"{lab3.spec.cluster}-{primary}", ["cat", "/var/lib/postgresql/tls/server.crt"])
    assert served.strip() == cert.read_text().strip()  # the agent installed the new certificate
    lab3.wait_healthy()
    time.sleep(6)  # longer than a fence window: a node that lost its peers would have fenced by now
    assert lab3.primary() == primary
    changes = [e for e in events.collect(lab3.running) if e["time"] >= since and e["event"] in (
        contract.EVENT_FENCED, *contract.PROMOTION_EVENTS, contract.EVENT_STEP_DOWN)]
    assert not changes, changes
