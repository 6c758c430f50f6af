"""Image sizes, apt consistency and build times: base image, config carrier, cold/warm base build, bootstrap.

    python bench/images.py [--skip-cold] [--skip-bootstrap]

Only bench-only tags are created and removed (pgdock/base-bench:pg17, pgdock/debian-bench:trixie,
pgdock/benchcarrier-n1-config:*, pgdock/base-derived-bench:pg17); this checkout's pgdock/base:pg17-<hash>,
pgdock/backup:pg17-<hash> (build them first: `pgdock-gen lab up` or `build`) and pgdock/debian:trixie are only
read, never rebuilt, retagged or removed: the e2e tests use them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, metric, save, sh


def _current_tags() -> tuple[str, str]:
    """The base and backup tags this checkout builds for PostgreSQL 17 (they carry a hash of the contexts)."""
    from pgdock_gen import images, render, spec

    names = images.image_names(spec.parse((REPO / "examples" / "shop.yaml").read_text()), render.image_contexts())
    return names.base, names.backup


(BASE, BACKUP), DEBIAN = _current_tags(), "pgdock/debian:trixie"
BENCH_BASE, BENCH_DEBIAN = "pgdock/base-bench:pg17", "pgdock/debian-bench:trixie"
DERIVED = "pgdock/base-derived-bench:pg17"
DERIVED_PACKAGE = "jq"  # small, and not in the base image
BASE_TARGET = 160e6  # issue 11, item 5
BEFORE = ("254 MB (2026-11-25, and the same rebuilt on 2026-12-02) when LLVM, z3 and perl were purged with "
          "--force-depends: apt-get check then failed with 6 unmet dependencies (perl, libllvm19)")
PROTECTED = {BASE, BACKUP, DEBIAN}
# Published figures, for comparison only (not measured here).
OFFICIAL_POSTGRES_17 = 430e6  # postgres:17 (Debian), uncompressed, ~430 MB
CNPG_MINIMAL = 232e6  # CloudNativePG postgresql:17-minimal, as published
PG_DOCK_CARRIER = 1.17e6  # pg-dock's config image, own layers (habr.com/ru/articles/334484)


def inspect(image: str) -> dict:
    return json.loads(sh("docker", "image", "inspect", image))[0]


def layers(image: str) -> list[dict[str, str]]:
    """`docker history` rows, newest first: size and the instruction that made the layer."""
    out = sh("docker", "history", "--no-trunc", "--format", "{{json .}}", image)
    return [{"size": row["Size"], "created_by": row["CreatedBy"][:160]} for row in map(json.loads, out.splitlines())]


def slim_leftovers(image: str) -> int:
    """Bytes under the paths images.bootstrap means to empty (docs, man pages, locales) in `image`."""
    out = sh("docker", "run", "--rm", "--entrypoint", "du", image, "-skc",
             "/usr/share/doc", "/usr/share/man", "/usr/share/locale", check=False)
    return int(out.splitlines()[-1].split()[0]) * 1024 if out else -1


def left_out(image: str) -> str:
    """Packages base-image/Dockerfile stands in for with stubs (LLVM, z3, perl, systemd) that are installed."""
    out = sh("docker", "run", "--rm", "--entrypoint", "dpkg-query", image, "-W",
             "-f", "${db:Status-Abbrev}${Package} ${Installed-Size}\n", "libllvm*", "libz3-*", "perl",
             "perl-modules-*", "libperl5*", "systemd", check=False)
    rows = [line.split()[1:] for line in out.splitlines() if line.startswith("ii")]
    return ", ".join(f"{name} ({int(kib) / 1e3:.0f} MB)" for name, kib in rows) or "none"


WHERE = {"ICU": "/usr/lib/*/libicu*", "Python (with .pyc)": "/usr/lib/python3* /usr/bin/python3*",
         "PostgreSQL": "/usr/lib/postgresql /usr/share/postgresql", "perl-base": "/usr/lib/*/perl-base /usr/bin/perl"}


def where_the_bytes_are(image: str) -> str:
    """du of the biggest parts the image needs, to show what a size target is up against."""
    parts = []
    for what, paths in WHERE.items():
        out = sh("docker", "run", "--rm", "--entrypoint", "sh", image, "-c", f"du -sck {paths} | tail -n1",
                 check=False)
        parts.append(f"{what} {int(out.split()[0]) / 1e3:.0f} MB" if out else f"{what} ?")
    return ", ".join(parts)


def apt_consistency(image: str) -> tuple[int, str]:
    """(problems, notes): dpkg --audit's lines plus the unmet dependencies apt-get check lists."""
    audit = subprocess.run(["docker", "run", "--rm", "--entrypoint", "dpkg", image, "--audit"],
                           capture_output=True, text=True)
    check = subprocess.run(["docker", "run", "--rm", "--entrypoint", "apt-get", image, "check", "-q"],
                           capture_output=True, text=True)
    audit_lines = [line for line in (audit.stdout + audit.stderr).splitlines() if line.strip()]
    unmet = [line.strip() for line in check.stdout.splitlines() if "Depends:" in line]
    if check.returncode != 0 and not unmet:
        unmet = [check.stderr.strip() or f"exit {check.returncode}"]
    notes = (f"dpkg --audit: exit {audit.returncode}, "
             + (f"{len(audit_lines)} lines ({'; '.join(audit_lines[:3])})" if audit_lines else "no output")
             + f"; apt-get check: exit {check.returncode}"
             + (f", unmet: {'; '.join(unmet[:4])}" if unmet else ""))
    return len(audit_lines) + len(unmet) + (check.returncode != 0 and not unmet), notes


