"""Backups at the speed of the disk (issue 14): pgdock's two engines (backup.engine barman and pgbackrest)
vs a bare pgBackRest and pg_dump, same run.

    python bench/backup.py                 # each engine: scale 20 then 70 (~1 GB); peers (about 20 minutes)
    python bench/backup.py --engine pgbackrest --scale 5 --small-scale 2 --no-peer   # smoke test

For each engine, one lab cluster `bench-bk` (bench/specs/bk.yaml with that engine: one data node, backups
to the lab's own S3-protocol server, as `lab up --s3`). Two phases:
A. pgbench -i at the small scale: the archive lag (pgbench's end to its last WAL file in S3); the base
   backup against reading the data directory once (`tar -c | cat`); `restore --latest` into a new lab
   cluster `bench-bk-r` until healthy.
B. pgbench -i at the big scale: the archive lag; pgdock's base backup (`backup now`) against a plain
   `tar -c | gzip` for size; with barman, a bare pgBackRest (bench/pgbackrest_peer.py) backing up the same
   node to the same S3 server over TLS, lz4 and zstd, and both tools restoring into an empty directory; pg-dock's
   `pg_dump | gzip` to S3; a point-in-time restore after `pgbench -T` into `bench-bk-r` (rows checked);
   pg-dock's `gunzip | psql` restore.
Both clusters and the restore volume are removed at the end, even on failure.
"""

from __future__ import annotations

import argparse
import calendar
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import BENCH, metric, save, sh

CLUSTER = "bench-bk"
RESTORED = "bench-bk-r"
NODE = "k1"
POST_BACKUP_SECONDS = 20
"""pgbench -T on top of the base backup, so the restore has WAL to replay."""
PEER_VOLUME = "pgdock-bench-restore"
ENGINES = ("barman", "pgbackrest")
"""Where both engines restore a backup to, away from the node's data."""


def stamp(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def psql_argv(port: int, database: str = "app") -> list[str]:
    return ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "/var/run/postgresql", "-p", str(port), "-U", "postgres",
            "-d", database]


def sql(container: str, port: int, query: str, database: str = "app") -> str:
    return sh("docker", "exec", "-u", "postgres", container, *psql_argv(port, database), "-c", query)


def in_node(container: str, script: str) -> str:
    return sh("docker", "exec", "-u", "postgres", container, "sh", "-c", script)


def wait_archived(container: str, port: int, timeout: float = 900) -> float:
    """Closes the current WAL file and waits until it is archived; returns the seconds it took."""
    start = time.perf_counter()
    switched = sql(container, port, "SELECT pg_walfile_name(pg_switch_wal())")
    while sql(container, port, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < switched:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{switched} not archived after {timeout:.0f} s")
        time.sleep(1)
    return time.perf_counter() - start


def checkpoint_wait(container: str, since: str, started: float) -> float | None:
    """Seconds from the backup's start (wall clock `started`) to the first checkpoint PostgreSQL logged as
    complete after it (log_checkpoints): what pg_backup_start waited for. Its own `total=` would mislead: an
    immediate checkpoint request may just hurry a spread checkpoint that began long before."""
    logs = subprocess.run(["docker", "logs", "--timestamps", "--since", since, container],
                          capture_output=True, text=True)
    for line in (logs.stdout + logs.stderr).splitlines():
        if "checkpoint complete" in line:
            stamp_text = line.split()[0].rstrip("Z")
            whole, _, fraction = stamp_text.partition(".")
            logged = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction or 0}")
            return round(max(logged - started, 0.0), 3)
    return None


def read_once(container: str) -> float:
    """Seconds to read the data directory once (`tar -c` piped to `cat`): the floor of any base backup."""
    start = time.perf_counter()
    in_node(container, "tar -cf - -C /var/lib/pgdock data | cat > /dev/null")
    return time.perf_counter() - start


def gzip_reference(container: str) -> int:
    """Bytes of the data directory as `tar -c | gzip` (gzip's default level 6): the size to stay near."""
    return int(in_node(container, "tar -cf - -C /var/lib/pgdock/data --exclude=pg_wal . | gzip | wc -c"))


