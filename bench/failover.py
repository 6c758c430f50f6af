"""Failover, switchover and rejoin under a write load: `pgdock-gen drill` repeated on two lab clusters.

    python bench/failover.py [--runs 5]     # full run (about 20-25 minutes)
    python bench/failover.py --quick        # one run of each, for smoke testing
    python bench/failover.py --merge --scenario ha.yaml:switchover   # more runs, added to failover.json
    python bench/failover.py --report       # rebuild the metrics from the runs in failover.json

Clusters: bench/specs/ha.yaml (`bench-ha`, three data nodes + witness, async, the default
detection_seconds) gets kill-primary, isolate-primary with packets dropped and with connections
reset, and switchover; bench/specs/ha5.yaml (`bench-ha5`, five data nodes + witness) gets
isolate-primary with packets dropped; bench/specs/hasync.yaml (`bench-hasync`, two data nodes +
witness, replication.mode sync) gets kill-primary. Each run is pgdock_gen.drill.run: a writer
commits numbered rows to whichever node takes writes and a sampler asks every data node whether it
accepts writes; the report gives the time from the fault to the first commit acknowledged by the
new primary and its phases (detection, election, promotion, first write, and when the isolated
primary fenced itself), the longest gap between acknowledged commits, acknowledged commits missing
afterwards, the most nodes seen writable at once, and the time until the old primary has rejoined
and the cluster is healthy again. Each cluster is brought up once (warm images) and taken down with its
volumes at the end, even on failure. A failed run is recorded with its error and the nodes' recent
repmgrd/agent log lines; then every node is healed and started, and if the cluster is still not
healthy a fresh one is brought up. Note: a healed cluster can look healthy while a repmgrd is still
wedged (see the README), so after a failure later runs of the same cluster may fail too.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import common
from common import RESULTS, lab_cluster, metric, others, save, stamp

# Published figures from ../shared/research/anchors-ha.md, "Numbers to beat" (defaults, not measured here).
PUBLISHED_FAILOVER = ("repmgr defaults ~50–62 s to election; Bitnami repmgr ~12–27 s; Patroni ~30–40 s; "
                      "pg_auto_failover 20–30 s; CloudNativePG e2e < 10 s (40–80 s on node loss)")
PUBLISHED_SWITCHOVER = "CloudNativePG e2e < 20 s"
PUBLISHED_REJOIN = "CloudNativePG degraded→healthy < 60 s; Bitnami rejoins by full re-clone (120 GB ≈ 30 min)"
PUBLISHED_SPLIT = "Bitnami repmgr: documented split-brain path when peers are briefly unreachable"

PLAN = (("ha.yaml", (("kill-primary", "-"), ("isolate-primary", "drop"), ("isolate-primary", "reject"),
                     ("switchover", "-"))),
        ("ha5.yaml", (("isolate-primary", "drop"),)),
        ("hasync.yaml", (("kill-primary", "-"),)))
PHASES = ("detection", "election", "promotion", "first_write", "fenced")


def label(scenario: str, partition: str) -> str:
    return scenario if partition == "-" else f"{scenario}/{partition}"


def evidence(container: str, since: str) -> str:
    """The container's log since `since` (repmgrd and agent lines), kept in the JSON of a failed run."""
    out = subprocess.run(["docker", "logs", "--since", since, container], capture_output=True, text=True)
    lines = [line for line in (out.stdout + out.stderr).splitlines()
             if line.startswith(("[", "pgdock-agent", "ERROR", "NOTICE")) and "ping" not in line]
    return "\n".join(lines[-40:])


def repair(the_lab, loaded, spec_path: Path, quiet) -> None:
    """After a failed run: heal and start every node; if the cluster is still not healthy, a fresh one."""
    from pgdock_gen import cluster, lab
    from pgdock_gen.errors import PgdockError

    for node in the_lab.lab_spec.members:
        for action in ("heal", "start"):
            try:
                lab.container_action(the_lab.spec, node.name, action)
            except Exception as exc:  # noqa: BLE001 - best effort
                stamp(f"  repair: {action} {node.name}: {exc}")
    try:
        cluster.Running(the_lab.lab_spec, True).wait_healthy(timeout=120, progress=stamp)
    except PgdockError as exc:
        stamp(f"{loaded.cluster} not healthy after healing ({exc}); bringing up a fresh cluster")
        lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
        lab.up(spec_path, loaded, timeout=300, progress=quiet)


