"""Shared bits of the benchmarks: timing, machine info, the JSON result file and a printed table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"

if str(REPO) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(REPO))


def sh(*command: str, check: bool = True) -> str:
    """Runs a command, returns its stdout (stripped)."""
    return subprocess.run(command, capture_output=True, text=True, check=check).stdout.strip()


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes, by time.perf_counter."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat(fn: Callable[[], object], runs: int) -> list[float]:
    return [timed(fn) for _ in range(runs)]


def stats(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "max": max(samples), "min": min(samples)}


def machine() -> dict[str, object]:
    git = sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD", check=False)
    dirty = bool(sh("git", "-C", str(REPO), "status", "--porcelain", "--", "generator", "base-image", check=False))
    return {
        "nproc": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "docker_server": sh("docker", "version", "--format", "{{.Server.Version}}", check=False),
        "docker_client": sh("docker", "version", "--format", "{{.Client.Version}}", check=False),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git": git + (" (generator/ or base-image/ modified)" if dirty else ""),
        # Another engineer runs the e2e suite on the same engine; numbers may include their load.
        "concurrent_load": "possible",
    }


def metric(name: str, value: float | None, unit: str, target: str = "", ok: bool | None = None,
           notes: str = "", **extra: object) -> dict[str, object]:
    """One row of a result: `value` in `unit`, the target as text, whether it is met, and notes."""
    return {"metric": name, "value": value, "unit": unit, "target": target, "ok": ok, "notes": notes, **extra}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "bytes":
        for size, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= size:
                return f"{value / size:.3g} {suffix}"
        return f"{value:.0f} B"
    return f"{value:g} {unit}".strip()


def save(name: str, metrics: list[dict[str, object]], **extra: object) -> Path:
    """Writes bench/results/<name>.json and prints the table."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"bench": name, "machine": machine(), "metrics": metrics, **extra}
    path.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"bench/{name}.py → {path.relative_to(REPO)}")
    for column in ("metric", "value", "target", "ok", "notes"):
        table.add_column(column, overflow="fold")
    for row in metrics:
        ok = {True: "[green]yes[/]", False: "[red]NO[/]", None: ""}[row["ok"]]
        table.add_row(row["metric"], fmt(row["value"], row["unit"]), row["target"], ok, row["notes"])
    Console().print(table)
    return path


def stamp(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def others(*mine: str) -> list[str]:
    """Containers on the engine whose names start with none of `mine`: load that may have skewed the timings."""
    names = sh("docker", "ps", "--format", "{{.Names}}", check=False).splitlines()
    return sorted(n for n in names if not n.startswith(mine))


def remove_carrier_images(cluster: str) -> None:
    """The per-node config-carrier images of a bench cluster (the shared base images stay)."""
    for image in sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"pgdock/{cluster}-*").splitlines():
        subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)


@contextmanager
def lab_cluster(spec_file: str, tmp: Path, timeout: float = 300) -> Iterator[tuple[Path, object]]:
    """bench/specs/`spec_file` up in the lab from a copy under `tmp` (leftovers of an earlier run removed
    first); yields (spec path, loaded spec). At the end, even on failure or Ctrl-C, the cluster is taken down
    with its volumes and carrier images, with Ctrl-C ignored meanwhile so the cleanup cannot be cut short."""
    from pgdock_gen import lab, spec

    quiet = lambda message: None  # noqa: E731
    spec_path = tmp / spec_file.replace(".yaml", "") / "cluster.yaml"
    spec_path.parent.mkdir()
    shutil.copy(BENCH / "specs" / spec_file, spec_path)
    loaded = spec.load(spec_path)
    try:
        lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)  # leftovers of an earlier run
        start = time.perf_counter()
        lab.up(spec_path, loaded, timeout=timeout, progress=quiet)
        stamp(f"{loaded.cluster} healthy after {time.perf_counter() - start:.1f} s")
        yield spec_path, loaded
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stamp(f"taking {loaded.cluster} down")
            lab.down(spec_path, loaded, remove_volumes=True, progress=quiet)
            remove_carrier_images(loaded.cluster)
        finally:
            signal.signal(signal.SIGINT, previous)
