"""Backup and restore of ~1 GB: barman-cloud base backup + PITR vs pg-dock's `pg_dump | gzip` to S3, same run.

    python bench/backup.py [--scale 70]    # pgbench scale 70 ≈ 1 GB (about 10-15 minutes)
    python bench/backup.py --scale 5       # smoke test

One lab cluster `bench-bk` (bench/specs/bk.yaml: one data node, backups to the lab's own S3-protocol
server, as `lab up --s3`). pgbench -i fills the app database; once the archive has caught up, the
timed steps are:
1. pgdock's base backup: `backup now` (pgdock_gen.backup.run_now: barman-cloud-backup --gzip in the
   node's backup sidecar, then retention) — time, size read, size stored, throughput.
2. pg-dock's method (gen 1, schickling/postgres-backup-s3): `pg_dump app | gzip` in the node, then the
   file uploaded with boto3 to the same bucket.
3. pgdock's point-in-time restore: after `pgbench -T` writes WAL on top of the backup, a marker row and
   a target time, pgdock_gen.restore.restore(to=<target>) into a new lab cluster `bench-bk-r`: fetch the
   base backup, replay archived WAL to the target, promote, until the cluster is healthy; then checked.
4. pg-dock's restore: download the dump, `gunzip | psql` into a fresh database on the node; checked.
Both clusters are taken down with their volumes at the end, even on failure.
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


def stored(s3, bucket: str, prefix: str) -> int:
    """Bytes of all objects under `prefix`."""
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def backup_info(s3, bucket: str, prefix: str) -> dict[str, str]:
    """The newest backup.info under `prefix`, as barman-cloud wrote it."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith("/backup.info")]
    text = s3.get_object(Bucket=bucket, Key=max(keys))["Body"].read().decode()
    info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return info | {"backup_id": max(keys).rsplit("/", 2)[-2], "size": info.get("size", "")}


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


def mb_s(size: float, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (default 70 ≈ 1 GB)")
    args = parser.parse_args()

    from pgdock_gen import backup, cluster, lab, restore, spec

    quiet = lambda message: None  # noqa: E731
    r: dict[str, object] = {"scale": args.scale}
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-backup-") as tmp:
        spec_path = Path(tmp) / "cluster.yaml"
        shutil.copy(BENCH / "specs" / "bk.yaml", spec_path)
        loaded = spec.load(spec_path)
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

            start = time.perf_counter()
            in_node(container, f"pgbench -i -q -s {args.scale} -h /var/run/postgresql -p {port} -U postgres app")
            r["load_s"] = time.perf_counter() - start
            r["database_bytes"] = int(sql(container, port, "SELECT pg_database_size('app')"))
            r["archive_catch_up_s"] = wait_archived(container, port)
            stamp(f"pgbench -i -s {args.scale}: {r['load_s']:.1f} s, app is {r['database_bytes'] / 1e6:.0f} MB; "
                  f"archive caught up {r['archive_catch_up_s']:.1f} s later")

            # 1. pgdock's base backup
            target = cluster.Running(the_lab.lab_spec, True).target(NODE)
            wall = time.time()
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall - 1))
            start = time.perf_counter()
            backup.run_now(target)
            r["base_backup_s"] = time.perf_counter() - start
            r["base_backup_checkpoint_s"] = checkpoint_wait(container, since, wall)
            # backup.info read here as barman-cloud wrote it: barman-cloud 3.13 writes `size=None` (before 12d4638
            # backup.list_backups failed on that; since, it reports the stored bytes); list_backups is still tried
            info = backup_info(s3, loc.bucket, f"{loc.root}base/")
            r["base_backup_info"] = info
            r["base_backup_id"], r["base_backup_status"] = info["backup_id"], info["status"]
            r["cluster_bytes"] = int(sql(container, port, "SELECT sum(pg_database_size(datname)) FROM pg_database"))
            r["base_backup_read_bytes"] = next((int(v) for v in (info["size"], info.get("cluster_size", ""))
                                                if v.isdigit()), r["cluster_bytes"])
            r["base_backup_stored_bytes"] = stored(s3, loc.bucket, f"{loc.root}base/{info['backup_id']}/")
            try:
                backup.list_backups(s3, loc)
                r["backup_list_error"] = None
            except Exception as exc:  # noqa: BLE001 - recorded: a product bug, not the bench's
                r["backup_list_error"] = str(exc)
            newest = info
            after_backup_lsn = sql(container, port, "SELECT pg_current_wal_lsn()")
            stamp(f"base backup {newest['backup_id']} {newest['status']}: {r['base_backup_s']:.1f} s "
                  f"(checkpoint {r['base_backup_checkpoint_s']} s), backup.info size={info['size']}, "
                  f"{r['base_backup_read_bytes'] / 1e6:.0f} MB read, {r['base_backup_stored_bytes'] / 1e6:.0f} MB "
                  f"stored; backup list: {r['backup_list_error'] or 'ok'}")

            # 2. pg-dock's method: pg_dump | gzip, uploaded to the same bucket
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

            # 3. pgdock's point-in-time restore into a new lab cluster
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
                assert r["pitr_check"] == {"bench_marker": "1", "pgbench_accounts": str(args.scale * 100_000)}, r
                stamp(f"PITR restore to {to}: {r['pitr_restore_s']:.1f} s "
                      f"(render+build {r['pitr_render_build_s']:.1f} s), "
                      f"{r['replay_bytes'] / 1e6:.0f} MB of WAL after the backup; recovered to {result.recovered_to}")
            except Exception as exc:  # noqa: BLE001
                r["pitr_error"] = f"{type(exc).__name__}: {exc}"
                r["pitr_logs"] = subprocess.run(["docker", "logs", "--tail", "60", f"{RESTORED}-{NODE}"],
                                                capture_output=True, text=True).stderr[-6000:]
                stamp(f"PITR restore failed: {r['pitr_error']}")
            lab.down(spec_path, restored_spec, remove_volumes=True, progress=quiet)

            # 4. pg-dock's restore: download, gunzip | psql into a fresh database
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
            assert r["dump_check"] == str(args.scale * 100_000), r
            stamp(f"dump restore: download {r['dump_download_s']:.1f} s, gunzip | psql {r['dump_restore_s']:.1f} s")
        finally:
            lab.down(spec_path, restored_spec, remove_volumes=True, progress=quiet)
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            for name in (CLUSTER, RESTORED):
                for image in sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                                f"pgdock/{name}-*").splitlines():
                    subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)

    save("backup", metrics_of(r, args.scale), spec="bench/specs/bk.yaml", raw=r)


