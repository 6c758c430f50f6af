"""Every error pgdock reports to users, in one place.

Each carries the exit status the CLI uses, so commands never pick codes ad hoc:
2 for bad input (a spec, a flag, a path), 1 for an operation that failed.
"""

from __future__ import annotations


class PgdockError(Exception):
    """An error with a message meant for the user; the CLI prints it without a traceback."""

    exit_code = 1


class UsageError(PgdockError):
    """Bad input that the user must fix: exit status 2."""

    exit_code = 2


class SpecError(UsageError):
    """A cluster spec with one or more problems, each a line naming file, line and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class OutOfDate(PgdockError):
    """`render --check` found the rendered repo differs from its spec."""


class DockerError(PgdockError):
    """A docker or compose call failed; the message says which and why."""
