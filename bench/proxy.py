"""Failover as an application sees it: through the lab's HAProxy versus through the libpq multi-host URI.

    python bench/proxy.py               # 5 kills of the primary (about 10-15 minutes with warm images)
    python bench/proxy.py --kills 2     # fewer kills, e.g. for a smoke test

One lab cluster, bench/specs/px.yaml (`bench-px`: three data nodes, a witness and `proxy: {}`, async, the
default detection_seconds). Two writers run at the same time, one per path, each with the URI an application
would be given: `pgdock-gen dsn --lab --proxy` (through the container `bench-px-proxy`) and `pgdock-gen dsn
--lab` (multi-host, target_session_attrs=read-write). Each is `pgdock-gen drill`'s writer (drill.WriteLoad)
given that URI: it commits one numbered row about every 50 ms into a table of its own, keeps its connection,
opens a new one 0.1 s after any error, and notes when each commit was acknowledged. Both URIs get the same
client-side TCP settings (CLIENT below): without them a statement sent to a primary that vanished waits for
the kernel's retransmissions (minutes), which measures nothing of pgdock.

Per kill (`docker kill` of the primary's container): kill → first commit acknowledged by the new primary, per
path; promotion → that commit, the promotion being the new primary's own `standby_promote` event (what
`pgdock-gen events --json` shows; same clock: the containers share this machine's kernel); acknowledged
commits missing afterwards from the new primary, per path. Also kept: when a survivor first answered 200 on
the health API's /primary (what HAProxy checks) and every acknowledged commit's time (s from the kill).
Then the old primary's container is started again and the run waits until the cluster is healthy (it is
back as a streaming standby) before the next kill.
The lab is taken down with its volumes at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from common import lab_cluster, metric, others, save, stamp
from failover import evidence, repair

SPEC = "px.yaml"
PATHS = {"proxy": ("--proxy",), "multi-host": ()}
"""Each path and the `dsn --lab` flags that print its URI."""
TABLES = {"proxy": "bench_px_proxy", "multi-host": "bench_px_multihost"}
PAUSE = 0.05
"""Seconds between a writer's commits (after an error drill.WriteLoad waits 0.1 s)."""
CLIENT = "keepalives_idle=2&keepalives_interval=1&keepalives_count=2&tcp_user_timeout=4000"
"""Added to both URIs (drill.WriteLoad's own): a connection whose server vanished fails in ~4 s."""
TARGET = 2.0
"""Issue 15: through the proxy, writes resume within the failover time + 2 s (promotion → first commit)."""
RESUME_TIMEOUT = 90.0
HEALTHY_TIMEOUT = 180.0


class PrimaryWatch:
    """Asks each data node's health API /primary every ~0.1 s; remembers when each first answered 200."""

    def __init__(self, nodes: list[Any], since: float):
        self.nodes, self.since = nodes, since
        self.first_200: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in nodes]

    def _run(self, node: Any) -> None:
        from pgdock_gen import contract

        url = f"http://{node.address}:{node.api_port}{contract.API_PRIMARY}"
        while not self._stop.is_set() and node.name not in self.first_200:
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=0.5) as answer:
                    if answer.status == 200 and asked >= self.since:
                        self.first_200[node.name] = asked
            except OSError:  # 503 (urllib's HTTPError) included
                pass
            self._stop.wait(0.1)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)


def dsn(spec_path: Path, *flags: str) -> str:
    """The URI `pgdock-gen dsn --lab [flags]` prints, as a user gets it, with CLIENT added."""
    done = subprocess.run([sys.executable, "-m", "pgdock_gen", "dsn", "-f", str(spec_path), "--lab", *flags],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"pgdock-gen dsn --lab {' '.join(flags)} failed: {done.stderr.strip()}")
    return f"{done.stdout.strip()}&{CLIENT}"


def promotion(the_lab: Any, old: str, since: float) -> tuple[str | None, float | None]:
    """The first promotion event of a node other than `old` at or after `since` (time.time()): the node, and
    the event's time.time()."""
    from pgdock_gen import contract, events

    for event in events.collect(the_lab.running):
        if event.get("event") == contract.EVENT_STANDBY_PROMOTE and event["node"] != old and event.get("time"):
            at = datetime.fromisoformat(event["time"]).timestamp()
            if at >= since - 1:  # repmgr's stamp may be rounded below the kill by a fraction of a second
                return event["node"], at
    return None, None


