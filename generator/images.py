"""Names and builds of a cluster's images: base, backup and one config carrier per node.

The base image starts FROM a registry's Debian image; where no registry answers
(air-gapped hosts, our CI), `bootstrap` makes an equivalent one with debootstrap
and `docker import` from a Debian mirror (debootstrap's default, or `--mirror`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import contract, docker
from .errors import DockerError, UsageError
from .spec import Node, Spec
from .template import IMAGE_CONTEXTS, files_under

if TYPE_CHECKING:
    from python_on_whales import DockerClient

DEBIAN_SUITES = {15: "bookworm", 17: "trixie"}
"""The Debian release whose own packages carry each supported PostgreSQL major and its repmgr."""
_SLIM_PATHS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
               "var/cache/apt/archives", "var/lib/apt/lists")
_DPKG_EXCLUDES = "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"

Progress = Callable[[str], None]


ContextFile = tuple[str, int, bytes]
"""One file of an image's build context: its path inside the context, its mode and its content."""


@dataclass(frozen=True)
class ImageNames:
    """A cluster's image tags. Base and backup tags carry a hash of their build context's files, so forks
    (or pgdock versions) whose base-image/ or backup-image/ differ never overwrite each other's images on a
    shared engine, and the same files always give the same tag."""

    cluster: str
    pg_version: int
    base: str
    """PostgreSQL + repmgr + pgdock-agent: pgdock/base:pg17-<12 hex of base-image/>."""
    backup: str
    """The backup sidecar: pgdock/backup:pg17-<12 hex of backup-image/ and the base tag it builds FROM>."""

    def config_repo(self, node: Node) -> str:
        """Repository of a node's config-carrier images; each config version is a tag."""
        return f"pgdock/{self.cluster}-{node.name}-config"


def context_digest(files: Iterable[ContextFile], *, parent: str = "") -> str:
    """12 hex digits of a build context: every file's path, executable bit and content, and the `parent` image
    it builds FROM. Only the executable bit counts: that is all git and render keep of a mode."""
    digest = hashlib.sha256(parent.encode() + b"\0")
    for rel, mode, content in sorted(files):
        digest.update(f"{rel}\0{'x' if mode & 0o111 else '-'}\0".encode() + hashlib.sha256(content).digest())
    return digest.hexdigest()[:12]


def image_names(spec: Spec, contexts: Mapping[str, Iterable[ContextFile]]) -> ImageNames:
    """The tags of a cluster's images from its build contexts' files (keyed by IMAGE_CONTEXTS folder): the one
    place they are derived, from the files render plans and from a rendered repo's files alike."""
    base = f"{contract.BASE_IMAGE_REPO}:pg{spec.pg_version}-{context_digest(contexts['base-image'])}"
    backup = f"{contract.BACKUP_IMAGE_REPO}:pg{spec.pg_version}-{context_digest(contexts['backup-image'], parent=base)}"
    return ImageNames(spec.cluster, spec.pg_version, base, backup)


def context_files(folder: Path) -> list[ContextFile]:
    """A build context's files as render wrote them (caches left out, as render leaves them out)."""
    return [(p.relative_to(folder).as_posix(), p.stat().st_mode, p.read_bytes()) for p in files_under(folder)]


def names(spec: Spec, repo: Path) -> ImageNames:
    """The tags of the images a rendered cluster repo builds, from its base-image/ and backup-image/ as they are."""
    missing = [d for d in IMAGE_CONTEXTS if not (repo / d / "Dockerfile").is_file()]
    if missing:
        raise UsageError(f"{repo} has no {' or '.join(f'{d}/' for d in missing)}: not a rendered cluster repo; "
                         f"run `pgdock-gen render -o {repo}` first")
    return image_names(spec, {d: context_files(repo / d) for d in IMAGE_CONTEXTS})


