"""What `render` writes: determinism, secrets handling and the content of the generated config."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509

from pgdock_gen import render, spec
from pgdock_gen.credentials import PASSWORDS, password

from .conftest import MINIMAL_SPEC, render_spec, tree


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def lines(path: Path) -> list[str]:
    return [
        line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")
    ]


def setting(conf: Path, name: str) -> str:
    """The last value `name` is set to in a postgresql.conf-like file (later settings win)."""
    values = re.findall(
        rf"^{re.escape(name)}\s*=\s*(.*?)\s*$", conf.read_text(encoding="utf-8"), re.MULTILINE
    )
    assert values, f"{name} is not set in {conf}"
    return values[-1]


# ------------------------------------------------------------------ determinism


def test_same_spec_renders_byte_identical_files(tmp_path: Path, golden_spec_text: str) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    render_spec(golden_spec_text, first)
    second.mkdir()
    shutil.copytree(first / "secrets", second / "secrets")
    render_spec(golden_spec_text, second)
    assert tree(first) == tree(second)
    assert tree(first, skip=()) == tree(second, skip=()), "secrets copied in first must be kept as they are"


def test_non_secret_files_do_not_depend_on_secrets(tmp_path: Path, golden_spec_text: str) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    render_spec(golden_spec_text, first)
    render_spec(golden_spec_text, second)
    assert tree(first) == tree(second)


def test_rendering_twice_into_the_same_folder_changes_nothing(tmp_path: Path, shop_spec_text: str) -> None:
    out = tmp_path / "repo"
    first = render_spec(shop_spec_text, out)
    assert first.new and not first.changed
    snapshot = tree(out, skip=())
    second = render_spec(shop_spec_text, out)
    assert (second.new, second.changed, second.stale) == ([], [], [])
    assert sorted(second.unchanged) == sorted(first.new)
    assert tree(out, skip=()) == snapshot


def test_plan_is_sorted_and_lists_every_node(shop_spec_text: str) -> None:
    files = render.plan(spec.parse(shop_spec_text), shop_spec_text)
    assert list(files) == sorted(files)
    for node in ("n1", "n2", "w1"):
        for name in ("Dockerfile", "compose.yaml", "env", "pg_hba.conf", "postgresql.conf", "repmgr.conf"):
            assert f"nodes/{node}/{name}" in files
    assert not any(rel.startswith("secrets/") for rel in files)
    assert not any("__pycache__" in rel or rel.endswith(".j2") for rel in files)


def test_file_modes(shop_repo: Path) -> None:
    assert mode(shop_repo) == 0o755
    assert mode(shop_repo / "nodes" / "n1" / "postgresql.conf") == 0o644
    for script in (shop_repo / "shared").rglob("*.sh"):
        assert mode(script) == 0o755, script


# ------------------------------------------------------------------ secrets


def test_secrets_are_kept_across_rerenders(tmp_path: Path, shop_spec_text: str) -> None:
    out = tmp_path / "repo"
    render_spec(shop_spec_text, out)
    before = tree(out / "secrets", skip=())
    (out / "nodes" / "n1" / "env").write_text("edited\n", encoding="utf-8")
    render_spec(shop_spec_text, out, force=True)
    assert tree(out / "secrets", skip=()) == before


@pytest.mark.parametrize("lost", ["passwords/repmgr", "tls/ca.key", "tls/ca.crt", "ssh/id_ed25519.pub",
                                  "ssh/host_keys/n2_ed25519"])
def test_an_incomplete_secrets_set_is_refused_and_nothing_written(tmp_path: Path, shop_spec_text: str,
                                                                   run_cli, lost: str) -> None:
    """Issue 10, row 7: a lost repmgr password or CA key used to be made anew (exit 0): a password the
    database does not know, a CA that signed none of the node certificates. Now: exit 2, the path named."""
    out = tmp_path / "repo"
    render_spec(shop_spec_text, out)
    (out / "secrets" / lost).unlink()
    before = tree(out, skip=())
    (tmp_path / "cluster.yaml").write_text(shop_spec_text.replace("work_mem: 8MB", "work_mem: 32MB"))
    result = run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", out, "--force")
    assert result.exit_code == 2 and lost in result.stderr and "Traceback" not in result.stderr
    assert tree(out, skip=()) == before


def test_a_new_node_gets_new_secrets_the_others_are_kept(tmp_path: Path, shop_spec_text: str) -> None:
    out = tmp_path / "repo"
    render_spec(shop_spec_text, out)
    app = password(out / "secrets", "app")
    (out / "secrets" / "tls" / "n2.crt").unlink()
    (out / "secrets" / "tls" / "n2.key").unlink()
    render_spec(shop_spec_text, out)
    assert password(out / "secrets", "app") == app
    assert (out / "secrets" / "tls" / "n2.crt").exists()


def test_secret_modes(shop_repo: Path) -> None:
    secrets = shop_repo / "secrets"
    folders = [secrets, *(p for p in secrets.rglob("*") if p.is_dir())]
    files = [p for p in secrets.rglob("*") if p.is_file()]
    assert len(files) >= 4 + 2 + 2 * 3 + 1 + 2 + 2 * 3
    assert {p.relative_to(shop_repo).as_posix(): oct(mode(p)) for p in folders if mode(p) != 0o700} == {}
    assert {p.relative_to(shop_repo).as_posix(): oct(mode(p)) for p in files if mode(p) != 0o600} == {}


def test_passwords_are_distinct_and_strong(shop_repo: Path) -> None:
    values = [password(shop_repo / "secrets", role) for role in PASSWORDS]
    assert len(set(values)) == len(values)
    for value in values:
        assert len(value) >= 32
        assert re.fullmatch(r"[A-Za-z0-9_-]+", value), (
            "passwords must be safe in .pgpass, conninfo and env files"
        )


def _secret_values(secrets: Path) -> list[str]:
    values = [password(secrets, role) for role in PASSWORDS]
    for key in [*secrets.rglob("*.key"), *secrets.rglob("*_ed25519"), secrets / "ssh" / "id_ed25519"]:
        body = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        assert body, key
        values.extend(ln for ln in body if len(ln) >= 16)
    return values


def test_no_secret_value_in_any_other_file(shop_repo: Path) -> None:
    values = _secret_values(shop_repo / "secrets")
    assert len(values) > 4
    files = tree(shop_repo)
    assert files
    leaks = [(rel, v[:8]) for rel, content in files.items() for v in values if v.encode() in content]
    assert leaks == []


def test_gitignore_ignores_secrets(shop_repo: Path) -> None:
    assert "/secrets/" in lines(shop_repo / ".gitignore")


def test_dockerignore_excludes_secrets(shop_repo: Path) -> None:
    """Docker's rules: the last matching line wins; a leading `!` re-includes."""
    rules = [line.strip() for line in lines(shop_repo / ".dockerignore")]

    def excluded(path: str) -> bool:
        result = False
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").strip("/")
            top = path.split("/")[0]
            if pattern in ("*", "**") or pattern == top or path.startswith(pattern + "/"):
                result = not negate
        return result

    assert excluded("secrets/passwords/app")
    assert excluded("secrets/tls/ca.key")
    assert not excluded("nodes/n1/postgresql.conf")
    assert not excluded("shared/failover/hook.sh")


