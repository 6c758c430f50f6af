"""Checks five-field cron expressions (`backup.schedule`).

Written here rather than taken from croniter: we only need to reject a bad field
with a precise reason at validation time, and croniter's error messages do not
name the field; the backup image's scheduler does the actual timing.
"""

from __future__ import annotations

_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _value(text: str, lo: int, hi: int, names: dict[str, int]) -> int:
    value = names.get(text.lower()) if not text.isdigit() else int(text)
    if value is None or not lo <= value <= hi:
        raise ValueError(f"{text!r} is not in {lo}-{hi}")
    return value


def _check_field(field: str, lo: int, hi: int, names: dict[str, int]) -> None:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ValueError(f"step {step!r} must be a positive number")
        if base == "*":
            continue
        start, _, end = base.partition("-")
        first = _value(start, lo, hi, names)
        if end and _value(end, lo, hi, names) < first:
            raise ValueError(f"range {base!r} runs backwards")


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a valid cron schedule, or None when it is."""
    if expression.strip() in _MACROS:
        return None
    fields = expression.split()
    if len(fields) != 5:
        return f"needs 5 fields (minute hour day month weekday), got {len(fields)}"
    for text, (label, lo, hi, names) in zip(fields, _FIELDS, strict=True):
        try:
            _check_field(text, lo, hi, names)
        except ValueError as exc:
            return f"{label} field {text!r}: {exc}"
    return None
