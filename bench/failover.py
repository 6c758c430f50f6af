"""Failover, switchover and rejoin under a write load: `pgdock-gen drill` repeated on two lab clusters.

    python bench/failover.py [--runs 5]     # full run (about 20-25 minutes)
    python bench/failover.py --quick        # one run of each, for smoke testing

Clusters: bench/specs/ha.yaml (`bench-ha`, three data nodes + witness, async) gets kill-primary,
isolate-primary and switchover; bench/specs/hasync.yaml (`bench-hasync`, two data nodes + witness,
replication.mode sync) gets kill-primary. Each run is generator.drill.run: a writer commits numbered
rows through the read-write multi-host URI and a sampler asks every data node whether it accepts
writes; the report gives the time from the fault to the first commit acknowledged by the new
primary, the longest gap between acknowledged commits, acknowledged commits missing afterwards,
the most nodes seen writable at once, and the time until the old primary has rejoined and the
cluster is healthy again. Each cluster is brought up once (warm images) and taken down with its
volumes at the end, even on failure. A failed run is recorded with its error; the next run waits
for the cluster to be healthy again, and the cluster's remaining runs are skipped if it is not.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import tempfile
import time
import traceback
from pathlib import Path

from common import BENCH, metric, save, sh

# Published figures from ../shared/research/anchors-ha.md, "Numbers to beat" (defaults, not measured here).
PUBLISHED_FAILOVER = ("published: repmgr defaults ~50–62 s to election, Bitnami repmgr ~12–27 s, Patroni ~30–40 s, "
                      "pg_auto_failover 20–30 s, CloudNativePG e2e < 10 s (40–80 s on node loss)")
PUBLISHED_SWITCHOVER = "published: CloudNativePG e2e < 20 s"
PUBLISHED_REJOIN = ("published: CloudNativePG degraded→healthy < 60 s; Bitnami rejoins by full re-clone "
                    "(120 GB ≈ 30 min)")
PLAN = (("ha.yaml", ("kill-primary", "isolate-primary", "switchover")), ("hasync.yaml", ("kill-primary",)))


def stamp(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def others() -> list[str]:
    """Containers on the engine that are not this benchmark's: load that may have skewed the timings."""
    names = sh("docker", "ps", "--format", "{{.Names}}", check=False).splitlines()
    return sorted(n for n in names if not n.startswith(("bench-ha-", "bench-hasync-")))


def run_cluster(spec_file: str, scenarios: tuple[str, ...], runs: int, tmp: Path) -> dict[str, list[dict]]:
    from generator import cluster, drill, lab, spec
    from generator.errors import PgdockError

    quiet = lambda message: None  # noqa: E731
    spec_path = tmp / spec_file.replace(".yaml", "") / "cluster.yaml"
    spec_path.parent.mkdir()
    shutil.copy(BENCH / "specs" / spec_file, spec_path)
    loaded = spec.load(spec_path)
    results: dict[str, list[dict]] = {s: [] for s in scenarios}
    try:
        lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)  # leftovers of an earlier run
        start = time.perf_counter()
        lab.up(spec_path, loaded, timeout=300, progress=quiet)
        stamp(f"{loaded.cluster} healthy after {time.perf_counter() - start:.1f} s")
        the_lab = lab.prepare(spec_path, loaded)
        for scenario in scenarios:
            for i in range(runs):
                try:
                    cluster.wait_healthy(the_lab.lab_spec, lab=True, timeout=180, progress=stamp)
                except PgdockError as exc:
                    stamp(f"{loaded.cluster} is not healthy; skipping its remaining runs: {exc}")
                    return results
                busy = others()
                try:
                    report = drill.run(the_lab, scenario, progress=lambda m: stamp(f"  {m}")).as_dict()
                except Exception as exc:  # noqa: BLE001 - a failed run is a result too; the next one retries
                    traceback.print_exc()
                    report = {"scenario": scenario, "error": f"{type(exc).__name__}: {exc}"}
                report["other_containers"] = len(busy)
                results[scenario].append(report)
                stamp(f"{loaded.cluster} {scenario} run {i + 1}/{runs}: "
                      + ", ".join(f"{k}={v}" for k, v in report.items() if k != "scenario"))
    finally:
        lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
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
    for key in ("writes_resumed_after_s", "longest_write_gap_s", "recovered_after_s"):
        med, top = median_max(good, key)
        out[f"{key}_median"], out[f"{key}_max"] = med, top
    return out