# ------------------------------------------------------------------ postgresql.conf, pg_hba.conf, repmgr.conf


def test_sync_mode_lists_the_other_data_nodes(golden_repo: Path) -> None:
    nodes = golden_repo / "nodes"
    assert setting(nodes / "g1" / "postgresql.conf", "synchronous_standby_names") == '\'ANY 1 ("g2", "g3")\''
    assert setting(nodes / "g2" / "postgresql.conf", "synchronous_standby_names") == '\'ANY 1 ("g1", "g3")\''
    assert setting(nodes / "g1" / "postgresql.conf", "synchronous_commit") == "on"
    assert "synchronous_standby_names" not in (nodes / "gw" / "postgresql.conf").read_text(encoding="utf-8")


def test_sync_mode_shop_three_nodes(tmp_path: Path) -> None:
    text = (
        MINIMAL_SPEC + "  - name: n2\n    address: 10.0.0.2\n  - name: n3\n    address: 10.0.0.3\n"
        "replication:\n  mode: sync\n"
    )
    out = tmp_path / "repo"
    render_spec(text, out)
    conf = out / "nodes" / "n1" / "postgresql.conf"
    assert (
        'synchronous_standby_names = \'ANY 1 ("n2", "n3")\'' in conf.read_text(encoding="utf-8").splitlines()
    )


