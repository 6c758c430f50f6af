"""Checks `backup.schedule` with croniter, the library the backup sidecar schedules with.

Validation and the sidecar must agree: an expression croniter refuses, or one that
never comes due (`0 3 31 2 *`, 31 February), would leave the cluster without
backups while `validate` said yes. So the check is croniter itself, pinned to the
major version the sidecar's Debian package has (2.x, which e.g. refuses ranges that
run backwards where later versions wrap them around), plus one rule of our own:
exactly five fields or a macro, because croniter reads a sixth field as seconds.
"""

from __future__ import annotations

import datetime as dt

from croniter import CroniterBadDateError, croniter

FIELDS = ("minute", "hour", "day of month", "month", "day of week")
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_PROBE_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""Any fixed start: croniter looks decades ahead (leap days included) before it calls a date impossible."""


def next_run(expression: str, after: dt.datetime) -> dt.datetime:
    """The first time after `after` the schedule comes due; raises ValueError (croniter's errors are ValueErrors)
    when it never does or is not an expression croniter reads. The one way pgdock turns a schedule into a time."""
    return croniter(expression, after).get_next(dt.datetime)


NEVER_DUE = "it never comes due (no such date, e.g. 31 February): no backup would ever run"


def _verdict(expression: str) -> str | None:
    """None when croniter finds the expression's next time; NEVER_DUE when it reads it but finds none; else
    croniter's reason for refusing it."""
    try:
        next_run(expression, _PROBE_START)
    except CroniterBadDateError:
        return NEVER_DUE
    except (ValueError, TypeError, KeyError) as exc:  # croniter's own errors derive from ValueError
        return str(exc).replace(f"[{expression.lower()}]", "").replace(f"[{expression}]", "").strip() or "refused"
    return None


def _culprit(fields: list[str]) -> str | None:
    """The first field croniter refuses on its own (the others set to `*`): croniter's messages do not say."""
    for index, (label, text) in enumerate(zip(FIELDS, fields, strict=True)):
        alone = ["*"] * len(FIELDS)
        alone[index] = text
        if _verdict(" ".join(alone)) not in (None, NEVER_DUE):
            return f"{label} field {text!r}"
    return None


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a usable backup schedule, or None when it is."""
    text = expression.strip()
    if text not in MACROS and len(text.split()) != 5:
        return f"needs 5 fields (minute hour day month weekday) or one of {', '.join(MACROS)}, got {text!r}"
    verdict = _verdict(text)
    if verdict in (None, NEVER_DUE):
        return verdict
    where = _culprit(text.split()) if text not in MACROS else None
    return f"croniter refuses {where or 'it'}: {verdict}"


GAP_SPAN = dt.timedelta(days=8 * 366)
"""How far ahead longest_gap looks: two leap cycles, so a schedule on 29 February shows its real gap."""
GAP_RUNS = 1000
"""At most this many runs are looked at: a schedule that runs often has found its longest gap long before."""


def longest_gap(expression: str) -> dt.timedelta:
    """The longest time between two consecutive runs of a usable schedule (cron_problem says None), from a fixed
    start over GAP_SPAN: how old the newest base backup may be just before the next one comes due. A schedule
    that comes due once or never in that span counts as GAP_SPAN."""
    end = _PROBE_START + GAP_SPAN
    runs = croniter(expression.strip(), _PROBE_START)
    previous, longest = runs.get_next(dt.datetime), dt.timedelta(0)
    for _ in range(GAP_RUNS):
        current = runs.get_next(dt.datetime)
        if current > end:
            break
        longest, previous = max(longest, current - previous), current
    return longest or GAP_SPAN
