"""The backup sidecar's scheduler (backup-image/pgdock_backup.py), imported as the image runs it.

A schedule croniter cannot use must give one clear log line and an idle, unhealthy
sidecar, not a restart loop of tracebacks; the heartbeat behind the healthcheck
must go on while the scheduler waits.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pgdock_gen import contract

from .conftest import REPO_ROOT


class Stop(Exception):
    """Ends the scheduler's endless loop from inside a test's fake sleep."""


@pytest.fixture
def sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("pgdock_backup", REPO_ROOT / "backup-image" / "pgdock_backup.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HEARTBEAT", tmp_path / "heartbeat")
    yield module
    sys.modules.pop("pgdock_backup", None)


@pytest.mark.parametrize("schedule", ["0 3 31 2 *", "61 * * * *", "not a schedule", "0 5-3 * * *"])
def test_bad_schedule_logs_one_clear_line_and_idles_unhealthy(
    sidecar: ModuleType, schedule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sidecar.HEARTBEAT.touch()  # left over from before a restart: must not vouch for this run
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise Stop

    with pytest.raises(Stop):
        sidecar.scheduler(schedule, sleep=sleep)
    log = capsys.readouterr().err
    assert "Traceback" not in log
    problem = [line for line in log.splitlines() if "cannot be used" in line]
    assert len(problem) == 1, log
    assert f"backup.schedule {schedule!r}" in problem[0]
    assert naps == [sidecar.IDLE_SECONDS] * 3, "it idles instead of exiting (a restart loop) or spinning"
    assert not sidecar.HEARTBEAT.exists()
    assert sidecar.health() == 1


def test_waiting_keeps_the_heartbeat_fresh(sidecar: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        raise Stop

    with pytest.raises(Stop):
        sidecar.scheduler("0 3 * * *", sleep=sleep)
    assert sidecar.HEARTBEAT.exists(), "beats before the first wait"
    assert naps and naps[0] <= contract.BACKUP_HEARTBEAT_SECONDS
    assert sidecar.health() == 0


def test_next_due_uses_croniter(sidecar: ModuleType) -> None:
    start = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert sidecar.next_due("0 3 * * *", start) == dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC)
    with pytest.raises(sidecar.BadSchedule, match="never|failed to find"):
        sidecar.next_due("0 3 31 2 *", start)


@pytest.mark.parametrize(
    "mtime, now, healthy",
    [
        (None, 1000.0, False),
        (1000.0, 1000.0, True),
        (1000.0, 1000.0 + contract.BACKUP_STALE_SECONDS, True),
        (1000.0, 1000.0 + contract.BACKUP_STALE_SECONDS + 1, False),
    ],
)
def test_heartbeat_freshness(sidecar: ModuleType, mtime: float | None, now: float, healthy: bool) -> None:
    assert sidecar.fresh(mtime, now) is healthy


def test_health_command_needs_no_settings(sidecar: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The healthcheck runs with the container's env but must not write S3 config or need PostgreSQL."""
    monkeypatch.delenv(contract.ENV_BACKUP_SCHEDULE, raising=False)
    assert sidecar.main(["health"]) == 1
    sidecar.beat()
    assert sidecar.main(["health"]) == 0


def test_long_commands_keep_beating(sidecar: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidecar.contract, "BACKUP_HEARTBEAT_SECONDS", 0.05)
    assert sidecar.run([sys.executable, "-c", "import time; time.sleep(0.3); print('done')"]) == "done"
    assert sidecar.HEARTBEAT.exists()
    with pytest.raises(RuntimeError, match="failed"):
        sidecar.run([sys.executable, "-c", "import sys; sys.exit('ERROR: no')"])


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * * *", "@daily", "0 0 29 2 *", "0 3 L * *", "0 3 31 2 *", "61 * * * *", "0 5-3 * * *", "H 3 * * *",
     "0 3 * * xyz", "*/0 * * * *"],
)
def test_validate_accepts_exactly_what_the_sidecar_can_schedule(sidecar: ModuleType, schedule: str) -> None:
    from pgdock_gen.cron import cron_problem

    try:
        sidecar.next_due(schedule, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        schedulable = True
    except sidecar.BadSchedule:
        schedulable = False
    assert (cron_problem(schedule) is None) is schedulable