def derived_install(image: str) -> tuple[bool, float, str]:
    """Builds FROM `image` a layer that apt-get installs one small package, with no `apt-get -f install`."""
    with tempfile.TemporaryDirectory(prefix="pgdock-bench-") as tmp:
        Path(tmp, "Dockerfile").write_text(
            f"FROM {image}\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            f"--no-install-recommends {DERIVED_PACKAGE} && {DERIVED_PACKAGE} --version \\\n"
            " && apt-get clean && rm -rf /var/lib/apt/lists/*\n")
        start = time.perf_counter()
        result = subprocess.run(["docker", "buildx", "build", "--load", "--no-cache", "-t", DERIVED, tmp],
                                capture_output=True, text=True)
        took = time.perf_counter() - start
    try:
        if result.returncode != 0:
            return False, took, " / ".join(result.stderr.strip().splitlines()[-3:])
        added = inspect(DERIVED)["Size"] - inspect(image)["Size"]
        return True, took, f"{DERIVED_PACKAGE} installed, adding {added / 1e6:.1f} MB (apt's lists removed after)"
    finally:
        remove_tag(DERIVED)


def remove_tag(tag: str) -> None:
    """Untags a bench-only image (never forced: an image also tagged otherwise just loses this tag)."""
    assert tag not in PROTECTED, tag
    subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def build_base(context: Path, no_cache: bool) -> float:
    command = ["docker", "buildx", "build", "--load", "-t", BENCH_BASE,
               "--build-arg", f"DEBIAN_IMAGE={DEBIAN}", "--build-arg", "PG_VERSION=17", str(context)]
    if no_cache:
        command.insert(3, "--no-cache")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


FLOORS = {"PostgreSQL 17 alone": '"postgresql-${PG_VERSION}"',
          "PostgreSQL 17 + the agent's runtime (python3, python3-psycopg)":
              '"postgresql-${PG_VERSION}" python3 python3-psycopg'}
"""What the size target is up against: base-image/Dockerfile as it is (same Debian base, path excludes, stub
packages) with only these packages installed."""
FLOOR_TAG = "pgdock/base-floor-bench:pg17"
_PACKAGES = re.compile(r"(apt-get install -y --no-install-recommends \\\n)(.*?)(\n \&\& dpkg --audit)", re.S)


def floor_sizes(context: Path) -> dict[str, int]:
    """Builds the base image's Dockerfile with each FLOORS package list instead of its own; their sizes."""
    dockerfile = (context / "Dockerfile").read_text()
    if not _PACKAGES.search(dockerfile):
        raise SystemExit("base-image/Dockerfile's apt-get install line moved: update bench/images.py's _PACKAGES")
    sizes = {}
    for what, packages in FLOORS.items():
        install = f"      {packages} \\"
        (context / "Dockerfile.floor").write_text(_PACKAGES.sub(lambda m, line=install: m[1] + line + m[3],
                                                                dockerfile))
        try:
            subprocess.run(["docker", "buildx", "build", "--load", "-t", FLOOR_TAG, "-f",
                            str(context / "Dockerfile.floor"), "--build-arg", f"DEBIAN_IMAGE={DEBIAN}",
                            "--build-arg", "PG_VERSION=17", str(context)], check=True, capture_output=True)
            sizes[what] = inspect(FLOOR_TAG)["Size"]
        finally:
            remove_tag(FLOOR_TAG)
    return sizes


