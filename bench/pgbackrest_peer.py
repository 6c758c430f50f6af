"""pgBackRest, the peer of bench/backup.py: the same node, the same S3 server, the same run (issue 14).

The base image carries Debian's pgbackrest, and the lab's S3 server speaks TLS with a certificate from
the lab's CA, as pgBackRest requires. pgbackrest runs in a throwaway container of the node's base
image with the sidecar's volumes (data, socket, secrets: the store's CA) and the node's network: it
reads the same files the sidecar reads, and writes under its own folder of the lab's bucket.

Its own WAL archive is not set up (the node archives with pgdock), so backups run with
--no-archive-check: pgBackRest does not wait for the backup's last WAL file to reach its repository,
which barman-cloud does (~1-2 s of pgdock's figure).
"""

from __future__ import annotations

import subprocess
import time

from common import sh

from pgdock_gen import contract

FOLDER = "pgbackrest"
"""Under the lab's bucket, beside pgdock's own prefix."""


def version(base_image: str) -> str:
    return sh("docker", "run", "--rm", "--entrypoint", "pgbackrest", base_image, "version")


def run(base_image: str, node: str, sidecar: str, loc, settings: dict[str, str], *args: str,
        volume: str | None = None) -> float:
    """One pgbackrest command beside `node`; returns the seconds it took (raises on failure)."""
    host, port = loc.endpoint.split("//")[1].split(":")
    options = {"stanza": "bench", "repo1-type": "s3", "repo1-s3-bucket": loc.bucket, "repo1-s3-region": loc.region,
               "repo1-s3-endpoint": host, "repo1-s3-uri-style": "path", "repo1-storage-port": port,
               "repo1-storage-ca-file": str(contract.SECRETS / contract.SECRET_S3_CA), "repo1-s3-key": "lab",
               "repo1-s3-key-secret": "lab-secret", "repo1-path": f"/{FOLDER}", "pg1-path": str(contract.PGDATA),
               "pg1-socket-path": str(contract.SOCKET_DIR), "log-level-console": "warn", "lock-path": "/tmp",
               "log-path": "/tmp", "spool-path": "/tmp", **settings}
    env = [f"--env=PGBACKREST_{k.upper().replace('-', '_')}={v}" for k, v in options.items()]
    mounts = ["-v", f"{volume}:/restore"] if volume else []
    start = time.perf_counter()
    result = subprocess.run(["docker", "run", "--rm", "--volumes-from", sidecar, "--network", f"container:{node}",
                             "-u", "postgres", *mounts, *env, "--entrypoint", "pgbackrest", base_image, *args],
                            capture_output=True, text=True)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"pgbackrest {' '.join(args)} failed: {(result.stderr or result.stdout)[-800:]}")
    return took


def stored(s3, loc) -> int:
    """Bytes pgBackRest's full backups take in the bucket."""
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=f"{FOLDER}/backup/"):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total
