"""Runs every benchmark, then rewrites README.md's "## Benchmarks" section from bench/results/*.json.

    python bench/run.py              # run all, then update the README
    python bench/run.py --only cli   # run some (cli images lab failover proxy soak backup deploy day2 upgrade),
                                     # then update the README
    python bench/run.py --readme     # only rewrite the README from the JSON files there are
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import BENCH, REPO, RESULTS, fmt

BENCHES = ("cli", "images", "lab", "failover", "proxy", "soak", "backup", "deploy", "day2", "upgrade")
HEADING = "## Benchmarks"


def table() -> str:
    results = [json.loads((RESULTS / f"{name}.json").read_text()) for name in BENCHES
               if (RESULTS / f"{name}.json").is_file()]
    lines = ["| metric | value | target | published (anchors) | source / notes |", "|---|---|---|---|---|"]
    for result in results:
        when = result["machine"]["date"][:10]
        for row in result["metrics"]:
            mark = {True: " ✓", False: " ✗ (missed)", None: ""}[row["ok"]]
            target = (row["target"] or "–") + mark
            notes = f"`bench/{result['bench']}.py`, {when}: {row['notes']}".replace("|", "\\|")
            published = (row.get("published") or "–").replace("|", "\\|")
            name = row["metric"].replace("|", "\\|")
            lines.append(f"| {name} | {fmt(row['value'], row['unit'])} | {target} | {published} | {notes} |")
    machines = {(r["machine"]["nproc"], r["machine"]["docker_server"]) for r in results}
    where = "; ".join(f"{n} cores, Docker Engine {v}" for n, v in sorted(machines, key=str))
    return (f"Numbers from `bench/` ({where}); the e2e suite may have been running on the same engine "
            "at the time, so timings are upper bounds. Raw samples and machine info are in "
            "`bench/results/*.json`; rerun with `python bench/run.py` (about 70 minutes: a cold base-image "
            "build and a debootstrap need the Debian mirror; failover runs 20 drills, proxy 5 kills, backup loads "
            "~1 GB, upgrade two 1 GB clusters). "
            "The \"published\" column quotes the anchors' own documented defaults and test limits from "
            "`../shared/research/anchors-ha.md` (\"Numbers to beat\"), not measurements on this machine.\n\n"
            + "\n".join(lines) + "\n")


def update_readme() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    head, found, rest = text.partition(f"\n{HEADING}\n")
    if not found:
        raise SystemExit(f"README.md has no '{HEADING}' section")
    _, following, tail = rest.partition("\n## ")  # keep any section after ours
    readme.write_text(f"{head}\n{HEADING}\n\n{table()}" + (f"\n## {tail}" if following else ""))
    print(f"rewrote the '{HEADING}' section of {readme}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only these (repeatable)")
    parser.add_argument("--readme", action="store_true", help="run nothing; only rewrite the README")
    args = parser.parse_args()
    failed = []
    for name in [] if args.readme else args.only or BENCHES:
        print(f"== bench/{name}.py", flush=True)
        if subprocess.run([sys.executable, str(BENCH / f"{name}.py")]).returncode != 0:
            failed.append(name)
    update_readme()
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their README rows are from earlier results, if any)")


if __name__ == "__main__":
    main()