def helper_image(client: DockerClient, spec: Spec, repo: Path | None = None) -> str:
    """A base image already on `client`'s engine, for short helper containers (reading a volume, filling
    secrets): the one `repo` builds when the engine has it, else the newest of the cluster's PostgreSQL major
    there. Any will do for such helpers, and the one this repo builds may not have been shipped yet (a new
    pgdock version, an edited base-image/)."""
    if repo is not None and (repo / "base-image" / "Dockerfile").is_file() and \
            client.image.exists(own := names(spec, repo).base):
        return own
    prefix = f"{contract.BASE_IMAGE_REPO}:pg{spec.pg_version}-"
    found = [(image.created, tag) for image in client.image.list(contract.BASE_IMAGE_REPO)
             for tag in image.repo_tags if tag.startswith(prefix)]
    if not found:
        raise DockerError(f"no {prefix}* image on this engine; run `pgdock-gen build` (lab) or "
                          "`pgdock-gen push` (servers) first")
    return max(found)[1]


def config_version(repo: Path, node: Node) -> str:
    """A content hash of what the node's carrier packs: same files, same tag; any change, a new one."""
    digest = hashlib.sha256()
    for folder in (repo / "nodes" / node.name, repo / "shared"):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return "c" + digest.hexdigest()[:12]


def bootstrap(suite: str, tag: str, *, mirror: str | None = None, progress: Progress = print) -> str:
    """Builds a minimal Debian image with debootstrap and imports it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise DockerError("debootstrap is not installed; run scripts/setup.sh or `apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise DockerError("debootstrap needs root to create a Debian root filesystem; re-run with sudo")
    with tempfile.TemporaryDirectory(prefix="pgdock-debootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        progress(f"debootstrap {suite} (no registry image available){' from ' + mirror if mirror else ''}")
        command = ["debootstrap", "--variant=minbase", suite, str(root)] + ([mirror] if mirror else [])
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
            raise DockerError(f"debootstrap {suite} failed: {' / '.join(tail)}; "
                              "check network access to the Debian mirror or pass --mirror")
        for rel in _SLIM_PATHS:
            for child in (root / rel).glob("*"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        (root / "etc/dpkg/dpkg.cfg.d/pgdock-slim").write_text(_DPKG_EXCLUDES)
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        progress(f"docker import {tag}")
        docker.call(f"importing {tag}", docker.client().image.import_, archive, tag=tag)
    return tag


def debian_image(suite: str, *, mirror: str | None = None, progress: Progress = print) -> str:
    """A Debian `suite` image: the registry's slim one when it can be had, else a bootstrapped one."""
    from python_on_whales.exceptions import DockerException

    local = docker.client()
    official, bootstrapped = f"debian:{suite}-slim", f"pgdock/debian:{suite}"
    for candidate in (official, bootstrapped):
        if local.image.exists(candidate):
            return candidate
    if mirror is None:
        try:
            local.image.pull(official, quiet=True)
            return official
        except DockerException:
            progress(f"cannot pull {official} (no registry?); bootstrapping it instead")
    return bootstrap(suite, bootstrapped, mirror=mirror, progress=progress)


def build_image(context: Path, tag: str, *, file: Path | None = None, build_args: dict[str, str] | None = None,
                no_cache: bool = False, labels: dict[str, str] | None = None) -> None:
    """`docker build` of one context into `tag` on the local engine, failures said as what was being built."""
    with docker.translated(f"building {tag}"):
        docker.client().build(context, tags=[tag], file=file, build_args=build_args or {}, cache=not no_cache,
                              labels=labels or {}, load=True, progress=False)


def build_base(spec: Spec, repo: Path, *, no_cache: bool = False, mirror: str | None = None,
               progress: Progress = print) -> str:
    image = names(spec, repo)
    debian = debian_image(DEBIAN_SUITES[spec.pg_version], mirror=mirror, progress=progress)
    progress(f"building {image.base} from {debian}")
    build_image(repo / "base-image", image.base, no_cache=no_cache,
           build_args={"DEBIAN_IMAGE": debian, "PG_VERSION": str(spec.pg_version)})
    return image.base


def build_backup(spec: Spec, repo: Path, *, no_cache: bool = False, progress: Progress = print) -> str:
    image = names(spec, repo)
    progress(f"building {image.backup}")
    build_image(repo / "backup-image", image.backup, no_cache=no_cache, build_args={"BASE_IMAGE": image.base})
    return image.backup