def runs_note(s: dict[str, object]) -> str:
    failed = f", {s['failed_runs']} failed ({'; '.join(map(str, s['errors']))[:200]})" if s["failed_runs"] else ""
    return f"{s['runs']} runs{failed}"


def rejoin_note(s: dict[str, object]) -> str:
    return ", ".join(f"{how} ×{n}" for how, n in sorted(s["rejoined_by"].items())) or "none"


def le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    parser.add_argument("--quick", action="store_true", help="one run of each scenario (smoke test)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs

    raw: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-failover-") as tmp:
        for spec_file, scenarios in PLAN:
            raw[spec_file] = run_cluster(spec_file, scenarios, runs, Path(tmp))

    sums = {f"{spec_file}:{scenario}": summary(reports)
            for spec_file, by_scenario in raw.items() for scenario, reports in by_scenario.items()}
    kill, isolate, switch = sums["ha.yaml:kill-primary"], sums["ha.yaml:isolate-primary"], sums["ha.yaml:switchover"]
    sync = sums["hasync.yaml:kill-primary"]
    metrics = []
    for name, s in (("failover after kill-primary, async 3 nodes + witness", kill),
                    ("failover after isolate-primary, async 3 nodes + witness", isolate),
                    ("failover after kill-primary, sync 2 nodes + witness", sync)):
        med, top = s["writes_resumed_after_s_median"], s["writes_resumed_after_s_max"]
        metrics.append(metric(
            f"{name}: writes resumed on the new primary, median", med, "s", "≤ 15 s (aim 10 s)", le(med, 15),
            f"max {top} s over {runs_note(s)} (fault → first commit acknowledged by the new primary, "
            f"detection_seconds 10); {PUBLISHED_FAILOVER}", summary=s))
    med, top = switch["longest_write_gap_s_median"], switch["longest_write_gap_s_max"]
    metrics.append(metric(
        "switchover write downtime (longest gap between acknowledged commits), async, median", med, "s", "≤ 10 s",
        le(med, 10), f"max {top} s over {runs_note(switch)}; first commit on the new primary after a median "
        f"{switch['writes_resumed_after_s_median']} s from the start of `switchover`; {PUBLISHED_SWITCHOVER}",
        summary=switch))
    for name, s in (("kill-primary", kill), ("isolate-primary", isolate), ("switchover", switch),
                    ("sync kill-primary", sync)):
        med, top = s["recovered_after_s_median"], s["recovered_after_s_max"]
        metrics.append(metric(
            f"rejoin after {name}: fault → old primary back as standby, cluster healthy, median", med, "s",
            "≤ 30 s", le(med, 30), f"max {top} s over {runs_note(s)}; rejoined by {rejoin_note(s)}"
            + (f"; {PUBLISHED_REJOIN}" if name == "kill-primary" else ""), summary=s))
    async_lost = [kill, isolate, switch]
    metrics.append(metric(
        "acknowledged commits lost, sync kill-primary (sum over runs)", sync["lost_commits_sum"], "commits", "0",
        sync["lost_commits_sum"] == 0 if sync["runs"] - sync["failed_runs"] else None,
        f"max {sync['lost_commits_max']} per run over {runs_note(sync)}, "
        f"{sync['acked_commits_sum']} commits acknowledged; published: pg_auto_failover and CloudNativePG "
        "keep RPO 0 only in synchronous mode"))
    metrics.append(metric(
        "acknowledged commits lost, async (sum over kill / isolate / switchover runs)",
        sum(s["lost_commits_sum"] for s in async_lost), "commits", "", None,
        "max per run: " + ", ".join(f"{n} {s['lost_commits_max']}" for n, s in
                                    (("kill", kill), ("isolate", isolate), ("switchover", switch)))
        + f"; {sum(s['acked_commits_sum'] for s in async_lost)} commits acknowledged; async may lose the "
        "last commits not yet streamed"))
    writable = [s["max_writable_primaries"] for s in sums.values() if s["max_writable_primaries"] is not None]
    metrics.append(metric(
        "most data nodes accepting writes at once, over all runs", max(writable, default=None), "", "1",
        (max(writable) == 1) if writable else None,
        "`SELECT NOT pg_is_in_recovery()` on every data node every ~0.3 s during each run; >1 would be split brain"))
    save("failover", metrics, runs_per_scenario=runs, specs=["bench/specs/ha.yaml", "bench/specs/hasync.yaml"],
         summaries=sums, reports=raw)


if __name__ == "__main__":
    main()
