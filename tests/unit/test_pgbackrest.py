"""backup.engine: pgbackrest — the spec's rules, the options each node gets, the repository read from S3,
and the agent's choices (which backup to restore, with what arguments, what config file). The e2e module
tests/e2e/test_backup_pgbackrest.py runs them against real PostgreSQL, pgBackRest and the lab's S3."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pgdock_agent import files as agent_files
from pgdock_agent import pgbackrest as agent

from pgdock_gen import contract, pgbackrest, render, spec
from pgdock_gen.errors import SpecError

from .conftest import MINIMAL_SPEC

BACKUP = """
backup:
  engine: pgbackrest
  s3: {bucket: shop-backups, prefix: /pg/shop/, endpoint: "https://s3.example.test:9000", path_style: true}
  retention_days: 9
  jobs: 3
"""


def with_backup(extra: str = BACKUP) -> spec.Spec:
    return spec.parse(MINIMAL_SPEC + extra, "cluster.yaml")


def test_pgbackrest_gets_the_stores_host_port_and_folder_and_zstd_by_default() -> None:
    parsed = with_backup()
    assert parsed.backup.compression == "zstd"
    found = pgbackrest.options(parsed)
    assert found["stanza"] == parsed.backup.server == parsed.cluster
    assert (found["repo1-s3-endpoint"], found["repo1-storage-port"]) == ("s3.example.test", "9000")
    assert found["repo1-path"] == "/pg/shop" and found["repo1-s3-uri-style"] == "path"
    assert (found["compress-type"], found["process-max"], found["repo1-retention-full"]) == ("zst", "3", "9")
    assert found["config"] == contract.PGBACKREST_CONFIG
    aws = pgbackrest.options(with_backup("backup:\n  engine: pgbackrest\n  s3: {bucket: bk1, region: eu-west-1}\n"))
    assert aws["repo1-s3-endpoint"] == "s3.eu-west-1.amazonaws.com" and "repo1-storage-port" not in aws
    assert aws["repo1-path"] == "/" and aws["repo1-s3-uri-style"] == "host"


def test_barman_stays_the_default_and_its_env_names_no_pgbackrest_option() -> None:
    text = MINIMAL_SPEC + "backup:\n  s3: {bucket: bk1}\n"
    parsed = spec.parse(text, "cluster.yaml")
    assert (parsed.backup.engine, parsed.backup.compression) == ("barman", "gzip")
    env = render.plan(parsed, text)[f"nodes/{parsed.primary.name}/env"].content.decode()
    assert f"{contract.ENV_BACKUP_ENGINE}=barman\n" in env and "PGBACKREST" not in env


@pytest.mark.parametrize(("backup", "field", "words"), [
    ("backup:\n  compression: zstd\n  s3: {bucket: bk1}\n", "backup.compression", "needs `engine: pgbackrest`"),
    ("backup:\n  engine: pgbackrest\n  s3: {bucket: bk1, endpoint: 'http://s3.local:9000'}\n", "backup.s3.endpoint",
     "https://HOST[:PORT]"),
    ("backup:\n  engine: pgbackrest\n  s3: {bucket: bk1, endpoint: 'https://s3.local/sub'}\n", "backup.s3.endpoint",
     "without a path"),
    ("backup:\n  engine: restic\n  s3: {bucket: bk1}\n", "backup.engine", "barman"),
])
def test_what_an_engine_cannot_do_is_refused_naming_the_field(backup: str, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        spec.parse(MINIMAL_SPEC + backup, "cluster.yaml")
    assert len(info.value.problems) == 1 and field in info.value.problems[0] and words in info.value.problems[0]


def test_each_data_node_env_carries_the_options_and_no_key(tmp_path: Path) -> None:
    text = MINIMAL_SPEC + BACKUP
    parsed = spec.parse(text, "cluster.yaml")
    render.write(parsed, render.plan(parsed, text), tmp_path / "repo")
    (tmp_path / "repo" / "secrets" / "s3.env").write_text("AWS_ACCESS_KEY_ID=AKIA1\nAWS_SECRET_ACCESS_KEY=s3cr3t\n")
    env = (tmp_path / "repo" / "nodes" / parsed.primary.name / "env").read_text()
    assert f"{contract.ENV_BACKUP_ENGINE}=pgbackrest\n" in env
    assert f"PGBACKREST_STANZA={parsed.cluster}\n" in env and "PGBACKREST_REPO1_S3_ENDPOINT=s3.example.test\n" in env
    assert f"PGBACKREST_CONFIG={contract.PGBACKREST_CONFIG}\n" in env
    assert f"PGBACKREST_PG1_PORT={parsed.primary.port}\n" in env
    assert "KEY" not in env.replace("PGBACKREST_REPO1_S3_KEY", "")  # no key option, and no key value
    assert "s3cr3t" not in env
    # pgBackRest's backups refuse an archive_command that does not contain "pgbackrest"
    conf = (tmp_path / "repo" / "nodes" / parsed.primary.name / "postgresql.conf").read_text()
    assert "archive_command = '/usr/local/bin/pgdock-agent archive %p pgbackrest'" in conf


def test_the_config_file_holds_the_keys_and_the_stores_ca() -> None:
    text = agent_files.pgbackrest_config({"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
                                          "AWS_SESSION_TOKEN": ""}, with_ca=True)
    assert text.splitlines() == ["[global]", "repo1-s3-key=AKIA1", "repo1-s3-key-secret=s3cr3t",
                                 f"repo1-storage-ca-file={contract.SECRETS / contract.SECRET_S3_CA}"]
    assert "token" not in agent_files.pgbackrest_config({"AWS_SESSION_TOKEN": ""}, with_ca=False)


BACKUP_INFO = """[backrest]
backrest-format=5
backrest-version="2.55.1"