def settle(container: str, port: int) -> None:
    """A checkpoint before each timed backup, so every engine starts from the same clean state instead of
    the first one paying for the load's dirty buffers (7.4 s of an 18.9 s backup, in one run)."""
    sql(container, port, "CHECKPOINT")


def timed_backup(backup, target, container: str, port: int, r: dict, key: str) -> None:
    """`backup now` through pgdock, with its checkpoint wait; results under `key`."""
    settle(container, port)
    wall = time.time()
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall - 1))
    start = time.perf_counter()
    backup.run_now(target)
    r[f"{key}_s"] = time.perf_counter() - start
    r[f"{key}_checkpoint_s"] = checkpoint_wait(container, since, wall)


def load(container: str, port: int, scale: int, r: dict, key: str) -> None:
    """pgbench -i at `scale`, then how long the archive took to hold its last WAL file (the lag)."""
    start = time.perf_counter()
    in_node(container, f"pgbench -i -q -s {scale} -h /var/run/postgresql -p {port} -U postgres app")
    r[f"{key}_load_s"] = time.perf_counter() - start
    r[f"{key}_database_bytes"] = int(sql(container, port, "SELECT pg_database_size('app')"))
    r[f"{key}_archive_lag_s"] = wait_archived(container, port)
    stamp(f"pgbench -i -s {scale}: {r[f'{key}_load_s']:.1f} s, app is {r[f'{key}_database_bytes'] / 1e6:.0f} MB; "
          f"archive caught up {r[f'{key}_archive_lag_s']:.1f} s later")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (default 70 ≈ 1 GB)")
    parser.add_argument("--small-scale", type=int, default=20, help="pgbench scale of the first phase (≈ 300 MB)")
    parser.add_argument("--engine", action="append", choices=ENGINES, help="only this engine (default: both)")
    parser.add_argument("--no-peer", action="store_true", help="skip the bare pgBackRest")
    args = parser.parse_args()
    raw: dict[str, dict] = {}
    rows: list[dict[str, object]] = []
    for engine in args.engine or ENGINES:
        stamp(f"== backup.engine {engine}")
        raw[engine] = run_engine(engine, args.scale, args.small_scale,
                                 peer_too=engine == "barman" and not args.no_peer)
        peer_of = next((r for r in raw.values() if r.get("pgbackrest_backup_s")), {})
        rows += metrics_of(raw[engine], args.scale, peer_of, with_dump=len(raw) == 1)
    save("backup", rows, spec="bench/specs/bk.yaml", raw=raw)


