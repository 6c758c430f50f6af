"""The health API's verdicts as tables (facts in, status code and reason out), and its Prometheus text."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from pgdock_agent import metrics
from pgdock_agent.health import Archive, Facts, LagBound, Replica, health, parse_lag, primary, replica

PRIMARY = Facts(node="n1", role="primary", answers=True, timeline=3, repmgrd=True)
STANDBY = Facts(node="n2", role="standby", answers=True, timeline=3, streaming=True, upstream="n1",
                lag_bytes=1000, lag_seconds=0.5, repmgrd=True)
WITNESS = Facts(node="w1", role="witness", answers=True, repmgrd=True)
DOWN = Facts(node="n3", role="down", answers=False)


@pytest.mark.parametrize(("facts", "code", "why"), [
    (PRIMARY, 200, "writable primary on timeline 3"),
    (replace(PRIMARY, paused=True), 200, "writable primary"),  # maintenance mode still takes writes
    (replace(PRIMARY, repmgrd=False), 200, "writable primary"),
    (replace(PRIMARY, fenced=True), 503, "fencing"),  # decided, PostgreSQL not yet stopped
    (replace(PRIMARY, held=True), 503, "stopped on purpose"),  # a switchover's repmgr stops it
    (replace(PRIMARY, bootstrapping=True), 503, "first start"),
    (replace(PRIMARY, answers=False, role="down"), 503, "does not answer"),
    (STANDBY, 503, "standby, not the primary"),
    (WITNESS, 503, "witness, not the primary"),  # never in recovery, never a primary
    (DOWN, 503, "does not answer"),
])
def test_primary(facts: Facts, code: int, why: str) -> None:
    verdict = primary(facts)
    assert (verdict.code, why in verdict.reason) == (code, True), verdict


@pytest.mark.parametrize(("facts", "bound", "code", "why"), [
    (STANDBY, None, 200, "streaming from n1"),
    (STANDBY, LagBound(1000), 200, "streaming"),
    (STANDBY, LagBound(999), 503, "over the bound of 999 bytes"),
    (STANDBY, LagBound(0.5, seconds=True), 200, "streaming"),
    (STANDBY, LagBound(0.1, seconds=True), 503, "over the bound of 0.1 s"),
    (replace(STANDBY, lag_bytes=None), LagBound(10**9), 503, "over the bound"),  # unknown is not within
    (replace(STANDBY, lag_bytes=None), None, 200, "streaming"),
    (replace(STANDBY, streaming=False, upstream=None), None, 503, "not streaming"),
    (replace(STANDBY, held=True), None, 503, "stopped on purpose"),
    (replace(STANDBY, bootstrapping=True), None, 503, "first start"),
    (PRIMARY, None, 503, "primary, not a standby"),
    (WITNESS, None, 503, "witness, not a standby"),
    (DOWN, None, 503, "does not answer"),
])
def test_replica(facts: Facts, bound: LagBound | None, code: int, why: str) -> None:
    verdict = replica(facts, bound)
    assert (verdict.code, why in verdict.reason) == (code, True), verdict


@pytest.mark.parametrize(("facts", "code"), [
    (PRIMARY, 200), (STANDBY, 200), (WITNESS, 200), (replace(PRIMARY, paused=True, repmgrd=False), 200),
    (DOWN, 503),
])
def test_health(facts: Facts, code: int) -> None:
    assert health(facts).code == code


@pytest.mark.parametrize(("text", "bound"), [
    ("0", LagBound(0)), ("1048576", LagBound(1048576)), ("16MB", LagBound(16 * 2**20)), ("1 kB", LagBound(1024)),
    ("2GB", LagBound(2 * 2**30)), ("100B", LagBound(100)), ("10s", LagBound(10, seconds=True)),
    ("1.5s", LagBound(1.5, seconds=True)), ("500ms", LagBound(0.5, seconds=True)),
])
def test_lag_bounds(text: str, bound: LagBound) -> None:
    assert parse_lag(text) == bound


@pytest.mark.parametrize("text", ["", "-1", "ten", "10 minutes", "1mb", "1e6", "1MB; drop"])
def test_bad_lag_bounds_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="use bytes"):
        parse_lag(text)


SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="(?:[^"\\\n]|\\.)*"(,[a-z_]+="(?:[^"\\\n]|\\.)*")*\})? '
                    r"(-?[0-9.e+-]+|NaN|[+-]Inf)$")


def _samples(text: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if not line.startswith("#")}


def test_the_exposition_is_well_formed_and_names_each_metric_once() -> None:
    facts = replace(PRIMARY, replicas=(Replica("n2", True, 10, 0.25), Replica('we"ird\\', False, None, None)),
                    archive=Archive(failing=True, pending=4, last_archived_age=61.5, gap=True), backup_age=3600.0,
                    events=(("pgdock_fenced", 2), ("standby_promote", 1)))
    text = metrics.exposition(facts)
    lines = text.splitlines()
    helps = [line.split()[2] for line in lines if line.startswith("# HELP")]
    assert len(helps) == len(set(helps))
    assert all(SAMPLE.match(line) for line in lines if not line.startswith("#")), text
    samples = _samples(text)
    assert samples["pgdock_writable_primary"] == "1"
    assert samples['pgdock_role{role="primary"}'] == "1" and samples['pgdock_role{role="standby"}'] == "0"
    assert samples['pgdock_replica_lag_bytes{replica="n2"}'] == "10"
    assert 'pgdock_replica_lag_bytes{replica="we\\"ird\\\\"}' not in samples  # unknown: left out
    assert samples['pgdock_replica_streaming{replica="we\\"ird\\\\"}'] == "0"
    assert samples["pgdock_wal_archive_failing"] == "1" and samples["pgdock_wal_archive_pending_files"] == "4"
    assert samples["pgdock_wal_last_archived_age_seconds"] == "61.5"
    assert samples["pgdock_last_base_backup_age_seconds"] == "3600.0"
    assert samples['pgdock_events_total{event="pgdock_fenced"}'] == "2"
    assert "# TYPE pgdock_events_total counter" in lines
    assert "pgdock_replication_lag_bytes" not in samples  # a primary has no lag of its own


def test_unknown_values_are_left_out_not_zero() -> None:
    samples = _samples(metrics.exposition(DOWN))
    assert samples["pgdock_postgres_up"] == "0" and samples['pgdock_role{role="down"}'] == "1"
    for absent in ("pgdock_timeline", "pgdock_replication_lag_seconds", "pgdock_wal_archive_failing",
                   "pgdock_last_base_backup_age_seconds"):
        assert absent not in samples
    standby = _samples(metrics.exposition(STANDBY))
    assert standby["pgdock_replication_lag_bytes"] == "1000" and standby["pgdock_streaming"] == "1"
    assert standby["pgdock_writable_primary"] == "0"


def test_metric_names_follow_prometheus_conventions() -> None:
    for metric in metrics.metrics(PRIMARY):
        assert metric.name.startswith("pgdock_")
        assert metric.name.endswith("_total") == (metric.kind == "counter")