[backup:current]
20261208-030000F={"backrest-format":5,"backrest-version":"2.55.1","backup-archive-start":"000000010000000000000004","backup-archive-stop":"000000010000000000000004","backup-info-repo-delta":7549747,"backup-info-repo-size":7549747,"backup-info-size":38797312,"backup-info-size-delta":38797312,"backup-timestamp-start":1796698800,"backup-timestamp-stop":1796698802,"backup-type":"full","db-id":1,"option-archive-check":true,"option-archive-copy":false,"option-backup-standby":false,"option-checksum-page":true,"option-compress":true,"option-hardlink":false,"option-online":true}
20261208-040000F={"backrest-format":5,"backrest-version":"2.55.1","backup-archive-start":"00000002000000000000000A","backup-archive-stop":"00000002000000000000000B","backup-error":true,"backup-info-repo-size":100,"backup-timestamp-start":1796702400,"backup-timestamp-stop":1796702410,"backup-type":"full","db-id":1}

[db]
db-catalog-version=202406281
db-control-version=1700
db-id=1
db-system-id=7714984438539190308
db-version="17"

[db:history]
1={"db-catalog-version":202406281,"db-control-version":1700,"db-system-id":7714984438539190308,"db-version":"17"}

[backrest]
backrest-checksum="f17058ca3df69b63b1cc579a2781036b197955ff"
"""
"""The shape pgBackRest 2.55 writes (its [backrest] section twice: the checksum comes last)."""


def test_backup_info_becomes_pgdocks_backup_list() -> None:
    first, failed = pgbackrest.parse_backup_info(BACKUP_INFO)
    assert first == {"id": "20261208-030000F", "status": "DONE", "begin_time": "2026-12-08T03:00:00+00:00",
                     "end_time": "2026-12-08T03:00:02+00:00", "size": 7549747,
                     "begin_wal": "000000010000000000000004", "end_wal": "000000010000000000000004",
                     "timeline": "1", "pg_major": 17}
    assert (failed["status"], failed["timeline"]) == ("FAILED", "2")
    assert pgbackrest.parse_backup_info("") == []


@pytest.mark.parametrize(("key", "segment"), [
    ("pg/archive/shop/17-1/0000000100000000/000000010000000000000004-" + "a" * 40 + ".zst",
     "000000010000000000000004"),
    ("pg/archive/shop/17-1/0000000100000000/000000010000000000000004-" + "a" * 40, "000000010000000000000004"),
    ("pg/archive/shop/17-1/00000002.history", None),
    ("pg/archive/shop/17-1/0000000100000000/000000010000000000000004.00000028.backup", None),
    ("pg/archive/shop/17-1/0000000100000000/000000010000000000000004.partial-" + "a" * 40 + ".zst", None),
    ("pg/archive/shop/archive.info", None),
])
def test_only_wal_segments_count_as_archived_wal(key: str, segment: str | None) -> None:
    assert pgbackrest.segment_name(key) == segment


INFO_JSON = json.dumps([{"name": "shop", "backup": [
    {"label": "20261208-030000F", "timestamp": {"start": 1796698800, "stop": 1796698802}},
    {"label": "20261208-040000F", "timestamp": {"start": 1796702400, "stop": 1796702410}, "error": True},
    {"label": "20261208-050000F", "timestamp": {"start": 1796706000, "stop": 1796706005}},
]}])


@pytest.mark.parametrize(("target", "chosen"), [
    ("latest", "20261208-050000F"),
    ("2026-12-08 04:59:00+00:00", "20261208-030000F"),  # the failed 04:00 backup is never chosen
    ("2026-12-08 05:00:05+00:00", "20261208-050000F"),
    ("2026-12-08 03:00:01+00:00", None),  # nothing had ended yet
])
def test_the_restore_takes_the_newest_completed_backup_before_the_target(target: str, chosen: str | None) -> None:
    assert agent.choose(INFO_JSON, target) == chosen


def test_restore_arguments_replay_to_the_target_in_utc_then_promote() -> None:
    assert agent.restore_args("L", "latest", "4") == ["restore", "--set=L", "--process-max=4",
                                                      "--target-timeline=latest"]
    timed = agent.restore_args("L", "2026-12-08T06:30:00.250000+01:00", "2")
    assert timed[-3:] == ["--type=time", "--target=2026-12-08 05:30:00.250000+00", "--target-action=promote"]


@pytest.fixture
def fake_pgbackrest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pgbackrest` on PATH that logs its arguments and refuses archive-push and backup until stanza-create
    ran, as pgBackRest does (its error names archive.info on a line of its own)."""
    log = tmp_path / "calls"
    script = tmp_path / "pgbackrest"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  stanza-create) touch {tmp_path}/stanza; exit 0;;
  archive-push|backup) [ -e {tmp_path}/stanza ] && exit 0
     printf '%s\n' "P00  ERROR: [103]: unable to find a valid repository:" \
       "      repo1: [FileMissingError] unable to load info file '/pg/archive/shop/archive.info'" >&2
     exit 103;;