def test_async_mode_has_no_synchronous_standbys(shop_repo: Path) -> None:
    for conf in (shop_repo / "nodes").glob("*/postgresql.conf"):
        assert "synchronous_standby_names" not in conf.read_text(encoding="utf-8"), conf


def test_sync_mode_with_a_single_data_node_is_rejected_or_valid(tmp_path: Path) -> None:
    text = MINIMAL_SPEC + "replication:\n  mode: sync\n"
    try:
        spec.parse(text)
    except Exception:  # a validation error is a correct answer too
        return
    out = tmp_path / "repo"
    render_spec(text, out)
    assert "()" not in (out / "nodes" / "n1" / "postgresql.conf").read_text(encoding="utf-8")


def test_pg_hba_has_no_trust_and_remote_lines_are_hostssl(golden_repo: Path) -> None:
    loopback = {"127.0.0.1/32", "::1/128"}
    for hba in (golden_repo / "nodes").glob("*/pg_hba.conf"):
        entries = [line.split() for line in lines(hba)]
        assert entries, hba
        for fields in entries:
            assert "trust" not in fields, (hba, fields)
            kind = fields[0]
            assert kind in ("local", "host", "hostssl"), fields
            if kind == "host":
                assert fields[3] in loopback, f"{hba}: remote line without TLS: {fields}"
            if kind != "local" and fields[2] == "pgdock_pooler" and fields[-2] == "cert":
                assert kind == "hostssl" and fields[-1] == "map=pgdock", fields  # the pooler: certificate only
            elif kind != "local":
                assert fields[-1] in ("scram-sha-256", "reject"), fields


def test_pg_hba_replication_only_from_data_nodes(golden_repo: Path) -> None:
    hba = [line.split() for line in lines(golden_repo / "nodes" / "g1" / "pg_hba.conf")]
    replication = {f[3] for f in hba if f[1] == "replication"}
    assert replication == {"10.1.0.1/32", "10.1.0.2/32", "10.1.0.3/32"}
    repmgr = {f[3] for f in hba if f[1] == "repmgr"}
    assert repmgr == {"10.1.0.1/32", "10.1.0.2/32", "10.1.0.3/32", "10.1.0.9/32"}


def test_witness_gets_its_own_folder_without_replication(golden_repo: Path) -> None:
    witness = golden_repo / "nodes" / "gw"
    assert sorted(p.name for p in witness.iterdir()) == [
        "Dockerfile",
        "compose.yaml",
        "env",
        "pg_hba.conf",
        "pg_ident.conf",
        "postgresql.conf",
        "repmgr.conf",
    ]
    hba = [line.split() for line in lines(witness / "pg_hba.conf")]
    assert not [f for f in hba if f[1] == "replication" or f[2] == "replicator"]
    assert [f for f in hba if f[1] == "repmgr"], "repmgr must reach the witness"
    conf = (witness / "postgresql.conf").read_text(encoding="utf-8")
    assert "wal_level" not in conf
    assert "max_wal_senders" not in conf
    assert "priority=" not in (witness / "repmgr.conf").read_text(encoding="utf-8")
    assert "PGDOCK_ROLE=witness" in lines(witness / "env")


def test_roles_ids_and_priorities(golden_repo: Path) -> None:
    nodes = golden_repo / "nodes"
    expected = {
        "g1": ("primary", 1, "200"),
        "g2": ("standby", 2, "100"),
        "g3": ("standby", 3, "0"),
        "gw": ("witness", 1000, None),
    }
    for name, (role, node_id, priority) in expected.items():
        assert f"PGDOCK_ROLE={role}" in lines(nodes / name / "env")
        repmgr = lines(nodes / name / "repmgr.conf")
        assert f"node_id={node_id}" in repmgr
        assert f"node_name='{name}'" in repmgr
        if priority is not None:
            assert f"priority={priority}" in repmgr
    assert "port = 5433" in lines(nodes / "g3" / "postgresql.conf")
    assert "PGDOCK_SSH_PORT=2223" in lines(nodes / "g3" / "env")
    assert "location='dc2'" in lines(nodes / "g3" / "repmgr.conf")


