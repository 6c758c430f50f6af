"""`status --watch` (issue 15): what one refresh shows, and the loop ending on Ctrl-C with the verdict."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from pgdock_gen import cluster, exits, watch

from .test_day2 import SPEC, healthy, row

AT = datetime(2026, 12, 3, 9, 30, 5, tzinfo=UTC)


def event(n: int, name: str = "repmgrd_start", ok: bool = True) -> dict:
    return {"time": f"2026-12-03T09:{n:02d}:00.000+00:00", "node": "n2", "event": name, "success": ok,
            "details": f"event number {n}"}


def text(renderable: object) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_refresh_shows_the_table_with_lag_and_only_the_newest_events() -> None:
    rows = [row("n1", "primary"), row("n2", lag_bytes=4096, lag_seconds=1.5), row("n3"), row("n4"),
            row("w", "witness")]
    shown = text(watch.view(SPEC, rows, [event(n) for n in range(12)], AT, last=3))
    assert all(name in shown for name in ("n1", "n2", "n3", "n4"))
    assert "4096" in shown and "1.5" in shown  # the lag columns
    assert "event number 11" in shown and "event number 9" in shown and "event number 8" not in shown
    assert "last 3 of 12 events" in shown
    assert "09:30:05 UTC" in shown and "Ctrl-C" in shown


def test_a_refresh_without_events_and_with_a_node_down() -> None:
    rows = [row("n1", "down", detail="unreachable"), *healthy()[1:]]
    shown = text(watch.view(SPEC, rows, [], AT))
    assert "last 0 of 0 events" in shown and "down" in shown


class Fake:
    """A running cluster whose primary goes down after the first look."""

    spec = SPEC

    def __init__(self) -> None:
        self.looks = 0

    def status(self) -> list[cluster.NodeStatus]:
        self.looks += 1
        return healthy() if self.looks == 1 else [row("n1", "down"), *healthy()[1:]]


def test_run_redraws_until_ctrl_c_and_exits_with_the_last_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch.events, "collect", lambda running, tail=None: [event(1)])
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    fake = Fake()
    code = watch.run(fake, sleep=sleep)  # type: ignore[arg-type]
    assert naps == [watch.INTERVAL_SECONDS] * 3 and fake.looks == 3
    assert code == cluster.verdict(SPEC, fake.status()).exit_code == exits.DOWN


def test_watch_and_json_do_not_mix(run_cli, tmp_path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: x\npostgres: {version: 17}\nnodes: [{name: n1, address: 10.0.0.1}]\n")
    result = run_cli("status", "-f", path, "--watch", "--json")
    assert result.exit_code == exits.USAGE and "--watch" in result.stderr