def metrics_of(r: dict, scale: int) -> list[dict[str, object]]:
    db = r["database_bytes"]
    size = f"app database {db / 1e6:.0f} MB (pgbench scale {scale})"
    dump_total = r["dump_s"] + r["dump_upload_s"]
    done = r.get("dump_restore_s") is not None
    dump_restore_total = r["dump_download_s"] + r["dump_restore_s"] if done else None
    build = "" if r.get("pitr_render_build_s") is None else f"render+build {r['pitr_render_build_s']:.1f} s, "
    replay = "" if r.get("replay_bytes") is None else f"{r['replay_bytes'] / 1e6:.0f} MB "
    copying = r["base_backup_s"] - (r["base_backup_checkpoint_s"] or 0)
    copy_rate = mb_s(r["base_backup_read_bytes"], copying) if copying > 0 else None
    return [
        metric(f"base backup to S3 (`backup now`: barman-cloud --gzip), {db / 1e9:.2g} GB database",
               r["base_backup_s"], "s", "", None,
               f"{size}; of the time, {r['base_backup_checkpoint_s']} s is the wait for the checkpoint "
               "pg_backup_start asks for (--immediate-checkpoint: a spread checkpoint already running is finished "
               "at full speed); "
               f"{r['base_backup_read_bytes'] / 1e6:.0f} MB read (cluster_size in backup.info, which says "
               f"size={r['base_backup_info']['size']}), "
               f"{r['base_backup_stored_bytes'] / 1e6:.0f} MB stored in the lab S3 (moto); "
               f"pgbench -i took {r['load_s']:.1f} s, its WAL archived {r['archive_catch_up_s']:.1f} s later"),
        metric("base backup throughput (data read / time)", mb_s(r["base_backup_read_bytes"], r["base_backup_s"]),
               "MB/s", "", None, f"{copy_rate} MB/s without the checkpoint wait; "
               f"{mb_s(r['base_backup_stored_bytes'], r['base_backup_s'])} MB/s stored; "
               f"pg-dock's pg_dump | gzip + upload: {mb_s(db, dump_total)} MB/s of database"),
        metric("pg-dock's backup: `pg_dump app | gzip` + upload to the same S3", dump_total, "s", "", None,
               f"dump+gzip {r['dump_s']:.1f} s, upload {r['dump_upload_s']:.1f} s; "
               f"{r['dump_gz_bytes'] / 1e6:.1f} MB stored (vs {r['base_backup_stored_bytes'] / 1e6:.0f} MB base "
               "backup); a dump has no WAL, so it restores only to the moment it was taken"),
        metric("point-in-time restore into a new lab cluster → healthy", r.get("pitr_restore_s"), "s", "", None,
               f"FAILED: {r['pitr_error']}" if "pitr_error" in r else
               f"`restore --to` a time after the backup; includes {build}base backup fetch, replay of {replay}WAL "
               f"(pgbench -T {POST_BACKUP_SECONDS} after the backup) and promotion; rows checked at the target"
               + r.get("pitr_note", "")),
        metric("pg-dock's restore: download + `gunzip | psql` into a fresh database", dump_restore_total, "s", "",
               None, (f"download {r['dump_download_s']:.1f} s, gunzip | psql {r['dump_restore_s']:.1f} s "
                      "(rows checked); restores the dump's moment only, no later transactions") if done
               else "not measured in this run"),
    ]


if __name__ == "__main__":
    main()