def one_kill(the_lab: Any, uris: dict[str, str], password: str) -> dict[str, Any]:
    """Kills the primary under both writers, waits until both wrote on the new primary, lets it rejoin.
    Times are time.monotonic(); the promotion event's wall-clock time is placed on it through the kill's."""
    from pgdock_gen import drill, lab

    spec, running = the_lab.lab_spec, the_lab.running
    rows = running.wait_healthy(timeout=HEALTHY_TIMEOUT, progress=lambda m: stamp(f"  {m}"))
    old = next(r.name for r in rows if r.role == "primary")
    old_address = spec.member(old).address
    ca_file = str(the_lab.repo / "secrets" / "tls" / "ca.crt")
    writers = {path: drill.WriteLoad(spec, password, ca_file, PAUSE, uri=uri, table=TABLES[path])
               for path, uri in uris.items()}
    watch = None
    try:
        for writer in writers.values():
            writer.start()
        deadline = time.monotonic() + 20
        while any(len(w.acks) < 10 for w in writers.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("before the kill, a writer did not commit 10 rows within 20 s: "
                                   + ", ".join(f"{p} {len(w.acks)} ({w.errors} errors)" for p, w in writers.items()))
            time.sleep(0.2)
        time.sleep(2)  # both writers in their stride when the primary dies
        busy = len(others(f"{spec.cluster}-"))
        watch = PrimaryWatch([n for n in spec.nodes if n.name != old], time.monotonic())
        watch.start()
        killed, killed_wall = time.monotonic(), time.time()
        lab.container_action(the_lab.spec, old, "kill")
        kill_returned = time.monotonic() - killed
        stamp(f"  killed {old}")
        new_address, resumed = None, {}
        while len(resumed) < len(writers):
            if time.monotonic() - killed > RESUME_TIMEOUT:
                raise RuntimeError(f"writes did not resume on a new primary within {RESUME_TIMEOUT:.0f} s after "
                                   f"killing {old}; resumed: {sorted(resumed) or 'none'}")
            for path, writer in writers.items():
                after = [a for a in writer.acks if a.at > killed and a.server != old_address]
                if after and path not in resumed:
                    resumed[path] = after[0].at
                    new_address = new_address or after[0].server
            time.sleep(0.1)
        time.sleep(1)
    finally:
        for writer in writers.values():
            writer.stop()
        if watch is not None:
            watch.stop()
    new = next(n.name for n in spec.nodes if n.address == new_address)
    promoted_node, promoted_wall = promotion(the_lab, old, killed_wall)
    promoted = None if promoted_wall is None else killed + (promoted_wall - killed_wall)  # as time.monotonic()
    lost = {path: len(writer.lost()) for path, writer in writers.items()}
    stamp(f"  {new} took over; starting {old} again")
    lab.container_action(the_lab.spec, old, "start")
    running.wait_healthy(timeout=HEALTHY_TIMEOUT, progress=lambda m: stamp(f"  {m}"))
    rejoined = time.monotonic() - killed
    api = watch.first_200.get(new)
    report: dict[str, Any] = {
        "old_primary": old, "new_primary": new, "promotion_event_node": promoted_node,
        "promotion_after_kill_s": None if promoted is None else round(promoted - killed, 3),
        "api_primary_after_kill_s": None if api is None else round(api - killed, 3),
        "rejoined_healthy_after_kill_s": round(rejoined, 2), "kill_command_s": round(kill_returned, 3),
        "other_containers": busy}
    for path, writer in writers.items():
        first = next((a.at for a in writer.acks if a.at > killed and a.server == new_address), None)
        report[path] = {
            "kill_to_commit_s": None if first is None else round(first - killed, 3),
            "promotion_to_commit_s": None if first is None or promoted is None else round(first - promoted, 3),
            "acked_commits": len(writer.acks), "errors": writer.errors, "lost_commits": lost[path],
            "acks_s": [round(a.at - killed, 3) for a in writer.acks]}
    return report


def run(kills: int) -> list[dict[str, Any]]:
    from pgdock_gen import lab

    reports: list[dict[str, Any]] = []
    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-proxy-") as tmp, \
            lab_cluster(SPEC, Path(tmp)) as (spec_path, loaded):
        the_lab = lab.prepare(spec_path, loaded)
        password = (the_lab.repo / "secrets" / "passwords" / "app").read_text().strip()
        uris = {path: dsn(spec_path, *flags) for path, flags in PATHS.items()}
        for i in range(kills):
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            try:
                report = one_kill(the_lab, uris, password)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed kill is a result too; the next one retries
                report = {"error": f"{type(exc).__name__}: {exc}",
                          "logs": {n.name: evidence(the_lab.container(n.name), since)
                                   for n in the_lab.lab_spec.members}}
                stamp(f"kill {i + 1}/{kills} failed: {report['error']}; repairing the cluster")
                repair(the_lab, loaded, spec_path, quiet)
            reports.append(report)
            if "error" not in report:
                stamp(f"kill {i + 1}/{kills}: {report['old_primary']} → {report['new_primary']}, promotion "
                      f"{report['promotion_after_kill_s']} s after the kill; " + "; ".join(
                          f"{p}: kill→commit {report[p]['kill_to_commit_s']} s, promotion→commit "
                          f"{report[p]['promotion_to_commit_s']} s, lost {report[p]['lost_commits']}"
                          for p in PATHS))
    return reports


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in reports if "error" not in r]
    out: dict[str, Any] = {"kills": len(reports), "failed": len(reports) - len(good),
                           "errors": [r["error"] for r in reports if "error" in r]}
    for key in ("promotion_after_kill_s", "api_primary_after_kill_s", "rejoined_healthy_after_kill_s"):
        found = [r[key] for r in good if r.get(key) is not None]
        out[key] = {"median": statistics.median(found), "max": max(found)} if found else None
    for path in PATHS:
        mine = [r[path] for r in good]
        out[path] = {"lost_commits_sum": sum(m["lost_commits"] for m in mine),
                     "acked_commits_sum": sum(m["acked_commits"] for m in mine)}
        for key in ("kill_to_commit_s", "promotion_to_commit_s"):
            found = [m[key] for m in mine if m[key] is not None]
            out[path][key] = {"median": statistics.median(found), "max": max(found)} if found else None
    return out


