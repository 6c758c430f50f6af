"""Day-2 operations (issue 12): a rolling restart under writes, and a reinit of a 1 GB standby.

    python bench/day2.py [--scale 70]     # pgbench scale 70 ≈ 1 GB (about 10 minutes)

On bench/specs/ha.yaml (three data nodes and a witness, asynchronous) in the lab:
1. `pgdock-gen restart --all --yes` while drill's writer commits every 20 ms: total time, the longest
   gap between two acknowledged commits, and acknowledged commits missing afterwards;
2. `pgbench -i` fills the database, then `pgdock-gen reinit` re-clones a standby: the time until it
   streams again, against a floor: reading the primary's data directory once (`tar -c | cat`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, metric, save, sh

SPEC = "ha.yaml"


def stamp(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def pgdock(spec_path: Path, *args: str) -> float:
    """Runs `pgdock-gen ARGS -f SPEC --lab`; returns the seconds it took."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pgdock_gen", *args, "-f", str(spec_path), "--lab"], check=True)
    return time.perf_counter() - start


def rolling_restart(the_lab, spec_path: Path) -> dict[str, float]:
    from pgdock_gen import drill

    secrets = the_lab.repo / "secrets"
    load = drill.WriteLoad(the_lab.lab_spec, (secrets / "passwords" / "app").read_text().strip(),
                           str(secrets / "tls" / "ca.crt"))
    load.start()
    try:
        time.sleep(3)
        began = time.monotonic()
        total = pgdock(spec_path, "restart", "--all", "--yes")
        ended = time.monotonic()
        time.sleep(3)
    finally:
        load.stop()
    stamps = [began] + [a.at for a in load.acks if began < a.at < ended] + [ended]
    gap = max(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    return {"total_s": round(total, 1), "longest_gap_s": round(gap, 2), "acked": len(load.acks),
            "lost": len(load.lost())}


def reinit(the_lab, spec_path: Path, scale: int) -> dict[str, float]:
    from pgdock_gen import cluster

    running = cluster.Running(the_lab.lab_spec, True)
    rows = running.status()
    primary = next(r.name for r in rows if r.role == "primary")
    standby = next(r.name for r in rows if r.role == "standby")
    container = the_lab.container(primary)
    port = str(the_lab.lab_spec.member(primary).port)
    stamp(f"pgbench -i -s {scale} on {primary}")
    sh("docker", "exec", "-u", "postgres", container, "pgbench", "-i", "-q", "-s", str(scale), "-h",
       "/var/run/postgresql", "-p", port, "app")
    size = int(sh("docker", "exec", "-u", "postgres", container, "psql", "-XAtq", "-h", "/var/run/postgresql",
                  "-p", port, "-c", "SELECT sum(pg_database_size(oid)) FROM pg_database"))
    running.wait_healthy(timeout=600, progress=stamp)
    start = time.perf_counter()
    sh("docker", "exec", "-u", "postgres", container, "sh", "-c", "tar -cf - -C \"$PGDATA\" . | cat > /dev/null")
    floor = time.perf_counter() - start
    stamp(f"reinit {standby} ({size / 1e9:.2f} GB)")
    took = pgdock(spec_path, "reinit", standby, "--yes", "--timeout", "900")
    return {"reinit_s": round(took, 1), "read_once_s": round(floor, 1), "bytes": size, "node": standby}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (default 70 ≈ 1 GB)")
    args = parser.parse_args()
    from pgdock_gen import lab, spec

    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-day2-") as tmp:
        spec_path = Path(tmp) / "cluster.yaml"
        shutil.copy(BENCH / "specs" / SPEC, spec_path)
        loaded = spec.load(spec_path)
        try:
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            lab.up(spec_path, loaded, timeout=300, progress=stamp)
            the_lab = lab.prepare(spec_path, loaded)
            restart = rolling_restart(the_lab, spec_path)
            stamp(f"rolling restart: {restart}")
            clone = reinit(the_lab, spec_path, args.scale)
            stamp(f"reinit: {clone}")
        finally:
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
    metrics = [
        metric("rolling restart of 3 data nodes + witness under writes (`restart --all`): total", restart["total_s"],
               "s", notes="standbys and witness recreated one by one, each healthy before the next, then a "
               "switchover, then the old primary"),
        metric("rolling restart: longest gap between acknowledged commits", restart["longest_gap_s"], "s", "≤ 2 s",
               restart["longest_gap_s"] <= 2, f"{restart['acked']} commits acknowledged during the run, async"),
        metric("rolling restart: acknowledged commits lost", restart["lost"], "", "0", restart["lost"] == 0,
               "each acknowledged id looked up afterwards"),
        metric(f"reinit of a standby, {clone['bytes'] / 1e9:.2f} GB (`reinit --yes` until it streams)",
               clone["reinit_s"], "s",
               notes=f"floor, same run: reading the primary's data directory once (tar -c | cat) "
               f"{clone['read_once_s']} s; the clone copies it over the network (repmgr standby clone)"),
    ]
    save("day2", metrics, restart=restart, reinit=clone)


if __name__ == "__main__":
    main()