def test_parameters_are_quoted_by_type(golden_repo: Path) -> None:
    conf = golden_repo / "nodes" / "g1" / "postgresql.conf"
    assert setting(conf, "work_mem") == "'16MB'"
    assert setting(conf, "max_connections") == "200"
    assert setting(conf, "track_io_timing") == "on"
    assert setting(conf, "log_hostname") == "off"
    assert setting(conf, "random_page_cost") == "1.1"
    assert setting(conf, "search_path") == "'\"$user\", public'"
    assert setting(golden_repo / "nodes" / "gw" / "postgresql.conf", "work_mem") == "'16MB'"


def test_parameter_values_are_escaped(tmp_path: Path) -> None:
    text = MINIMAL_SPEC.replace(
        "  version: 17\n",
        "  version: 17\n  parameters:\n"
        '    application_name: "it\'s"\n'
        "    log_line_prefix: 'copy \\\\x'\n"
        "    fsync: true\n",
    )
    out = tmp_path / "repo"
    render_spec(text, out)
    conf = out / "nodes" / "n1" / "postgresql.conf"
    assert setting(conf, "application_name") == "'it''s'"
    assert setting(conf, "log_line_prefix") == "'copy \\\\\\\\x'"
    assert setting(conf, "fsync") == "on"


def test_parameters_come_last_so_they_win(golden_repo: Path) -> None:
    text = (golden_repo / "nodes" / "g1" / "postgresql.conf").read_text(encoding="utf-8")
    assert text.index("work_mem") > text.index("timezone = 'UTC'")


# ------------------------------------------------------------------ TLS and SSH


