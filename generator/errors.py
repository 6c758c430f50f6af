"""Every error pgdock reports to users, in one place.

Each carries the exit status the CLI uses, so commands never pick codes ad hoc:
2 for bad input (a spec, a flag, a path), 1 for an operation that failed.
"""

from __future__ import annotations

import errno

from . import exits


class PgdockError(Exception):
    """An error with a message meant for the user; the CLI prints it without a traceback."""

    exit_code = exits.FAILED


class UsageError(PgdockError):
    """Bad input that the user must fix: exit status 2."""

    exit_code = exits.USAGE


class SpecError(UsageError):
    """A cluster spec with one or more problems, each a line naming file, line and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class OutOfDate(PgdockError):
    """`render --check` found the rendered repo differs from its spec."""


class DockerError(PgdockError):
    """A docker or compose call failed; the message says which and why."""


_PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EROFS,
                errno.ENAMETOOLONG, errno.ELOOP}
"""A path the user gave that cannot be used: theirs to fix (exit 2). Other OSErrors (a full disk, an I/O
error) are failures (exit 1)."""


def user_error(exc: PgdockError | OSError) -> PgdockError:
    """The error to show: a PgdockError as it is; a file operation that failed where no command expected it
    as one line naming the path and why."""
    if isinstance(exc, PgdockError):
        return exc
    where = f"{exc.filename}: " if exc.filename else ""
    kind = UsageError if exc.errno in _PATH_ERRNOS else PgdockError
    return kind(f"{where}{exc.strerror or exc}")
