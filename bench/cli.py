"""CLI speed: `pgdock-gen --help`, and rendering a nine-node + witness spec (subprocess and in-process).

    python bench/cli.py
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import BENCH, metric, repeat, save, stats

HELP_RUNS, RENDER_RUNS = 10, 5
SPEC = BENCH / "specs" / "nine.yaml"


def main() -> None:
    exe = shutil.which("pgdock-gen")
    if exe is None:
        raise SystemExit("pgdock-gen is not on PATH; pip install -e .")

    def run(*args: str) -> None:
        subprocess.run([exe, *args], check=True, capture_output=True)

    run("--help")  # one warm-up, so the first sample does not pay for a cold page cache
    help_times = repeat(lambda: run("--help"), HELP_RUNS)

    with tempfile.TemporaryDirectory(prefix="pgdock-bench-") as tmp:
        outs = iter(Path(tmp) / f"out{i}" for i in range(RENDER_RUNS))
        render_times = repeat(lambda: run("render", "-f", str(SPEC), "-o", str(next(outs))), RENDER_RUNS)
        files = sum(1 for p in (Path(tmp) / "out0").rglob("*") if p.is_file())

    # In-process: the same steps as `pgdock-gen render`, timed apart (imports paid once, before).
    from pgdock_gen import render, spec

    plan_times, write_times, total_times = [], [], []
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-") as tmp:
        for i in range(RENDER_RUNS):
            start = time.perf_counter()
            loaded = spec.load(SPEC)
            files_planned = render.plan(loaded, SPEC.read_text(encoding="utf-8"))
            planned = time.perf_counter()
            render.write(loaded, files_planned, Path(tmp) / f"out{i}")
            done = time.perf_counter()
            plan_times.append(planned - start)
            write_times.append(done - planned)
            total_times.append(done - start)

    h, r, t = stats(help_times), stats(render_times), stats(total_times)
    p, w = stats(plan_times), stats(write_times)
    metrics = [
        metric("`pgdock-gen --help` (subprocess), median", h["median"], "s", "< 0.3 s", h["max"] < 0.3,
               f"max {h['max']:.3f} s over {HELP_RUNS} runs", samples=help_times),
        metric("`pgdock-gen render` 9 nodes + witness (subprocess), median", r["median"], "s", "< 1 s",
               r["max"] < 1, f"max {r['max']:.3f} s over {RENDER_RUNS} runs into fresh folders; {files} files "
               "incl. generated secrets", samples=render_times),
        metric("render.plan + render.write in-process, median", t["median"], "s", "< 1 s", t["max"] < 1,
               f"max {t['max']:.3f} s; plan (load+render) median {p['median']:.3f} s, write (incl. secrets) "
               f"median {w['median']:.3f} s", samples=total_times, plan_samples=plan_times,
               write_samples=write_times),
    ]
    save("cli", metrics, spec=str(SPEC.relative_to(BENCH.parent)))


if __name__ == "__main__":
    main()
