"""False failovers under load: a lab cluster with the default failover setting, a pgbench write load and
CPU stress on every core for ten minutes; any promotion or fence in that time is a false one.

    python bench/soak.py                 # 10 minutes (bench/specs/ha.yaml: 3 data nodes + witness)
    python bench/soak.py --minutes 2     # shorter, for smoke testing

pgbench (Debian's postgresql-client) writes through TLS to the primary with 4 clients; stress-ng
(Debian's stress-ng, installed here when missing) runs one CPU worker per core. Afterwards the
nodes' own events are counted: promotions (repmgr's and pgdock's), fences, step-downs; the
primary must be the one it was, on the same timeline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import BENCH, metric, save

FALSE_EVENTS = ("repmgrd_failover_promote", "standby_promote", "pgdock_fenced", "pgdock_step_down",
                "pgdock_twin_primary")
ELECTIONS = ("pgdock_promote_wait", "pgdock_promote_refused")
"""An election the promotion gate turned down is no failover, but it is counted and shown."""


def ensure_stress_ng() -> str:
    if shutil.which("stress-ng") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "stress-ng"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("stress-ng") or "stress-ng"


def main() -> None:
    from pgdock_gen import contract, events, lab, spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    stress = ensure_stress_ng()
    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-soak-") as tmp:
        spec_path = Path(tmp) / "cluster.yaml"
        shutil.copy(BENCH / "specs" / "ha.yaml", spec_path)
        loaded = spec.load(spec_path)
        lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
        try:
            the_lab, rows = lab.up(spec_path, loaded, timeout=300, progress=quiet)
            primary = next(r for r in rows if r.role == "primary")
            node = the_lab.lab_spec.member(primary.name)
            secrets = the_lab.repo / "secrets"
            pg_env = {**os.environ, "PGHOST": node.address, "PGPORT": str(node.port), "PGUSER": loaded.user,
                      "PGDATABASE": loaded.database, "PGSSLMODE": "verify-full",
                      "PGSSLROOTCERT": str(secrets / "tls" / "ca.crt"),
                      "PGPASSWORD": (secrets / "passwords" / "app").read_text().strip()}
            subprocess.run(["pgbench", "-i", "-q", "-s", "10"], env=pg_env, check=True, capture_output=True)
            seconds = int(args.minutes * 60)
            since = datetime.now(UTC).isoformat(timespec="milliseconds")
            print(f"{time.strftime('%H:%M:%S')} soak: {seconds} s of pgbench + stress-ng on {os.cpu_count()} cores",
                  flush=True)
            load = subprocess.Popen(["pgbench", "-c", "4", "-j", "2", "-T", str(seconds), "-n"], env=pg_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            cpu = subprocess.Popen([stress, "--cpu", str(os.cpu_count()), "--timeout", f"{seconds}s", "--quiet"])
            out, _ = load.communicate()
            cpu.wait()
            tps = re.search(r"tps = ([\d.]+)", out)
            failed = re.search(r"number of failed transactions: (\d+)", out)
            found = [e for e in events.collect(the_lab.running) if e.get("time", "") >= since]
            false = [e for e in found if e["event"] in FALSE_EVENTS]
            elections = [e for e in found if e["event"] in ELECTIONS]
            after = {r.name: r for r in the_lab.running.status()}
        finally:
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
    same = after[primary.name].role == "primary" and after[primary.name].timeline == primary.timeline
    metrics = [
        metric("false failovers and fences in a soak under write load and CPU stress", len(false), "events", "0",
               len(false) == 0 and same,
               f"{args.minutes:g} min, default failover.detection_seconds ({loaded.detection_seconds} s), 3 data "
               f"nodes + witness; pgbench 4 clients {tps.group(1) if tps else '?'} tps"
               f"{f', {failed.group(1)} failed transactions' if failed else ''} while stress-ng ran "
               f"{os.cpu_count()} CPU workers; primary {primary.name} still primary on timeline "
               f"{primary.timeline}: {same}; events seen: "
               + (", ".join(f"{e['node']} {e['event']}" for e in false) or "none")
               + f"; elections held and turned down by the promotion gate: "
               f"{sum(e['event'] == 'pgdock_promote_refused' for e in elections)}",
               events=false, elections=elections, pgbench_output=out[-2000:],
               contract_events=list(contract.PROMOTION_EVENTS))]
    save("soak", metrics, minutes=args.minutes, spec="bench/specs/ha.yaml")


if __name__ == "__main__":
    main()
