"""barman-cloud's WAL upload and download used as a library: a batch of files in parallel threads of one
process (see walfiles.py for why). The arguments go through barman-cloud's own parsers, so the settings
mean what they mean on its command line (endpoint, profile, compression); each thread has its own cloud
interface because barman's S3 interface holds a boto3 resource, which threads must not share.

barman and boto3 are imported inside the functions: `pgdock-agent archive` answers files stored ahead
without them, in a few milliseconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

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


def jobs() -> int:
    """backup.jobs: files moved at once."""
    return int(os.environ.get(contract.ENV_BACKUP_JOBS, contract.DEFAULT_BACKUP_JOBS))


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
    """A cloud interface per thread, made on first use."""
    from barman.cloud_providers import get_cloud_interface

    local = threading.local()

    def interface() -> object:
        if getattr(local, "interface", None) is None:
            local.interface = get_cloud_interface(config)
        return local.interface

    return interface


def push(paths: list[str]) -> dict[str, str | None]:
    """Stores WAL files (paths relative to the data directory, as %p is); path -> None once stored (S3
    answered the upload), else why not."""
    from barman.clients import cloud_walarchive
    from barman.cloud_providers import get_cloud_interface
    from barman.xlog import is_history_file

    config = cloud_walarchive.parse_arguments([*barman_cloud_args(), *compression_args(),
                                               env(contract.ENV_BACKUP_URL), env(contract.ENV_CLUSTER), paths[0]])
    first = get_cloud_interface(config)
    if not first.test_connectivity():
        return dict.fromkeys(paths, "cannot reach the S3 endpoint")
    first.setup_bucket()
    interface = _threads_interface(config)

    def upload(path: str) -> None:
        uploader = cloud_walarchive.CloudWalUploader(interface(), config.server_name, compression=config.compression)
        tags = {"override_tags": config.history_tags} if is_history_file(path) else {}
        uploader.upload_wal(path, **tags)

    return _in_parallel(upload, paths, jobs())


def fetch(source: str, server: str, names: list[str], spool: Path) -> dict[str, str | None]:
    """Downloads WAL files of `server` in the store `source` into `spool` (each written aside, then renamed:
    a file there is whole); name -> None once there, else why not ("missing": the archive has no such file)."""
    from barman.clients import cloud_walrestore

    config = cloud_walrestore.parse_arguments([*barman_cloud_args(), source, server, names[0], str(spool / names[0])])
    interface = _threads_interface(config)

    def download(name: str) -> None:
        part = spool / f"{name}.part"
        try:
            cloud_walrestore.CloudWalDownloader(interface(), config.server_name).download_wal(name, str(part), False)
        except SystemExit as missing:  # barman's "no such WAL file" is an exit exception
            raise FileNotFoundError("missing") from missing
        part.rename(spool / name)

    return _in_parallel(download, names, jobs())