def run_cluster(spec_file: str, scenarios: tuple[tuple[str, str], ...], runs: int,
                tmp: Path) -> dict[str, list[dict]]:
    from pgdock_gen import cluster, drill, lab
    from pgdock_gen.errors import PgdockError

    quiet = lambda message: None  # noqa: E731
    results: dict[str, list[dict]] = {label(*s): [] for s in scenarios}
    with lab_cluster(spec_file, tmp) as (spec_path, loaded):
        the_lab = lab.prepare(spec_path, loaded)
        for scenario, partition in scenarios:
            for i in range(runs):
                try:
                    cluster.Running(the_lab.lab_spec, True).wait_healthy(timeout=180, progress=stamp)
                except PgdockError as exc:
                    stamp(f"{loaded.cluster} is not healthy; skipping its remaining runs: {exc}")
                    return results
                busy = others("bench-ha-", "bench-ha5-", "bench-hasync-")
                since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                try:
                    report = drill.run(the_lab, scenario, partition="drop" if partition == "-" else partition,
                                       progress=lambda m: stamp(f"  {m}")).as_dict()
                except Exception as exc:  # noqa: BLE001 - a failed run is a result too; the next one retries
                    traceback.print_exc()
                    report = {"scenario": scenario, "error": f"{type(exc).__name__}: {exc}",
                              "logs": {n.name: evidence(the_lab.container(n.name), since)
                                       for n in the_lab.lab_spec.members}}
                    repair(the_lab, loaded, spec_path, quiet)
                report["other_containers"] = len(busy)
                results[label(scenario, partition)].append(report)
                stamp(f"{loaded.cluster} {label(scenario, partition)} run {i + 1}/{runs}: "
                      + ", ".join(f"{k}={v}" for k, v in report.items() if k != "scenario"))
    return results


def values(reports: list[dict], key: str) -> list[float]:
    return [r[key] for r in reports if r.get(key) is not None]


def median_max(reports: list[dict], key: str) -> tuple[float | None, float | None]:
    found = values(reports, key)
    return (statistics.median(found), max(found)) if found else (None, None)


def summary(reports: list[dict]) -> dict[str, object]:
    good = [r for r in reports if "error" not in r]
    lost = values(good, "lost_commits")
    out: dict[str, object] = {"runs": len(reports), "failed_runs": len(reports) - len(good),
                              "errors": [r["error"] for r in reports if "error" in r],
                              "lost_commits_sum": sum(lost), "lost_commits_max": max(lost, default=None),
                              "acked_commits_sum": sum(values(good, "acked_commits")),
                              "max_writable_primaries": max(values(good, "max_writable_primaries"), default=None),
                              "rejoined_by": dict(collections.Counter(r["rejoined_by"] for r in good)),
                              "new_primaries": dict(collections.Counter(r["new_primary"] for r in good))}
    # roughly the rejoin alone: the drill restarts / heals the old primary once the new one is promoted
    since = [r["recovered_after_s"] - r["writes_resumed_after_s"] for r in good
             if r.get("recovered_after_s") is not None and r.get("writes_resumed_after_s") is not None]
    out["rejoin_after_promotion_s_median"] = round(statistics.median(since), 1) if since else None
    for key in ("writes_resumed_after_s", "longest_write_gap_s", "recovered_after_s"):
        med, top = median_max(good, key)
        out[f"{key}_median"], out[f"{key}_max"] = med, top
    phases = [r.get("phases") or {} for r in good]
    out["phases_median"] = {p: round(statistics.median(v), 2) if (v := [ph[p] for ph in phases
                                                                        if ph.get(p) is not None]) else None
                            for p in PHASES}
    margins = [ph["promotion"] - ph["fenced"] for ph in phases
               if ph.get("promotion") is not None and ph.get("fenced") is not None]
    out["fence_margin_s_min"] = round(min(margins), 2) if margins else None
    out["fenced_runs"] = len(margins)
    return out


