"""`pgdock-agent base-backup ARGS`: barman-cloud-backup (same arguments), gzip at pgdock's level.

barman-cloud-backup writes its tar through Python's tarfile, whose gzip level is 9, and offers no option
to change it; at level 9 a base backup ran at one core's 12 MB/s (contract.GZIP_LEVEL has the figures).
The one place barman opens that tar is `barman.cloud.TarFileIgnoringTruncate.open`; this launcher hands it
the level and then runs barman-cloud-backup's own main, so everything else (the backup label, parallel
uploads, backup.info) stays barman's. Were that class renamed in a barman release, backups would stop at
once (AttributeError) rather than go on at level 9 unnoticed; the backup e2e tests would show it.
"""

from __future__ import annotations

import inspect
import tarfile
from typing import Any

from . import contract


def with_level(opener: Any, level: int) -> Any:
    """tarfile's open, giving gzip streams `level` unless the caller chose one."""

    def open_at_level(*args: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("mode", "")).endswith("|gz"):
            kwargs.setdefault("compresslevel", level)
        return opener(*args, **kwargs)

    return staticmethod(open_at_level)


def main(args: list[str]) -> None:
    from barman import cloud
    from barman.clients import cloud_backup

    # Python 3.12 gave tarfile's stream mode its compresslevel; 3.11 (bookworm, PostgreSQL 15) keeps 9
    if "compresslevel" in inspect.signature(tarfile._Stream.__init__).parameters:  # noqa: SLF001 - see above
        cloud.TarFileIgnoringTruncate.open = with_level(cloud.TarFileIgnoringTruncate.open, contract.GZIP_LEVEL)
    cloud_backup.main(args)
