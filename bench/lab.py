"""Lab start-up: `lab up` to healthy with warm images, for a shop-like spec (two data nodes + witness).

    python bench/lab.py [--runs 3]

The spec is examples/shop.yaml copied into a temp folder with `cluster: bench-lab`, so containers,
volumes, network and carrier images are the bench's own. Each run starts from scratch (lab down
--volumes before it); the lab is always taken down with its volumes at the end, even on failure.
Note: like every `lab up`, the runs (and an untimed warm-up before them) build pgdock/base:pg17-<hash> and
pgdock/backup:pg17-<hash> from cache; a no-op unless base-image/ changed (then the hash, and the tag, change).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, metric, remove_carrier_images, save, sh

CLUSTER = "bench-lab"
UNITS = {"B": 1, "kB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 1024**2, "GB": 1e9, "GiB": 1024**3}
MEMORY_SAMPLES = 5


def memory() -> dict[str, float]:
    """MEM USAGE of each running bench-lab container, in bytes (one `docker stats --no-stream`)."""
    out = sh("docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}")
    usage = {}
    for line in out.splitlines():
        name, mem = line.split("\t")
        if name.startswith(f"{CLUSTER}-"):
            number, unit = re.match(r"([\d.]+)\s*([A-Za-z]+)", mem).groups()
            usage[name] = float(number) * UNITS[unit]
    return usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from pgdock_gen import images, lab, spec

    quiet = lambda message: None  # noqa: E731
    runs, peak = [], {}
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-lab-") as tmp:
        spec_path = Path(tmp) / "cluster.yaml"
        text = (REPO / "examples" / "shop.yaml").read_text()
        spec_path.write_text(re.sub(r"(?m)^cluster: .*$", f"cluster: {CLUSTER}", text))
        loaded = spec.load(spec_path)
        try:
            # Untimed warm-up: images as `lab up` builds them, so the runs measure warm images even when
            # base-image/ changed since its image was last built (then this builds it, as lab up would).
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            start = time.perf_counter()
            prepared = lab.prepare(spec_path, loaded)
            images.build_all(prepared.lab_spec, prepared.repo, progress=quiet)
            warm_up = time.perf_counter() - start
            print(f"warm-up image build: {warm_up:.1f} s")
            for i in range(args.runs):
                lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
                shutil.rmtree(Path(tmp) / ".lab", ignore_errors=True)  # fresh render and secrets too
                marks: dict[str, float] = {}

                def progress(message: str, marks: dict[str, float] = marks) -> None:
                    if message.startswith("starting") and "started" not in marks:
                        marks["started"] = time.perf_counter()

                start = time.perf_counter()
                lab.up(spec_path, loaded, timeout=240, progress=progress)
                end = time.perf_counter()
                runs.append({"total": end - start, "render_build": marks["started"] - start,
                             "start_to_healthy": end - marks["started"]})
                print(f"run {i + 1}: healthy after {end - start:.1f} s "
                      f"(render+build {runs[-1]['render_build']:.1f} s)")
                if i == 0:  # memory once healthy, sampled a few times; the peak of the sums is reported
                    samples = []
                    for _ in range(MEMORY_SAMPLES):
                        samples.append(memory())
                        time.sleep(2)
                    peak = max(samples, key=lambda s: sum(s.values()))
        finally:
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            remove_carrier_images(CLUSTER)

    totals = [r["total"] for r in runs]
    warmest = statistics.median(r["start_to_healthy"] for r in runs)
    builds = statistics.median(r["render_build"] for r in runs)
    metrics = [
        metric("`lab up` → healthy, 2 data nodes + witness, median", statistics.median(totals), "s", "≤ 60 s",
               max(totals) <= 60, f"max {max(totals):.1f} s over {len(runs)} runs from scratch, warm base images; "
               f"median render+build {builds:.1f} s, start→healthy {warmest:.1f} s", runs=runs),
        metric("memory of the healthy lab cluster (sum of MEM USAGE)", sum(peak.values()), "bytes", "", None,
               f"peak of {MEMORY_SAMPLES} `docker stats --no-stream` samples: "
               + ", ".join(f"{name} {value / 2**20:.0f} MiB" for name, value in sorted(peak.items())),
               per_container=peak),
    ]
    save("lab", metrics, spec=f"examples/shop.yaml with cluster: {CLUSTER}", warm_up_build_s=warm_up)


if __name__ == "__main__":
    main()