def test_node_certificates_carry_the_address_and_verify(golden_repo: Path) -> None:
    import ipaddress

    tls = golden_repo / "secrets" / "tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    parsed = spec.parse((golden_repo / "cluster.yaml").read_text(encoding="utf-8"))
    for node in parsed.members:
        cert = x509.load_pem_x509_certificate((tls / f"{node.name}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address(node.address) in san.get_values_for_type(x509.IPAddress), node.name
        assert node.name in san.get_values_for_type(x509.DNSName)
        key = (tls / f"{node.name}.key").read_bytes()
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        assert (
            load_pem_private_key(key, None).public_key().public_numbers()
            == cert.public_key().public_numbers()
        )


def test_node_certificate_reissued_when_its_address_changes(tmp_path: Path, shop_spec_text: str) -> None:
    out = tmp_path / "repo"
    render_spec(shop_spec_text, out)
    tls = out / "secrets" / "tls"
    n1, n2, ca = (tls / "n1.crt").read_bytes(), (tls / "n2.crt").read_bytes(), (tls / "ca.crt").read_bytes()
    render_spec(shop_spec_text.replace("10.0.0.2", "10.0.0.22"), out, force=True)
    assert (tls / "n1.crt").read_bytes() == n1
    assert (tls / "ca.crt").read_bytes() == ca
    new_n2 = x509.load_pem_x509_certificate((tls / "n2.crt").read_bytes())
    assert (tls / "n2.crt").read_bytes() != n2
    san = new_n2.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.0.0.22"]
    new_n2.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_known_hosts_pins_every_member(golden_repo: Path) -> None:
    known = (golden_repo / "secrets" / "ssh" / "known_hosts").read_text(encoding="utf-8").splitlines()
    parsed = spec.parse((golden_repo / "cluster.yaml").read_text(encoding="utf-8"))
    assert len(known) == len(parsed.members)
    host_keys = golden_repo / "secrets" / "ssh" / "host_keys"
    for node, line in zip(parsed.members, known, strict=True):
        hosts, algo, key = line.split(" ")
        assert f"[{node.address}]:{node.ssh_port}" in hosts.split(",")
        public = (host_keys / f"{node.name}_ed25519.pub").read_text().split()
        assert [algo, key] == public[:2]
    assert "[10.1.0.3]:2223" in known[2]


def test_certificates_tolerate_a_node_clock_a_day_behind(shop_repo: Path) -> None:
    """A fresh certificate must already be valid on a node whose clock lags the operator's machine."""
    import datetime as dt

    latest = dt.datetime.now(dt.UTC) - dt.timedelta(hours=23)
    for name in ("ca", "n1", "w1"):
        cert = x509.load_pem_x509_certificate((shop_repo / "secrets" / "tls" / f"{name}.crt").read_bytes())
        assert cert.not_valid_before_utc <= latest, name


# ------------------------------------------------------------------ what each node receives


def test_each_node_gets_only_the_secrets_its_role_uses(shop_repo: Path) -> None:
    """The witness runs no replication, archiving or failover IP and never opens an ssh connection (it is
    only reached, by a switchover's --siblings-follow): no replication or app password, no client key, no
    Hetzner or S3 credentials. Data nodes get everything."""
    from pgdock_gen.credentials import node_bundle

    secrets = shop_repo / "secrets"
    for name in ("hetzner.env", "webhook.env", "s3.env", "s3-ca.crt"):
        (secrets / name).write_text(f"{name}\n")
    parsed = spec.parse((shop_repo / "cluster.yaml").read_text(encoding="utf-8"))
    tls_and_host = {"tls/ca.crt", "tls/node.crt", "tls/node.key", "ssh/host_ed25519", "ssh/id_ed25519.pub"}
    assert set(node_bundle(parsed, parsed.member("w1"), secrets)) == tls_and_host | {
        "passwords/superuser", "passwords/repmgr", "webhook.env"}
    assert set(node_bundle(parsed, parsed.member("n1"), secrets)) == tls_and_host | {
        *(f"passwords/{role}" for role in PASSWORDS), "ssh/id_ed25519", "ssh/known_hosts",
        "hetzner.env", "webhook.env", "s3.env", "s3-ca.crt"}


def test_base_image_drops_the_snakeoil_key_and_certificate() -> None:
    """ssl-cert's self-signed pair comes with PostgreSQL's packages; pgdock never uses it, and its
    certificate, hashed into /etc/ssl/certs, would be trusted by anything using OpenSSL's default CA path."""
    from .conftest import REPO_ROOT

    dockerfile = (REPO_ROOT / "base-image" / "Dockerfile").read_text(encoding="utf-8")
    removed = " ".join(re.findall(r"\brm -[rf]+ ([^&]*)", dockerfile)).split()  # up to the next &&
    assert "/etc/ssl/private/ssl-cert-snakeoil.key" in removed
    assert "/etc/ssl/certs/ssl-cert-snakeoil.pem" in removed
    assert "find /etc/ssl/certs -xtype l -delete" in dockerfile  # its hash link, left dangling


# ------------------------------------------------------------------ values reaching commands and config strings


def pg_unquote(value: str) -> str:
    """The string a quoted postgresql.conf value stands for."""
    assert value.startswith("'") and value.endswith("'"), value
    return re.sub(r"''|\\(.)", lambda m: "'" if m.group(0) == "''" else m.group(1), value[1:-1])


def test_archive_command_carries_no_spec_value_even_for_hostile_values(golden_spec_text: str) -> None:
    """The schema refuses such values; should one ever get through, it reaches barman-cloud from the env
    file as one argument (archive.py passes a list, no shell), never through archive_command's shell."""
    from dataclasses import replace

    parsed = spec.parse(golden_spec_text)
    assert parsed.backup is not None
    hostile = replace(parsed.backup.s3, prefix="x';touch /tmp/pwned;#", endpoint="https://h/$(id)")
    parsed = replace(parsed, backup=replace(parsed.backup, s3=hostile))
    plan = render.plan(parsed, golden_spec_text)
    conf = plan["nodes/g1/postgresql.conf"].content.decode()
    (value,) = re.findall(r"^archive_command = (.*)$", conf, re.MULTILINE)
    assert pg_unquote(value) == "/usr/local/bin/pgdock-agent archive %p"
    env = plan["nodes/g1/env"].content.decode()
    assert "PGDOCK_BACKUP_URL=s3://golden-backups/x';touch /tmp/pwned;#\n" in env


def test_wal_is_bounded_by_max_wal_keep(tmp_path: Path, golden_repo: Path) -> None:
    """Issue 10, row 6: slots and the archive outage share one bound; wal_keep_size never exceeds it."""
    conf = golden_repo / "nodes" / "g1" / "postgresql.conf"
    assert setting(conf, "max_slot_wal_keep_size") == "'16384MB'"
    assert setting(conf, "wal_keep_size") == "'1024MB'"
    assert "PGDOCK_MAX_WAL_KEEP_MB=16384\n" in (golden_repo / "nodes" / "g1" / "env").read_text()
    out = tmp_path / "repo"
    render_spec(MINIMAL_SPEC.replace("  version: 17\n", "  version: 17\n  max_wal_keep: 256MB\n"), out)
    assert setting(out / "nodes" / "n1" / "postgresql.conf", "wal_keep_size") == "'64MB'"
    for bad in ("16 GB", "0MB", "1TB", "-1"):
        with pytest.raises(spec.SpecError, match="postgres.max_wal_keep"):
            spec.parse(MINIMAL_SPEC.replace("  version: 17\n", f"  version: 17\n  max_wal_keep: {bad!r}\n"))


def test_preload_libraries_are_merged_after_repmgr(tmp_path: Path) -> None:
    text = MINIMAL_SPEC.replace("  version: 17\n", "  version: 17\n  parameters:\n"
                                "    shared_preload_libraries: 'pg_stat_statements, repmgr'\n"
                                "    max_wal_senders: 40\n")
    out = tmp_path / "repo"
    render_spec(text, out)
    conf = out / "nodes" / "n1" / "postgresql.conf"
    assert setting(conf, "shared_preload_libraries") == "'repmgr,pg_stat_statements'"
    assert conf.read_text(encoding="utf-8").count("shared_preload_libraries") == 1
    assert setting(conf, "max_wal_senders") == "40"


def test_golden_preload_libraries_are_repmgr_alone(golden_repo: Path) -> None:
    assert setting(golden_repo / "nodes" / "g1" / "postgresql.conf", "shared_preload_libraries") == "'repmgr'"


def test_ipv6_members_in_pg_hba_repmgr_and_readme(tmp_path: Path) -> None:
    text = MINIMAL_SPEC.replace("10.0.0.1", "'fd00::1'") + "  - name: n2\n    address: db2.example.com\n"
    out = tmp_path / "repo"
    render_spec(text, out)
    hba = (out / "nodes" / "n1" / "pg_hba.conf").read_text(encoding="utf-8")
    assert re.search(r"^hostssl replication  replicator        fd00::1/128 +scram-sha-256$", hba, re.MULTILINE)
    assert re.search(r"^hostssl replication  replicator        db2\.example\.com +scram-sha-256$", hba,
                     re.MULTILINE)
    conninfo = setting(out / "nodes" / "n1" / "repmgr.conf", "conninfo")
    assert conninfo.startswith("'host=fd00::1 port=5432 "), conninfo
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "postgresql://app@[fd00::1]:5432,db2.example.com:5432/app?" in readme


def first_hba_match(hba: str, database: str, user: str, source: str) -> str:
    """The METHOD of the first pg_hba line a TLS connection from `source` matches (PostgreSQL's own rule:
    first match wins; "" when none matches, which PostgreSQL also refuses before any password)."""
    import ipaddress

    for line in hba.splitlines():
        fields = line.split()
        if not fields or fields[0] not in ("host", "hostssl"):
            continue
        _, databases, users, address, method = fields[:5]
        if database not in databases.split(",") and not (databases == "all" and database != "replication"):
            continue
        if user not in users.split(",") and users != "all":
            continue
        if ipaddress.ip_address(source) in ipaddress.ip_network(address):
            return method
    return ""


def test_cluster_roles_only_from_members_others_refused_before_a_password(golden_repo: Path) -> None:
    """Issue 10, row 4: postgres, replicator and repmgr from a stranger meet `reject` (or no line) — never
    scram, which would let them try passwords; applications still log in with scram from anywhere."""
    hba = (golden_repo / "nodes" / "g1" / "pg_hba.conf").read_text()
    stranger = "203.0.113.7"
    for database, user in (("app", "postgres"), ("postgres", "postgres"), ("orders", "replicator"),
                           ("replication", "replicator"), ("repmgr", "repmgr"), ("orders", "repmgr")):
        assert first_hba_match(hba, database, user, stranger) in ("reject", ""), (database, user)
    assert first_hba_match(hba, "orders", "postgres", "10.1.0.2") == "scram-sha-256"
    assert first_hba_match(hba, "replication", "replicator", "10.1.0.3") == "scram-sha-256"
    assert first_hba_match(hba, "repmgr", "repmgr", "10.1.0.9") == "scram-sha-256"
    assert first_hba_match(hba, "orders", "orders_owner", stranger) == "scram-sha-256"
    assert first_hba_match(hba, "orders", "postgres", "10.1.0.9") == "reject"  # the witness runs no postgres client


def test_postgres_listens_on_the_node_address_and_loopback_only(golden_repo: Path) -> None:
    conf = (golden_repo / "nodes" / "g3" / "postgresql.conf").read_text()
    assert "listen_addresses = '10.1.0.3,localhost'" in conf
    assert "'*'" not in conf


def test_every_connection_verifies_the_server_name(golden_repo: Path) -> None:
    """Issue 10, row 3: verify-full wherever pgdock connects (repmgr, and the URI applications get)."""
    rendered = tree(golden_repo)
    assert not [name for name, data in rendered.items() if b"verify-ca" in data]
    repmgr_conf = (golden_repo / "nodes" / "g2" / "repmgr.conf").read_text()
    assert "sslmode=verify-full" in repmgr_conf
    assert "sslmode=verify-full" in (golden_repo / "README.md").read_text()


def test_containers_keep_only_the_privileges_they_use(golden_repo: Path) -> None:
    """Issue 10, row 5: no default capabilities, no privilege gain, a /dev/shm for PostgreSQL, rotated logs."""
    import yaml

    compose = yaml.safe_load((golden_repo / "nodes" / "g1" / "compose.yaml").read_text())
    postgres, backup = compose["services"]["postgres"], compose["services"]["backup"]
    assert postgres["cap_drop"] == ["ALL"]
    assert set(postgres["cap_add"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL", "SYS_CHROOT"}
    assert backup["cap_drop"] == ["ALL"] and "cap_add" not in backup and backup["user"] == "postgres"
    for service in (postgres, backup):
        assert service["security_opt"] == ["no-new-privileges:true"]
        assert service["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}
    assert postgres["shm_size"] == "256m"


def test_shm_size_comes_from_the_spec_and_is_checked(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    render_spec(MINIMAL_SPEC.replace("  version: 17\n", "  version: 17\n  shm_size: 1g\n"), out)
    assert "shm_size: 1g" in (out / "nodes" / "n1" / "compose.yaml").read_text()
    with pytest.raises(spec.SpecError, match="postgres.shm_size"):
        spec.parse(MINIMAL_SPEC.replace("  version: 17\n", "  version: 17\n  shm_size: 1g; rm -rf /\n"))


def test_rotation_writes_new_passwords_whole_and_reissues_certificates_under_the_same_ca(
        tmp_path: Path, shop_spec_text: str) -> None:
    from pgdock_gen import credentials

    out = tmp_path / "repo"
    render_spec(shop_spec_text, out)
    secrets, parsed = out / "secrets", spec.parse(shop_spec_text)
    old_app, old_cert = password(secrets, "app"), (secrets / "tls" / "n1.crt").read_bytes()
    credentials.write_password(secrets, "app", "fresh-value")
    credentials.reissue_node_certificates(parsed, secrets)
    assert password(secrets, "app") == "fresh-value" != old_app
    assert stat.S_IMODE((secrets / "passwords" / "app").stat().st_mode) == 0o600
    assert not list((secrets / "passwords").glob(".*"))
    ca = x509.load_pem_x509_certificate((secrets / "tls" / "ca.crt").read_bytes())
    for node in parsed.members:
        cert = x509.load_pem_x509_certificate((secrets / "tls" / f"{node.name}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
    assert (secrets / "tls" / "n1.crt").read_bytes() != old_cert


def test_rotate_needs_something_to_rotate(tmp_path: Path, shop_spec_text: str, run_cli) -> None:
    (tmp_path / "cluster.yaml").write_text(shop_spec_text)
    result = run_cli("rotate", "-f", tmp_path / "cluster.yaml")
    assert result.exit_code == 2 and "nothing to rotate" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ compose: logs and health


def test_every_service_rotates_its_log_and_has_a_healthcheck(golden_repo: Path) -> None:
    import yaml

    from pgdock_gen import contract

    services = 0
    for compose in sorted((golden_repo / "nodes").glob("*/compose.yaml")):
        for name, service in yaml.safe_load(compose.read_text(encoding="utf-8"))["services"].items():
            services += 1
            assert service["logging"] == {"driver": contract.LOG_DRIVER, "options": contract.LOG_OPTIONS}, name
            assert service["healthcheck"]["test"][0] == "CMD", name
            if name == "backup":
                assert service["healthcheck"]["test"] == ["CMD", "pgdock-backup", "health"]
    assert services == 4 + 3  # every member's postgres, every data node's backup sidecar
