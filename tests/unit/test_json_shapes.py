"""The JSON documents of `--json`, built from plain rows (no Docker, no S3), and docs/json.md kept honest:
every key a command emits is documented under that command, and nothing documented is missing."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pgdock_gen import exits, reports
from pgdock_gen.backup import BaseBackup, Location
from pgdock_gen.cluster import NodeStatus
from pgdock_gen.contexts import ContextCheck
from pgdock_gen.deploy import Plan
from pgdock_gen.drill import Report
from pgdock_gen.spec import parse

from .conftest import EXAMPLES, REPO_ROOT

DOC = REPO_ROOT / "docs" / "json.md"
SPEC = parse((EXAMPLES / "shop.yaml").read_text(encoding="utf-8"))
ROWS = [
    NodeStatus("n1", "primary", None, 2, None, None, True, True, True, "running", "ok"),
    NodeStatus("n2", "standby", "n1", 2, 128, 0.5, True, True, True, "running"),
    NodeStatus("w1", "down", None, None, None, None, False, False, False, "container shop-w1 is not running"),
]
LOCATION = Location("bucket", "pg", "shop", None, "eu-central-1", False, None)
BACKUP = BaseBackup("20261125T170300", "DONE", "2026-11-25 17:03:00", "2026-11-25 17:04:00", 3_000_000,
                    "000000020000000000000005", "000000020000000000000006", "2", 17)
REPORT = Report(scenario="kill-primary", partition="-", old_primary="n1", new_primary="n2",
                writes_resumed_after_s=7.5, longest_write_gap_s=7.6, acked_commits=900, lost_commits=0,
                max_writable_primaries=1, recovered_after_s=20.0, rejoined_by="pg_rewind",
                phases={"detection": 5.0, "election": 5.5, "promotion": 6.0, "first_write": 7.5, "fenced": None})
DEPLOYMENT = {"version": "v2", "config": "abc", "spec": "def", "compose": "123", "time": "2026-11-25T17:03:00+00:00",
              "operator": "me@here", "rollback": True, "pending_restart": ["shared_buffers"]}
EVENT = {"time": "2026-11-25T17:03:00.123", "node_id": 2, "node": "n2", "event": "repmgrd_failover_promote",
         "success": True, "details": "promoted", "extra": "not documented, not emitted"}


def documents() -> dict[str, list[dict[str, Any]]]:
    """One or more sample documents per docs/json.md section, exercising every optional part."""
    plan = Plan(SPEC.member("n1"), "n1", "v3", "abc", False, ["install config v3", "reload"])
    return {
        "status": [reports.status(SPEC, ROWS)],
        "events": [reports.event(EVENT)],
        "backup list": [reports.backups(LOCATION, [BACKUP], ("000000020000000000000007",
                                                             dt.datetime(2026, 11, 25, 17, 5, tzinfo=dt.UTC))),
                        reports.backups(LOCATION, [], None)],
        "drill": [reports.drill(REPORT)],
        "history": [reports.history("n1", [DEPLOYMENT])],
        "contexts": [reports.contexts([ContextCheck("n1", "n1", "ssh://root@10.0.0.1", True, None, "27.0.1")])],
        "validate": [reports.validate(Path("cluster.yaml"), SPEC),
                     reports.validate(Path("bad.yaml"), None, ["bad.yaml:3: nodes: must not be empty"])],
        "deploy --dry-run": [reports.deploy_plan([plan])],
    }


def keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a document as docs/json.md writes it: `nodes[].name`, `phases.detection`."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found |= {path} | keys(inner, path)
    elif isinstance(value, list):
        for item in value:
            found |= keys(item, f"{prefix}[]")
    return found


def documented() -> dict[str, set[str]]:
    """The fields of each `## section` of docs/json.md (first column of its tables)."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), set())
        elif current is not None and (match := re.match(r"\|\s*`([^`]+)`\s*\|", line)):
            current.add(match.group(1))
    return sections


def test_every_emitted_key_is_documented_and_every_documented_key_emitted() -> None:
    docs = documented()
    samples = documents()
    assert set(docs) == set(samples)
    for section, found in samples.items():
        emitted = set().union(*(keys(doc) for doc in found))
        assert emitted - docs[section] == set(), f"{section}: undocumented keys"
        assert docs[section] - emitted == set(), f"{section}: documented but never emitted"


def test_every_document_carries_the_format_and_is_json() -> None:
    for found in documents().values():
        for doc in found:
            assert doc["format"] == reports.FORMAT == 1
            assert json.loads(reports.dumps(doc)) == doc


def test_status_document_has_the_verdict_and_every_column_of_the_table() -> None:
    doc = reports.status(SPEC, ROWS)
    assert (doc["state"], doc["exit_code"]) == ("degraded", exits.DEGRADED)
    assert doc["problems"] == ["w1 is down: container shop-w1 is not running"]
    assert doc["nodes"][1] == {"name": "n2", "role": "standby", "upstream": "n1", "timeline": 2, "lag_bytes": 128,
                               "lag_seconds": 0.5, "repmgrd": True, "reachable": True, "registered": True,
                               "detail": "running", "archiving": None, "location": "", "priority": 0,
                               "paused": False}
    assert doc["nodes"][0]["archiving"] == "ok"


def test_an_event_line_keeps_the_documented_keys_only_on_one_line() -> None:
    line = reports.dumps(reports.event(EVENT), lines=True)
    assert "\n" not in line
    assert json.loads(line) == {"format": 1, "time": "2026-11-25T17:03:00.123", "node": "n2", "node_id": 2,
                                "event": "repmgrd_failover_promote", "success": True, "details": "promoted"}
    unreadable = reports.event({"time": "", "node": "n3", "event": "unreachable", "success": False,
                                "details": "cannot read"})
    assert unreadable["time"] is None and unreadable["node_id"] is None and unreadable["success"] is False


def test_history_fills_in_what_older_records_lack() -> None:
    old = {k: DEPLOYMENT[k] for k in ("version", "config", "spec", "time", "operator")}
    entry = reports.history("n1", [old])["deployments"][0]
    assert entry["compose"] is None and entry["rollback"] is False and entry["pending_restart"] == []


def test_validate_document_of_a_valid_and_an_invalid_spec() -> None:
    good = reports.validate(Path("cluster.yaml"), SPEC)
    assert good["valid"] and good["problems"] == [] and good["data_nodes"] == 2 and good["witness"] == "w1"
    assert (good["pg_version"], good["replication_mode"]) == (17, "async")
    bad = reports.validate(Path("bad.yaml"), None, ["x"])
    assert not bad["valid"] and bad["problems"] == ["x"] and bad["cluster"] is None and bad["warnings"] == []


def test_backup_list_document() -> None:
    doc = reports.backups(LOCATION, [BACKUP], ("000000020000000000000007",
                                               dt.datetime(2026, 11, 25, 17, 5, tzinfo=dt.UTC)))
    assert doc["location"] == "s3://bucket/pg" and doc["backups"][0]["size"] == 3_000_000
    assert doc["newest_wal"] == {"name": "000000020000000000000007", "stored": "2026-11-25T17:05:00+00:00"}
    assert reports.backups(LOCATION, [], None)["newest_wal"] is None


@pytest.mark.parametrize("section", sorted(documented()))
def test_each_section_names_its_command(section: str) -> None:
    """Each shape says which command prints it, so a reader finds the doc from the command and back."""
    text = DOC.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1]
    assert f"pgdock-gen {section.split()[0]}" in text.split("|", 1)[0]