def run_engine(engine: str, scale: int, small_scale: int, *, peer_too: bool) -> dict:  # noqa: PLR0915 - one timed sequence
    """The whole sequence with pgdock's backups on `engine`; the raw figures."""
    import yaml

    from pgdock_gen import backup, cluster, lab, restore, spec

    quiet = lambda message: None  # noqa: E731
    r: dict = {"engine": engine, "scale": scale, "small_scale": small_scale}
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-backup-") as tmp:
        spec_path = Path(tmp) / "cluster.yaml"
        raw_spec = yaml.safe_load((BENCH / "specs" / "bk.yaml").read_text())
        raw_spec["backup"]["engine"] = engine
        spec_path.write_text(yaml.safe_dump(raw_spec, sort_keys=False))
        loaded = spec.load(spec_path)
        r["compression"] = loaded.backup.compression
        restored_spec = spec.parse(json.dumps(dict(loaded.raw, cluster=RESTORED)), f"{spec_path} (as {RESTORED})")
        try:
            lab.down(spec_path, restored_spec, remove_volumes=True, progress=quiet)  # leftovers of an earlier run
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            # lab.down rendered a lab repo for RESTORED with fresh secrets; restore must seed the source's instead
            shutil.rmtree(Path(tmp) / ".lab" / RESTORED)
            the_lab, _ = lab.up(spec_path, loaded, s3=True, timeout=300, progress=quiet)
            stamp(f"{CLUSTER} healthy, S3 server {the_lab.s3_container}")
            container, port = the_lab.container(NODE), the_lab.lab_spec.member(NODE).port
            loc = backup.location(the_lab.lab_spec)
            s3 = backup.client(loc, backup.credentials(the_lab.repo / "secrets"))
            target = cluster.Running(the_lab.lab_spec, True).target(NODE)

            # A. the small database: archive lag, backup vs reading the data once, restore --latest
            load(container, port, small_scale, r, "small")
            r["small_read_once_s"] = read_once(container)
            timed_backup(backup, target, container, port, r, "small_backup")
            stamp(f"base backup {r['small_backup_s']:.1f} s vs reading the data directory once "
                  f"{r['small_read_once_s']:.2f} s")
            start = time.perf_counter()
            restore.restore(spec_path, loaded, to=None, latest=True, name=RESTORED, progress=quiet)
            r["small_restore_latest_s"] = time.perf_counter() - start
            stamp(f"restore --latest into {RESTORED} → healthy: {r['small_restore_latest_s']:.1f} s")
            lab.down(spec_path, restored_spec, remove_volumes=True, progress=quiet)

            # B. the big database
            load(container, port, scale, r, "big")
            r["database_bytes"] = r["big_database_bytes"]
            r["big_read_once_s"] = read_once(container)
            timed_backup(backup, target, container, port, r, "base_backup")
            newest = backup.list_backups(s3, loc)[-1]
            r["base_backup_id"] = newest.id
            r["cluster_bytes"] = int(sql(container, port, "SELECT sum(pg_database_size(datname)) FROM pg_database"))
            r["base_backup_stored_bytes"] = newest.size
            r["gzip_reference_bytes"] = gzip_reference(container)
            after_backup_lsn = sql(container, port, "SELECT pg_current_wal_lsn()")
            stamp(f"base backup {newest.id}: {r['base_backup_s']:.1f} s "
                  f"(checkpoint {r['base_backup_checkpoint_s']} s), {r['cluster_bytes'] / 1e6:.0f} MB of databases, "
                  f"{r['base_backup_stored_bytes'] / 1e6:.0f} MB stored (tar | gzip: "
                  f"{r['gzip_reference_bytes'] / 1e6:.0f} MB); reading once {r['big_read_once_s']:.2f} s")
            if peer_too:
                peer(the_lab, target, container, r, s3, loc)

            # pg-dock's method: pg_dump | gzip, uploaded to the same bucket
            start = time.perf_counter()
            in_node(container, f"pg_dump -h /var/run/postgresql -p {port} -U postgres app | gzip > /tmp/dump.gz")
            r["dump_s"] = time.perf_counter() - start
            r["dump_gz_bytes"] = int(in_node(container, "stat -c %s /tmp/dump.gz"))
            key = f"{loc.prefix}/pgdump/{CLUSTER}/app.sql.gz"
            start = time.perf_counter()
            with subprocess.Popen(["docker", "exec", container, "cat", "/tmp/dump.gz"], stdout=subprocess.PIPE) as cat:
                s3.upload_fileobj(cat.stdout, loc.bucket, key)
            r["dump_upload_s"] = time.perf_counter() - start
            in_node(container, "rm -f /tmp/dump.gz")
            stamp(f"pg_dump | gzip: {r['dump_s']:.1f} s, {r['dump_gz_bytes'] / 1e6:.1f} MB; "
                  f"upload {r['dump_upload_s']:.1f} s")

            # pgdock's point-in-time restore into a new lab cluster
            in_node(container, f"pgbench -T {POST_BACKUP_SECONDS} -c 2 -h /var/run/postgresql -p {port} -U postgres "
                               "app > /dev/null")
            sql(container, port, "CREATE TABLE bench_marker (id int); INSERT INTO bench_marker VALUES (1)")
            time.sleep(1.5)
            to = sql(container, port, "SELECT now()")
            r["replay_bytes"] = int(float(sql(container, port,
                                              f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{after_backup_lsn}')")))
            time.sleep(1.5)
            sql(container, port, "INSERT INTO bench_marker VALUES (2)")
            wait_archived(container, port)
            r["restore_target"] = to
            marks: dict[str, float] = {}

            def progress(message: str) -> None:
                if message.startswith("starting") and "started" not in marks:
                    marks["started"] = time.perf_counter()

            try:  # a failed restore is a result too; pg-dock's restore is still measured
                start = time.perf_counter()
                result = restore.restore(spec_path, loaded, to=to, latest=False, name=RESTORED, progress=progress)
                end = time.perf_counter()
                r["pitr_restore_s"] = end - start
                r["pitr_render_build_s"] = marks.get("started", start) - start
                r["pitr_recovered_to"] = result.recovered_to
                restored = result.lab.container(NODE)
                r["pitr_check"] = {"bench_marker": sql(restored, port, "SELECT count(*) FROM bench_marker"),
                                   "pgbench_accounts": sql(restored, port, "SELECT count(*) FROM pgbench_accounts")}
                assert r["pitr_check"] == {"bench_marker": "1", "pgbench_accounts": str(scale * 100_000)}, r
                stamp(f"PITR restore to {to}: {r['pitr_restore_s']:.1f} s "
                      f"(render+build {r['pitr_render_build_s']:.1f} s), "
                      f"{r['replay_bytes'] / 1e6:.0f} MB of WAL after the backup; recovered to {result.recovered_to}")
            except Exception as exc:  # noqa: BLE001
                r["pitr_error"] = f"{type(exc).__name__}: {exc}"
                r["pitr_logs"] = subprocess.run(["docker", "logs", "--tail", "60", f"{RESTORED}-{NODE}"],
                                                capture_output=True, text=True).stderr[-6000:]
                stamp(f"PITR restore failed: {r['pitr_error']}")
            lab.down(spec_path, restored_spec, remove_volumes=True, progress=quiet)

            # pg-dock's restore: download, gunzip | psql into a fresh database
            sql(container, port, "CREATE DATABASE app_dump")
            start = time.perf_counter()
            body = s3.get_object(Bucket=loc.bucket, Key=key)["Body"].read()
            r["dump_download_s"] = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run(["docker", "exec", "-i", "-u", "postgres", container, "sh", "-c",
                            "gunzip | " + " ".join(psql_argv(port, "app_dump")) + " > /dev/null"],
                           input=body, check=True)
            r["dump_restore_s"] = time.perf_counter() - start
            r["dump_check"] = sql(container, port, "SELECT count(*) FROM pgbench_accounts", "app_dump")
            assert r["dump_check"] == str(scale * 100_000), r
            stamp(f"dump restore: download {r['dump_download_s']:.1f} s, gunzip | psql {r['dump_restore_s']:.1f} s")
        finally:
            lab.down(spec_path, restored_spec, remove_volumes=True, progress=quiet)
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            subprocess.run(["docker", "volume", "rm", "-f", PEER_VOLUME], capture_output=True, check=False)
            for name in (CLUSTER, RESTORED):
                for image in sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                                f"pgdock/{name}-*").splitlines():
                    subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)

    return r


def peer(the_lab, target, container: str, r: dict, s3, loc) -> None:
    """pgBackRest on the same node and S3 server: full backups with its fast settings (process-max = cores,
    lz4 or zstd, small files bundled: one object per file made a 30 MB backup take 45 s against moto),
    restore of the newest into an empty volume; and barman-cloud-restore of pgdock's backup the same way."""
    import pgbackrest_peer as pbr

    from pgdock_gen import contract, images

    base = images.names(the_lab.lab_spec, the_lab.repo).base
    r["pgbackrest_version"] = pbr.version(base)
    sidecar = target.container + contract.BACKUP_SUFFIX
    pbr.run(base, container, sidecar, loc, {}, "stanza-create")
    runs = {}
    for compress in ("lz4", "zst", "lz4"):  # lz4 twice: the first backup into a new repository ran slower
        settle(container, target.node.port)
        took = pbr.run(base, container, sidecar, loc, {"compress-type": compress, "process-max": "2",
                                                       "repo1-bundle": "y"},
                       "backup", "--type=full", "--no-archive-check")
        runs[compress] = min(took, runs.get(compress, took))
        stamp(f"{r['pgbackrest_version']} full backup, {compress}, process-max 2: {took:.1f} s")
    r["pgbackrest_backup_s"] = runs
    r["pgbackrest_stored_bytes"] = pbr.stored(s3, loc)
    subprocess.run(["docker", "volume", "rm", "-f", PEER_VOLUME], capture_output=True, check=False)
    sh("docker", "volume", "create", PEER_VOLUME)
    sh("docker", "run", "--rm", "-v", f"{PEER_VOLUME}:/restore", "--entrypoint", "sh", base, "-c",
       "mkdir -p /restore/pgbr /restore/barman && chown postgres /restore/pgbr /restore/barman")
    r["pgbackrest_restore_s"] = pbr.run(base, container, sidecar, loc, {"process-max": "2"}, "restore",
                                        "--pg1-path=/restore/pgbr", volume=PEER_VOLUME)
    stamp(f"pgBackRest restore of the newest backup into an empty directory: {r['pgbackrest_restore_s']:.1f} s")
    backup_id = r["base_backup_id"]
    start = time.perf_counter()
    sh("docker", "run", "--rm", "--volumes-from", sidecar, "--network", f"container:{container}", "-u", "postgres",
       "-e", "AWS_ACCESS_KEY_ID=lab", "-e", "AWS_SECRET_ACCESS_KEY=lab-secret", "-e",
       f"AWS_CA_BUNDLE={contract.SECRETS / contract.SECRET_S3_CA}", "-v", f"{PEER_VOLUME}:/restore",
       "--entrypoint", "barman-cloud-restore", base, "--cloud-provider", "aws-s3", "--endpoint-url", loc.endpoint,
       loc.url, loc.server, backup_id, "/restore/barman")
    r["barman_restore_s"] = time.perf_counter() - start
    stamp(f"barman-cloud-restore of pgdock's backup into an empty directory: {r['barman_restore_s']:.1f} s")


def metrics_of(r: dict, scale: int, peer_of: dict, *, with_dump: bool) -> list[dict[str, object]]:  # noqa: PLR0914
    """The rows of one engine's run, named after it; the bare pgBackRest's figures come from `peer_of` (the
    run that measured them), and pg-dock's dump rows `with_dump` (once per bench run)."""
    engine = {"barman": "barman-cloud", "pgbackrest": "pgBackRest"}[r["engine"]] + f", {r['compression']}"
    how = {"barman": {"archive": "batches of backup.jobs x 4 files, 4 threads", "fetch": "fetched ahead in batches"},
           "pgbackrest": {"archive": "archive-async, process-max = backup.jobs",
                          "fetch": "archive-get's asynchronous prefetch"}}[r["engine"]]
    db = r["database_bytes"]
    size = f"app database {db / 1e6:.0f} MB (pgbench scale {scale})"
    small = f"pgbench scale {r['small_scale']}, {r['small_database_bytes'] / 1e6:.0f} MB"
    dump_total = r["dump_s"] + r["dump_upload_s"]
    done = r.get("dump_restore_s") is not None
    dump_restore_total = r["dump_download_s"] + r["dump_restore_s"] if done else None
    build = "" if r.get("pitr_render_build_s") is None else f"render+build {r['pitr_render_build_s']:.1f} s, "
    replay = "" if r.get("replay_bytes") is None else f"{r['replay_bytes'] / 1e6:.0f} MB "
    ratio = r["small_backup_s"] / r["small_read_once_s"]
    stored_ratio = r["base_backup_stored_bytes"] / r["gzip_reference_bytes"]
    peer_runs = peer_of.get("pgbackrest_backup_s") or {}
    best = min(peer_runs.values()) if peer_runs else None
    versus = (f"; bare {peer_of['pgbackrest_version']} in the same run (lz4 best of two / zstd, process-max 2, "
              f"small files bundled, over TLS to the same S3 server, --no-archive-check; each after a CHECKPOINT): "
              f"{peer_runs['lz4']:.1f} s / {peer_runs['zst']:.1f} s, "
              f"pgdock = {r['base_backup_s'] / best:.2f}x its best") if best else ""
    rows = [
        metric(f"base backup to S3 (`backup now`: {engine}), {db / 1e9:.2g} GB database",
               r["base_backup_s"], "s", "≤ 15 s and ≤ 1.2× pgBackRest's best",
               r["base_backup_s"] <= 15 and (best is None or r["base_backup_s"] <= 1.2 * best),
               f"{size}; {r['base_backup_checkpoint_s']} s of it is the immediate checkpoint; "
               f"{r['cluster_bytes'] / 1e6:.0f} MB of databases; reading the data directory once takes "
               f"{r['big_read_once_s']:.2f} s{versus}; before issue 14 (gzip level 9): 55.9 s"),
        metric(f"base backup ({engine}) ÷ reading the data directory once (`tar -c | cat`)",
               round(ratio, 1), "x", "≤ 10x",
               ratio <= 10, f"{small}: backup {r['small_backup_s']:.1f} s, reading once "
               f"{r['small_read_once_s']:.2f} s (page cache warm for both); before: 66x"),
        metric(f"WAL archive lag after `pgbench -i` ends (big / small database; {engine})",
               round(r["big_archive_lag_s"], 1),
               "s", "≤ 5 s", max(r["big_archive_lag_s"], r["small_archive_lag_s"]) <= 5,
               f"time from pgbench -i's end to its last WAL file in S3: {r['big_archive_lag_s']:.1f} s at scale "
               f"{scale} (load {r['big_load_s']:.1f} s), {r['small_archive_lag_s']:.1f} s at scale "
               f"{r['small_scale']}; {how['archive']}; before: 79 s / 25 s"),
        metric(f"restore --latest into a new lab cluster → healthy ({engine})",
               r["small_restore_latest_s"], "s", "≤ 12 s",
               r["small_restore_latest_s"] <= 12, f"{small}; includes render, image build (cached) and lab "
                                                  "start; before: 26.2 s"),
        metric(f"base backup stored size ({engine}) ÷ `tar -c | gzip` of the data directory",
               round(stored_ratio, 2), "x",
               "≤ 2x", stored_ratio <= 2, f"{r['base_backup_stored_bytes'] / 1e6:.0f} MB stored vs "
               f"{r['gzip_reference_bytes'] / 1e6:.0f} MB (gzip -6)"
               + (f"; bare pgBackRest stored {peer_of['pgbackrest_stored_bytes'] / 1e6:.0f} MB for its three "
                  "backups" if best else "")),
        metric(f"point-in-time restore into a new lab cluster → healthy ({engine})",
               r.get("pitr_restore_s"), "s", "≤ 15 s",
               None if "pitr_error" in r else r["pitr_restore_s"] <= 15,
               f"FAILED: {r['pitr_error']}" if "pitr_error" in r else
               f"`restore --to` a time after the backup; includes {build}base backup fetch, replay of {replay}WAL "
               f"(pgbench -T {POST_BACKUP_SECONDS} after the backup, {how['fetch']}) and promotion; rows "
               "checked at the target; before: 40.1 s"),
    ]
    if r.get("barman_restore_s") is not None:
        rows.append(metric("restore of the base backup into an empty directory: barman-cloud vs pgBackRest",
                           r["barman_restore_s"], "s", "", None,
                           f"barman-cloud-restore {r['barman_restore_s']:.1f} s (one stream) vs pgbackrest restore "
                           f"{r['pgbackrest_restore_s']:.1f} s (process-max 2), same database, same S3 server"))
    if not with_dump:
        return rows
    rows += [
        metric("pg-dock's backup: `pg_dump app | gzip` + upload to the same S3", dump_total, "s", "", None,
               f"dump+gzip {r['dump_s']:.1f} s, upload {r['dump_upload_s']:.1f} s; "
               f"{r['dump_gz_bytes'] / 1e6:.1f} MB stored (vs {r['base_backup_stored_bytes'] / 1e6:.0f} MB base "
               "backup); a dump has no WAL, so it restores only to the moment it was taken"),
        metric("pg-dock's restore: download + `gunzip | psql` into a fresh database", dump_restore_total, "s", "",
               None, (f"download {r['dump_download_s']:.1f} s, gunzip | psql {r['dump_restore_s']:.1f} s "
                      "(rows checked); restores the dump's moment only, no later transactions") if done
               else "not measured in this run"),
    ]
    return rows


if __name__ == "__main__":
    main()