def carrier_own_size() -> tuple[int, int, list[dict[str, str]]]:
    """Builds one node's config carrier of a shop-like spec; returns (carrier size, base size, own layers)."""
    from pgdock_gen import images, render, spec

    with tempfile.TemporaryDirectory(prefix="pgdock-bench-") as tmp:
        spec_path = Path(tmp) / "cluster.yaml"
        text = (REPO / "examples" / "shop.yaml").read_text().replace("cluster: shop", "cluster: benchcarrier")
        spec_path.write_text(text)
        loaded = spec.load(spec_path)
        render.write(loaded, render.plan(loaded, text), Path(tmp) / "repo")
        tag = images.build_config(loaded, Path(tmp) / "repo", loaded.nodes[0])
    try:
        carrier, base = inspect(tag), inspect(BASE)
        if carrier["RootFS"]["Layers"][:len(base["RootFS"]["Layers"])] != base["RootFS"]["Layers"]:
            raise SystemExit(f"{tag} was not built on the current {BASE}; rerun")
        own = layers(tag)[:len(layers(tag)) - len(layers(BASE))]
        return carrier["Size"], base["Size"], own
    finally:
        remove_tag(tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true", help="skip the --no-cache build of the base image")
    parser.add_argument("--skip-bootstrap", action="store_true", help="skip debootstrap + docker import")
    args = parser.parse_args()

    base = inspect(BASE)
    debian_size, debian_left = inspect(DEBIAN)["Size"], slim_leftovers(DEBIAN)
    metrics = [
        metric("base image size (pgdock/base:pg17)", base["Size"], "bytes", "≤ 160 MB",
               base["Size"] <= BASE_TARGET,
               f"docker image inspect Size; of which Debian base {debian_size / 1e6:.0f} MB "
               f"({debian_left / 1e6:.0f} MB of it docs/man/locales); needed parts: {where_the_bytes_are(BASE)}; "
               f"installed of what the Dockerfile stands in for with stub packages: {left_out(BASE)}; "
               f"was {BEFORE}; published: postgres:17 ~{OFFICIAL_POSTGRES_17 / 1e6:.0f} MB, "
               f"CloudNativePG minimal {CNPG_MINIMAL / 1e6:.0f} MB"),
    ]
    problems, consistency = apt_consistency(BASE)
    metrics.append(metric("base image: dpkg --audit + apt-get check problems", problems, "", "0", problems == 0,
                          consistency))
    installed, took, how = derived_install(BASE)
    metrics.append(metric(f"derived image: apt-get update + install {DERIVED_PACKAGE}, no `-f`", took, "s",
                          "installs", installed,
                          f"docker build FROM pgdock/base:pg17, --no-cache, apt from the Debian mirror; one run; "
                          f"{'ok' if installed else 'FAILED'}: {how}"))
    base_layers = layers(BASE)

    carrier, base_size, own = carrier_own_size()
    metrics.append(metric("config-carrier image own size", carrier - base_size, "bytes", "≤ 100 kB",
                          carrier - base_size <= 100e3,
                          f"carrier Size − base Size (shop-like spec, node n1); {len(own)} own layers; "
                          f"pg-dock's was {PG_DOCK_CARRIER / 1e6:.2f} MB", own_layers=own))

    with tempfile.TemporaryDirectory(prefix="pgdock-bench-") as tmp:
        context = Path(tmp) / "base-image"
        shutil.copytree(REPO / "base-image", context)  # a snapshot: concurrent edits do not change the build
        try:
            if not args.skip_cold:
                cold = build_base(context, no_cache=True)
                bench_size = inspect(BENCH_BASE)["Size"]
                metrics.append(metric("base image cold build (--no-cache)", cold, "s", "", None,
                                      f"FROM {DEBIAN}, apt from the Debian mirror over the network; one run; "
                                      f"result {bench_size / 1e6:.0f} MB"))
            warm = [build_base(context, no_cache=False) for _ in range(3)]
            metrics.append(metric("base image warm rebuild (cached), median", sorted(warm)[1], "s", "", None,
                                  f"max {max(warm):.2f} s over 3 runs", samples=warm))
        finally:
            remove_tag(BENCH_BASE)
        for what, size in floor_sizes(context).items():
            metrics.append(metric(f"floor: {what}, same Dockerfile", size, "bytes", "", None,
                                  f"base-image/Dockerfile with only these packages (same Debian base, path "
                                  f"excludes, stubs); the ≤ 160 MB target is {BASE_TARGET / 1e6 - size / 1e6:+.0f} MB "
                                  "from it"))

    if not args.skip_bootstrap:
        from pgdock_gen import images

        try:
            start = time.perf_counter()
            images.bootstrap("trixie", BENCH_DEBIAN, progress=lambda message: None)
            took = time.perf_counter() - start
            size, left = inspect(BENCH_DEBIAN)["Size"], slim_leftovers(BENCH_DEBIAN)
            metrics.append(metric("Debian trixie debootstrap + docker import", took, "s", "", None,
                                  f"images.bootstrap, minbase, default mirror; one run; image {size / 1e6:.0f} MB, "
                                  f"of which {left / 1e6:.1f} MB docs/man/locales"))
        finally:
            remove_tag(BENCH_DEBIAN)

    save("images", metrics, base_layers=base_layers)


if __name__ == "__main__":
    main()