def upgrade_image_name(spec: Spec, repo: Path, old_base: str) -> str:
    """The upgrade image's tag: the spec's (new) major's base image plus the binaries of `old_base`, the base
    image the cluster runs on now (pgdock/base:pg15-...); the hash covers both base tags."""
    old_version = old_base.rsplit(":", 1)[-1].split("-", 1)[0].removeprefix("pg")
    new_base = names(spec, repo).base
    return (f"{contract.UPGRADE_IMAGE_REPO}:pg{old_version}-pg{spec.pg_version}-"
            f"{context_digest([], parent=f'{new_base}{chr(0)}{old_base}')}")


def build_upgrade(spec: Spec, repo: Path, old_base: str, *, no_cache: bool = False, mirror: str | None = None,
                  progress: Progress = print) -> str:
    """Builds the new major's base image (when missing) and the upgrade image on top of it
    (base-image/upgrade.Dockerfile); returns the upgrade image's tag."""
    tag = upgrade_image_name(spec, repo, old_base)
    client = docker.client()
    if not no_cache and client.image.exists(tag):
        return tag  # the tag is a hash of both base tags: an image with it is this build
    new_base = names(spec, repo).base
    if no_cache or not client.image.exists(new_base):
        build_base(spec, repo, no_cache=no_cache, mirror=mirror, progress=progress)
    old_version = tag.rsplit(":", 1)[1].split("-", 1)[0].removeprefix("pg")
    progress(f"building {tag} ({new_base} plus PostgreSQL {old_version} from {old_base})")
    build_image(repo / "base-image", tag, file=repo / "base-image" / contract.UPGRADE_DOCKERFILE, no_cache=no_cache,
                build_args={"BASE_IMAGE": new_base, "OLD_IMAGE": old_base, "OLD_VERSION": old_version})
    return tag


def build_config(spec: Spec, repo: Path, node: Node, *, no_cache: bool = False) -> str:
    """Builds a node's config carrier from the cluster repo's root; returns `repo:version`."""
    tag = f"{names(spec, repo).config_repo(node)}:{config_version(repo, node)}"
    if not no_cache and docker.client().image.exists(tag):
        return tag  # the tag is a hash of the content: an image with it already packs these files
    build_image(repo, tag, file=repo / "nodes" / node.name / "Dockerfile", no_cache=no_cache,
                labels={"org.pgdock.version": tag.rsplit(":", 1)[1]})
    return tag


def stale_references(spec: Spec, repo: Path) -> str | None:
    """Why the repo's node files do not name the images its base-image/ and backup-image/ build (None when they
    all do): the contexts changed since the last render, and a carrier build or a compose project would ask for
    a tag that is never built."""
    image = names(spec, repo)
    for node in spec.members:
        wanted = {"Dockerfile": [image.base],
                  "compose.yaml": [image.base] + ([image.backup] if spec.backup and not node.witness else [])}
        for name, tags in wanted.items():
            path = repo / "nodes" / node.name / name
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            if missing := [tag for tag in tags if tag not in text]:
                return (f"{path} does not name {missing[0]}, the image its context builds now: base-image/ or "
                        "backup-image/ changed since the last render; `pgdock-gen render --diff` shows how "
                        "(render puts this pgdock's contexts back, with --force)")
    return None


def build_all(spec: Spec, repo: Path, *, no_cache: bool = False, mirror: str | None = None,
              progress: Progress = print) -> dict[str, str]:
    """Builds every image of a rendered cluster repo; returns {what: tag}."""
    if not (repo / "nodes").is_dir() or not (repo / "base-image" / "Dockerfile").is_file():
        raise UsageError(f"{repo} is not a rendered cluster repo; run `pgdock-gen render -o {repo}` first")
    if stale := stale_references(spec, repo):
        raise UsageError(stale)
    tags = {"base": build_base(spec, repo, no_cache=no_cache, mirror=mirror, progress=progress),
            "backup": build_backup(spec, repo, no_cache=no_cache, progress=progress)}
    for node in spec.members:
        progress(f"building config image of {node.name}")
        tags[node.name] = build_config(spec, repo, node, no_cache=no_cache)
    return tags