esac
exit 1
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return log


def test_the_first_push_of_a_new_stanza_creates_it_then_stores_the_file(fake_pgbackrest: Path) -> None:
    assert agent.push("pg_wal/000000010000000000000001") is None
    assert fake_pgbackrest.read_text().splitlines() == ["archive-push pg_wal/000000010000000000000001",
                                                        "stanza-create", "archive-push pg_wal/000000010000000000000001"]
    assert agent.push("pg_wal/000000010000000000000002") is None  # no second stanza-create
    assert fake_pgbackrest.read_text().count("stanza-create") == 1


def test_a_backup_before_any_archived_wal_creates_the_stanza_too(fake_pgbackrest: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> subprocess.CompletedProcess:
        calls.append(argv)
        return subprocess.run(argv, capture_output=True, text=True)

    assert agent.with_stanza("backup", "--type=full", runner=runner) is None
    assert calls == [["pgbackrest", "backup", "--type=full"], ["pgbackrest", "stanza-create"],
                     ["pgbackrest", "backup", "--type=full"]]


def test_a_failing_command_raises_with_pgbackrests_error_line(fake_pgbackrest: Path) -> None:
    with pytest.raises(RuntimeError, match=r"pgbackrest expire failed: exit 1"):
        agent.run("expire")
    done = subprocess.CompletedProcess([], 103, "", (
        "INFO: x\n2026-12-08 P00  ERROR: [103]: unable to find a valid repository:\n"
        "          repo1: [FileMissingError] unable to load info file '/pg/archive/c/archive.info'\n"
        "          HINT: has a stanza-create been performed?\n"))
    assert agent.error_of(done) == ("2026-12-08 P00  ERROR: [103]: unable to find a valid repository: / repo1: "
                                    "[FileMissingError] unable to load info file '/pg/archive/c/archive.info'")


def test_archive_command_naming_pgbackrest_pushes_with_it_under_pgdocks_bound(
        fake_pgbackrest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pgdock-agent archive %p pgbackrest` stores through pgBackRest (never barman-cloud), and an outage
    past postgres.max_wal_keep gives the file up with the gap recorded, as with barman."""
    from pgdock_agent import archive, cloudwal, events
    from pgdock_agent import contract as agent_contract

    pg_wal = tmp_path / "data" / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    monkeypatch.setattr(cloudwal, "push", lambda paths: pytest.fail("barman-cloud used"))
    monkeypatch.setattr(agent_contract, "PGDATA", tmp_path / "data")
    monkeypatch.setattr(agent_contract, "ARCHIVE_GAP", tmp_path / "archive-gap.json")
    monkeypatch.setattr(events, "EVENTS", tmp_path / "events.jsonl")
    monkeypatch.setattr(events, "HOOKS", [])
    monkeypatch.setattr(archive, "log", lambda message: None)
    monkeypatch.setenv(contract.ENV_MAX_WAL_KEEP_MB, "1")
    (pg_wal / "000000010000000000000001").write_bytes(b"\0" * 600_000)
    assert archive.archive("pg_wal/000000010000000000000001", "pgbackrest") == 0
    assert fake_pgbackrest.read_text().splitlines()[-1] == "archive-push pg_wal/000000010000000000000001"
    (tmp_path / "stanza").unlink()  # from now on every push fails, and stanza-create cannot help: an outage
    monkeypatch.setattr(agent, "MISSING_STANZA", "never said")
    assert archive.archive("pg_wal/000000010000000000000001", "pgbackrest") == 1  # within the bound: retried
    (pg_wal / "000000010000000000000002").write_bytes(b"\0" * 600_000)
    assert archive.archive("pg_wal/000000010000000000000001", "pgbackrest") == 0  # past it: given up
    assert (tmp_path / "archive-gap.json").exists()