def phases_note(s: dict[str, object]) -> str:
    return "phases (median s after the fault): " + ", ".join(
        f"{p} {v}" for p, v in s["phases_median"].items() if v is not None)


def runs_note(s: dict[str, object]) -> str:
    errors = "; ".join(f"{e} ×{n}" for e, n in collections.Counter(
        re.sub(r"the primary h\d", "the primary", e) for e in s["errors"]).items())
    failed = f", {s['failed_runs']} of them failed ({errors})" if s["failed_runs"] else ""
    return f"{s['runs']} runs{failed}"


def rejoin_note(s: dict[str, object]) -> str:
    return ", ".join(f"{how} ×{n}" for how, n in sorted(s["rejoined_by"].items())) or "none"


SYNC_NOTE = ("; with two data nodes a commit on the new primary waits for a synchronous standby, i.e. for the "
             "old primary to rejoin (RPO 0 by design), so this includes part of the rejoin")
REJOIN_HOW = {"switchover": " (resume: repmgr's switchover demotes and rewinds the old primary itself)"}


def le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    parser.add_argument("--quick", action="store_true", help="one run of each scenario (smoke test)")
    parser.add_argument("--scenario", action="append", metavar="SPEC:SCENARIO",
                        help="run only these, e.g. ha.yaml:switchover (repeatable); with --merge, added to the "
                             "runs already in bench/results/failover.json")
    parser.add_argument("--merge", action="store_true", help="add these runs to the ones in failover.json")
    parser.add_argument("--report", action="store_true",
                        help="run nothing; rebuild the metrics from the runs in bench/results/failover.json")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs

    raw: dict[str, dict[str, list[dict]]] = {}
    previous = {}
    if args.report or args.merge:
        previous = json.loads((RESULTS / "failover.json").read_text())
        raw, runs = previous["reports"], max(runs, previous["runs_per_scenario"])
    if not args.report:
        with tempfile.TemporaryDirectory(prefix="pgdock-bench-failover-") as tmp:
            for spec_file, scenarios in PLAN:
                chosen = tuple(s for s in scenarios if not args.scenario or f"{spec_file}:{label(*s)}" in args.scenario)
                if chosen:
                    for scenario, reports in run_cluster(spec_file, chosen, runs, Path(tmp)).items():
                        raw.setdefault(spec_file, {}).setdefault(scenario, []).extend(reports)
        if args.merge:
            previous = {}  # the machine info of this run

    sums = {f"{spec_file}:{scenario}": summary(reports)
            for spec_file, by_scenario in raw.items() for scenario, reports in by_scenario.items()}
    kill, switch = sums["ha.yaml:kill-primary"], sums["ha.yaml:switchover"]
    isolate, reject = sums["ha.yaml:isolate-primary/drop"], sums["ha.yaml:isolate-primary/reject"]
    isolate5, sync = sums["ha5.yaml:isolate-primary/drop"], sums["hasync.yaml:kill-primary"]
    metrics = []
    for name, s, target in (
            ("failover after kill-primary, async 3 nodes + witness", kill, 7),
            ("failover after isolate-primary (packets dropped), async 3 nodes + witness", isolate, 10),
            ("failover after isolate-primary (connections reset), async 3 nodes + witness", reject, 10),
            ("failover after isolate-primary (packets dropped), async 5 nodes + witness", isolate5, 10),
            ("failover after kill-primary, sync 2 nodes + witness", sync, 15)):
        med, top = s["writes_resumed_after_s_median"], s["writes_resumed_after_s_max"]
        metrics.append(metric(
            f"{name}: writes resumed on the new primary, median", med, "s", f"≤ {target} s",
            le(med, target) and not s["failed_runs"] if med is not None else None,
            f"max {top} s over {runs_note(s)} (fault → first commit acknowledged by the new primary, default "
            f"detection_seconds 5); {phases_note(s)}" + SYNC_NOTE * (s is sync),
            published=PUBLISHED_FAILOVER, summary=s))
    for name, s in (("3 nodes + witness, packets dropped", isolate), ("3 nodes + witness, connections reset", reject),
                    ("5 nodes + witness, packets dropped", isolate5)):
        margin = s["fence_margin_s_min"]
        metrics.append(metric(
            f"isolated primary fenced before the promotion, {name}: smallest margin over runs", margin, "s",
            "> 0 s in every run (designed ≥ 1 s)",
            None if margin is None else margin > 0 and s["fenced_runs"] == s["runs"] - s["failed_runs"],
            f"promotion event time − the old primary's pgdock_fenced time; fenced in {s['fenced_runs']} of "
            f"{runs_note(s)}; fence median {s['phases_median']['fenced']} s, promotion median "
            f"{s['phases_median']['promotion']} s after the fault", summary=s))
    med, top = switch["longest_write_gap_s_median"], switch["longest_write_gap_s_max"]
    metrics.append(metric(
        "switchover write downtime (longest gap between acknowledged commits), async, median", med, "s", "≤ 10 s",
        le(med, 10), f"max {top} s over {runs_note(switch)}; first commit on the new primary after a median "
        f"{switch['writes_resumed_after_s_median']} s from the start of `switchover` (its checks included)",
        published=PUBLISHED_SWITCHOVER, summary=switch))
    for name, s in (("kill-primary", kill), ("isolate-primary", isolate), ("switchover", switch),
                    ("sync kill-primary", sync)):
        med, top = s["recovered_after_s_median"], s["recovered_after_s_max"]
        metrics.append(metric(
            f"rejoin after {name}: fault → old primary back as standby, cluster healthy, median", med, "s",
            "≤ 30 s", le(med, 30), f"max {top} s over {runs_note(s)}; rejoined by {rejoin_note(s)}"
            f"{REJOIN_HOW.get(name, '')}; timed from the fault, so failover is included: ≈ "
            f"{s['rejoin_after_promotion_s_median']} s median after the new primary took over",
            published=PUBLISHED_REJOIN, summary=s))
    async_lost = [kill, isolate, reject, isolate5, switch]
    metrics.append(metric(
        "acknowledged commits lost, sync kill-primary (sum over runs)", sync["lost_commits_sum"], "commits", "0",
        sync["lost_commits_sum"] == 0 if sync["runs"] - sync["failed_runs"] else None,
        f"max {sync['lost_commits_max']} per run over {runs_note(sync)}, "
        f"{sync['acked_commits_sum']} commits acknowledged (writes block, never degrade to async, while no "
        "standby is left)"))
    metrics.append(metric(
        "acknowledged commits lost, async (sum over kill / isolate / switchover runs)",
        sum(s["lost_commits_sum"] for s in async_lost), "commits", "", None,
        "max per run: " + ", ".join(f"{n} {s['lost_commits_max']}" for n, s in
                                    (("kill", kill), ("isolate", isolate), ("reject", reject), ("5 nodes", isolate5),
                                     ("switchover", switch)))
        + f"; {sum(s['acked_commits_sum'] for s in async_lost)} commits acknowledged; async may lose the "
        "last commits not yet streamed"))
    writable = [s["max_writable_primaries"] for s in sums.values() if s["max_writable_primaries"] is not None]
    metrics.append(metric(
        "most data nodes accepting writes at once, over all runs", max(writable, default=None), "", "1",
        (max(writable) == 1) if writable else None,
        "`SELECT NOT pg_is_in_recovery()` on every data node every ~0.3 s during each run; >1 would be split brain",
        published=PUBLISHED_SPLIT))
    if previous:  # keep the machine info of the run itself
        common.machine = lambda: previous["machine"]
    save("failover", metrics, runs_per_scenario=runs,
         specs=["bench/specs/ha.yaml", "bench/specs/ha5.yaml", "bench/specs/hasync.yaml"],
         summaries=sums, reports=raw)


if __name__ == "__main__":
    main()
