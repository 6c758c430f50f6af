"""barman-cloud's WAL upload and download used as a library: a batch of files in parallel threads of one
process (see walfiles.py for why). The arguments go through barman-cloud's own parsers, so the settings
mean what they mean on its command line (endpoint, profile, compression).

barman and boto3 are imported inside the functions: `pgdock-agent archive` answers files stored ahead
without them, in a few milliseconds.
"""

from __future__ import annotations

import gzip
import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from . import contract
from .node import env, log

TIMEOUT = 300
"""A store that accepts the connection and then stalls must not hold the archiver (or recovery) forever."""


def barman_cloud_args() -> list[str]:
    """The store's settings, as every barman-cloud command takes them."""
    endpoint = os.environ.get(contract.ENV_S3_ENDPOINT)
    return ["--cloud-provider", "aws-s3"] + (["--endpoint-url", endpoint] if endpoint else [])


def compression_args() -> list[str]:
    """backup.compression as barman-cloud's flag (none: no flag)."""
    return contract.COMPRESSION_FLAGS[os.environ.get(contract.ENV_BACKUP_COMPRESSION, contract.DEFAULT_COMPRESSION)]


FILES_PER_JOB = 4
"""A batch holds this many files per thread. A batch pays ~1 s of a core before its first byte moves (barman
and boto3 imported, a boto3 session per thread, ~0.15 s each), against ~0.05 s to compress and store a 16 MB
segment in the lab: batches must be several files deep to be worth it, and bounded, since the restore spool
holds one batch on disk (backup.jobs 4: 16 files, 256 MB)."""


def jobs() -> int:
    """backup.jobs: threads moving files at once."""
    return int(os.environ.get(contract.ENV_BACKUP_JOBS, contract.DEFAULT_BACKUP_JOBS))


def batch_size() -> int:
    """Files one archive or restore call moves."""
    return FILES_PER_JOB * jobs()


def _in_parallel(work: Callable[[str], None], items: list[str], threads: int) -> dict[str, str | None]:
    """item -> None when `work` succeeded, else why not. Past TIMEOUT the process ends (exit 1): threads
    stuck in a socket cannot be stopped, and PostgreSQL retries the file."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, len(items))))
    futures = {item: pool.submit(work, item) for item in items}
    _, pending = wait(futures.values(), timeout=TIMEOUT)
    if pending:
        log(f"moving {len(pending)} WAL file(s) took over {TIMEOUT} s; PostgreSQL retries them")
        os._exit(1)
    pool.shutdown()
    outcome: dict[str, str | None] = {}
    for item, future in futures.items():
        error = future.exception()
        outcome[item] = None if error is None else (str(error) or type(error).__name__)
    return outcome


def _threads_interface(config: object) -> Callable[[], object]:
    """A cloud interface per thread, made on first use: a download goes through a boto3 resource, which
    threads must not share."""
    from barman.cloud_providers import get_cloud_interface

    local = threading.local()

    def interface() -> object:
        if getattr(local, "interface", None) is None:
            local.interface = get_cloud_interface(config)
        return local.interface

    return interface


def _uploader() -> tuple[Any, type]:
    """barman-cloud's WAL uploader, gzip at contract.GZIP_LEVEL: its own compresses at level 9 (one 16 MB
    segment: ~0.5 s of a core instead of ~0.05 s, for the same size), with no option to change it."""
    from barman.clients import cloud_walarchive

    class GzipAtLevel(cloud_walarchive.CloudWalUploader):
        def retrieve_file_obj(self, wal_path: str) -> Any:
            if self.compression != "gzip":
                return super().retrieve_file_obj(wal_path)
            with open(wal_path, "rb") as wal:
                return io.BytesIO(gzip.compress(wal.read(), compresslevel=contract.GZIP_LEVEL))

    return cloud_walarchive, GzipAtLevel


def push(paths: list[str]) -> dict[str, str | None]:
    """Stores WAL files (paths relative to the data directory, as %p is); path -> None once stored (S3
    answered the upload), else why not. The threads share one cloud interface: an upload only uses its
    boto3 client, which boto3 makes safe to share between threads."""
    from barman.cloud_providers import get_cloud_interface
    from barman.xlog import is_history_file

    cloud_walarchive, GzipAtLevel = _uploader()  # noqa: N806 - a class
    config = cloud_walarchive.parse_arguments([*barman_cloud_args(), *compression_args(),
                                               env(contract.ENV_BACKUP_URL), env(contract.ENV_BACKUP_SERVER), paths[0]])
    interface = get_cloud_interface(config)
    if not interface.test_connectivity():
        return dict.fromkeys(paths, "cannot reach the S3 endpoint")
    interface.setup_bucket()
    uploader = GzipAtLevel(interface, config.server_name, compression=config.compression)

    def upload(path: str) -> None:
        uploader.upload_wal(path, **({"override_tags": config.history_tags} if is_history_file(path) else {}))

    return _in_parallel(upload, paths, jobs())


def fetch(source: str, server: str, names: list[str], spool: Path) -> dict[str, str | None]:
    """Downloads WAL files of `server` in the store `source` into `spool` (each written aside, then renamed:
    a file there is whole); name -> None once there, else why not ("missing": the archive has no such file).
    One listing says which exist first, so a miss (recovery asks past the end of the archive, and for the
    history files of timelines that never were) costs one request, not a download attempt per name."""
    from barman.clients import cloud_walrestore
    from barman.cloud_providers import get_cloud_interface
    from barman.xlog import hash_dir

    config = cloud_walrestore.parse_arguments([*barman_cloud_args(), source, server, names[0], str(spool / names[0])])
    lister = get_cloud_interface(config)

    def key(name: str) -> str:  # where barman-cloud-wal-archive put it, before any compression suffix
        return os.path.join(lister.path, server, "wals", hash_dir(name), name)

    listed = [k for folder in {os.path.dirname(key(n)) + "/" for n in names} for k in lister.list_bucket(folder)]
    present = [n for n in names if any(k.startswith(key(n)) for k in listed)]
    interface = _threads_interface(config)

    def download(name: str) -> None:
        part = spool / f"{name}.part"
        cloud_walrestore.CloudWalDownloader(interface(), config.server_name).download_wal(name, str(part), False)
        part.rename(spool / name)

    missing: dict[str, str | None] = {n: "missing" for n in names if n not in present}
    return missing | (_in_parallel(download, present, jobs()) if present else {})
