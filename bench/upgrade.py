"""Major upgrade 15 → 17 of a 1 GB database (issue 13): `upgrade.method` link against copy, same run.

    python bench/upgrade.py [--scale 70] [--method link --method copy]   # pgbench scale 70 ≈ 1 GB

For each method, on bench/specs/up.yaml (PostgreSQL 15, two data nodes and a witness) in the lab: `pgbench -i`
fills the database, `pgdock-gen upgrade --yes` (spec changed to 17 and the method) runs, and the figures come
from its own report: write downtime (clean stop of the primary → it takes writes on 17), pg_upgrade's part of
it, how the standby came over (rsync --hard-links or a new clone) and how long that took, the whole command,
and the time until every member is healthy. The peer in the same run: `pg_dump -Fc` of the same database,
then restored into the upgraded 17 as a new database (`pg_restore`): a dump-and-restore upgrade's write downtime.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import lab_cluster, metric, save, sh, stamp

SPEC = "up.yaml"
PEER_DUMP = "/var/lib/pgdock/peer.dump"
"""On the primary's data volume: it outlives the container the upgrade recreates."""


def _psql(container: str, port: str, query: str) -> str:
    return sh("docker", "exec", "-u", "postgres", container, "psql", "-XAtq", "-h", "/var/run/postgresql", "-p", port,
              "-d", "app", "-c", query)


def one_method(method: str, scale: int, tmp: Path) -> dict[str, object]:
    from pgdock_gen import cluster, lab

    (tmp / method).mkdir()
    with lab_cluster(SPEC, tmp / method, timeout=300) as (spec_path, loaded):
        the_lab = lab.prepare(spec_path, loaded)
        running = cluster.Running(the_lab.lab_spec, True)
        primary = next(r.name for r in running.status() if r.role == "primary")
        container, port = the_lab.container(primary), str(the_lab.lab_spec.member(primary).port)
        stamp(f"{method}: pgbench -i -s {scale} on {primary}")
        sh("docker", "exec", "-u", "postgres", container, "pgbench", "-i", "-q", "-s", str(scale), "-h",
           "/var/run/postgresql", "-p", port, "app")
        size = int(_psql(container, port, "SELECT sum(pg_database_size(oid)) FROM pg_database"))
        running.wait_healthy(timeout=600, progress=stamp)
        started = time.perf_counter()  # the peer's first half; the dump waits on the data volume for the second
        sh("docker", "exec", "-u", "postgres", container, "sh", "-c",
           f"pg_dump -Fc -h /var/run/postgresql -p {port} -f {PEER_DUMP} app")
        dump = time.perf_counter() - started
        spec_path.write_text(spec_path.read_text().replace("version: 15", "version: 17")
                             + f"upgrade:\n  method: {method}\n")
        stamp(f"{method}: pgdock-gen upgrade --yes ({size / 1e9:.2f} GB)")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pgdock_gen", "upgrade", "-f", str(spec_path), "--lab", "--yes"],
                              capture_output=True, text=True, timeout=3600)
        command = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"upgrade --{method} failed: {done.stderr[-2000:]}")
        out = done.stdout + done.stderr
        cluster.Running(the_lab.lab_spec, True).wait_healthy(timeout=900, progress=stamp)
        healthy = time.perf_counter() - started
        started = time.perf_counter()  # the peer's second half: that dump restored into 17, as a new database
        sh("docker", "exec", "-u", "postgres", container, "sh", "-c",
           f"createdb -h /var/run/postgresql -p {port} peer && pg_restore -h /var/run/postgresql -p {port} -d peer "
           f"{PEER_DUMP}")
        restore = time.perf_counter() - started
        standby = re.search(r"standbys: (\S+): (rsync --hard-links from \S+ in ([0-9.]+) s|cloned again)", out)
        return {"method": method, "bytes": size, "pg_dump_s": round(dump, 1), "pg_restore_s": round(restore, 1),
                "write_downtime_s": float(re.search(r"write downtime ([0-9.]+) s", out).group(1)),
                "pg_upgrade_s": float(re.search(r"pg_upgrade --\w+ 15 → 17 took ([0-9.]+) s", out).group(1)),
                "standby": "rsync" if standby and standby.group(3) else "clone",
                "standby_rsync_s": float(standby.group(3)) if standby and standby.group(3) else None,
                "command_s": round(command, 1), "healthy_s": round(healthy, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (default 70 ≈ 1 GB)")
    parser.add_argument("--method", action="append", choices=("link", "copy", "clone"),
                        help="upgrade.method to measure (repeatable; default link and copy)")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-upgrade-") as tmp:
        for method in args.method or ["link", "copy"]:
            runs.append(one_method(method, args.scale, Path(tmp)))
            stamp(f"{method}: {runs[-1]}")
    metrics = []
    for run in runs:
        gb = f"{run['bytes'] / 1e9:.2f} GB"
        standby = (f"the standby by rsync --hard-links in {run['standby_rsync_s']} s" if run["standby"] == "rsync"
                   else "the standby cloned again")
        metrics += [
            metric(f"major upgrade 15 → 17, {gb}, --{run['method']}: write downtime", run["write_downtime_s"], "s",
                   notes=f"clean stop → the primary takes writes on 17; pg_upgrade {run['pg_upgrade_s']} s of it; "
                   f"peer, same run: a dump-and-restore upgrade's writes stop for pg_dump -Fc on 15 "
                   f"{run['pg_dump_s']} s + pg_restore into 17 {run['pg_restore_s']} s = "
                   f"{run['pg_dump_s'] + run['pg_restore_s']:.1f} s"),
            metric(f"major upgrade 15 → 17, {gb}, --{run['method']}: until every member is healthy",
                   run["healthy_s"], "s", notes=f"`upgrade --yes` itself {run['command_s']} s (images cached); "
                   f"{standby}; the witness made anew"),
        ]
    save("upgrade", metrics, runs=runs)


if __name__ == "__main__":
    main()