def metrics(s: dict[str, Any]) -> list[dict[str, Any]]:
    failed = f", {s['failed']} failed ({'; '.join(s['errors'])})" if s["failed"] else ""
    runs = f"{s['kills']} kills of the primary{failed}"
    promo = s["promotion_after_kill_s"] or {}
    api = s["api_primary_after_kill_s"] or {}
    context = (f"promotion (the new primary's standby_promote event) {promo.get('median')} s median after the "
               f"kill, its /primary 200 at {api.get('median')} s")
    rows = []
    for path, label in (("proxy", "through HAProxy (`dsn --lab --proxy`)"),
                        ("multi-host", "through the libpq multi-host URI (`dsn --lab`)")):
        kill, after = s[path]["kill_to_commit_s"] or {}, s[path]["promotion_to_commit_s"] or {}
        if path == "proxy":
            ok = None if not after else after["max"] <= TARGET and not s["failed"]
            rows.append(metric(
                f"app failover {label}: promotion → first commit, median", after.get("median"), "s",
                f"≤ {TARGET:g} s in every kill (issue 15)", ok,
                f"max {after.get('max')} s over {runs}; kill → first commit median {kill.get('median')} s "
                f"(max {kill.get('max')} s); {context}", summary=s[path]))
        else:
            rows.append(metric(
                f"app failover {label}: promotion → first commit, median", after.get("median"), "s", "", None,
                f"max {after.get('max')} s over {runs}, same kills as the proxy row; kill → first commit median "
                f"{kill.get('median')} s (max {kill.get('max')} s); each reconnect tries the hosts in order, a "
                "dead one costs up to connect_timeout (3 s)", summary=s[path]))
    lost = sum(s[p]["lost_commits_sum"] for p in PATHS)
    rows.append(metric(
        "app failover, acknowledged commits lost (both paths, sum over kills)", lost, "commits", "", None,
        ", ".join(f"{p} {s[p]['lost_commits_sum']} of {s[p]['acked_commits_sum']}" for p in PATHS)
        + f" acknowledged; {runs}; async replication (bench/specs/px.yaml), where a commit acknowledged in the "
        "last milliseconds before the kill may never have reached the new primary: no target here, as in "
        "bench/failover.py's async rows (its sync rows hold 0)"))
    return rows


def interrupted(signum: int, frame: object) -> None:
    """SIGTERM (`timeout`, a service manager) cleans up as Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  flock /tmp/docker.lock python3 bench/proxy.py --kills 5\n\nwrites bench/results/"
               "proxy.json; `python3 bench/run.py --readme` puts its rows in README.md's Benchmarks table")
    parser.add_argument("--kills", type=int, default=5, metavar="N", help="kills of the primary (default 5)")
    args = parser.parse_args()
    if not 1 <= args.kills <= 50:
        parser.error(f"--kills {args.kills}: give a number from 1 to 50")
    signal.signal(signal.SIGTERM, interrupted)
    try:
        reports = run(args.kills)
    except KeyboardInterrupt:
        raise SystemExit("bench/proxy.py: interrupted; the lab cluster was taken down, no results written") from None
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback (the lab is down by now)
        raise SystemExit(f"bench/proxy.py: {type(exc).__name__}: {exc} (the lab cluster was taken down)") from None
    s = summary(reports)
    save("proxy", metrics(s), spec=f"bench/specs/{SPEC}", kills=args.kills, pause_s=PAUSE,
         client_options=CLIENT, summary=s, reports=reports)
    if s["failed"] == s["kills"]:
        raise SystemExit("bench/proxy.py: every kill failed; see bench/results/proxy.json")


if __name__ == "__main__":
    main()
