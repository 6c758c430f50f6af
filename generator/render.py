"""Turns a spec into the files of a cluster repo, and writes them safely.

Rendering happens in memory first (`plan`), so `--diff` and `--check` need no
disk writes, and writing either succeeds for every file or touches nothing:
conflicts are found before the first write, and each file lands by rename.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import credentials, pgbackrest
from .errors import OutOfDate, UsageError
from .images import ContextFile, image_names
from .schema import SCHEMA_FILE, document
from .spec import Spec
from .template import (
    IMAGE_CONTEXTS,
    TEMPLATES,
    environment,
    files_under,
    image_context,
    output_name,
    pgdock_version,
)

VERSION_FILE = ".pgdock.json"
"""Which pgdock-gen rendered the repo: {"pgdock-gen": "<version>"}. Its CI installs that version, and a
render by another version says so. pgdock's own bookkeeping: never a conflict, always rewritten."""
VERSION_KEY = "pgdock-gen"
OPTIONAL_FOLDERS = ("proxy", "monitoring")
"""Template folders rendered into the folder of the same name when the spec has the section of that name."""


@dataclass(frozen=True)
class File:
    content: bytes
    mode: int


def _mode(path: Path) -> int:
    """Shell scripts are executable, rendered ones (`lib.sh.j2`) too."""
    return 0o755 if os.access(path, os.X_OK) or output_name(path).suffix == ".sh" else 0o644


def image_contexts() -> dict[str, list[ContextFile]]:
    """This pgdock's image build contexts as render writes them into every repo (their tags hash these)."""
    return {name: [(source.relative_to(root).as_posix(), _mode(source), source.read_bytes())
                   for source in files_under(root)]
            for name, root in ((name, image_context(name)) for name in IMAGE_CONTEXTS)}


def plan(spec: Spec, spec_text: str, *, version: str | None = None) -> dict[str, File]:
    """Every file of the cluster repo (secrets excepted), keyed by relative path. `version` is the pgdock-gen
    version the repo records and its CI installs: this one's unless given (the golden test fixes it)."""
    version = version or pgdock_version()
    env = environment()
    contexts = image_contexts()
    images = image_names(spec, contexts)  # tags from the very files written below: node files name those images
    backup = spec.backup
    extra = {"pgdock_version": version, "version_file": VERSION_FILE, "schema_file": SCHEMA_FILE,
             "backup_url": f"s3://{backup.s3.bucket}/{backup.s3.prefix.strip('/')}".rstrip("/") if backup else "",
             "s3_endpoint": backup.s3.endpoint if backup else None,
             "pgbackrest": pgbackrest.variables(spec) if backup and backup.engine == "pgbackrest" else {}}
    files: dict[str, File] = {
        "cluster.yaml": File(spec_text.encode(), 0o644),
        SCHEMA_FILE: File(document().encode(), 0o644),
        VERSION_FILE: File(version_record(version).encode(), 0o644),
    }

    def add(template_dir: str, target: Path, **context: object) -> None:
        for source in files_under(TEMPLATES / template_dir):
            relative = source.relative_to(TEMPLATES / template_dir)
            if source.suffix == ".j2":
                template = env.get_template(f"{template_dir}/{relative.as_posix()}")
                content = template.render(spec=spec, images=images, **extra, **context).encode()
            else:
                content = source.read_bytes()
            files[(target / output_name(relative)).as_posix()] = File(content, _mode(source))

    add("cluster", Path("."))
    for folder in OPTIONAL_FOLDERS:
        if getattr(spec, folder) is not None:
            add(folder, Path(folder))
    for node in spec.members:
        peers = [n for n in spec.nodes if n.name != node.name]
        add("node", Path("nodes") / node.name, node=node, node_peers=peers)
    for context_dir, entries in contexts.items():
        for rel, mode, content in entries:
            files[f"{context_dir}/{rel}"] = File(content, mode)
    return dict(sorted(files.items()))


def version_record(version: str) -> str:
    """VERSION_FILE's content."""
    return json.dumps({VERSION_KEY: version}, indent=2) + "\n"


def recorded_version(out: Path) -> str | None:
    """The pgdock-gen version VERSION_FILE in `out` names; None when there is none (a new or older repo) or it
    is unreadable (render rewrites it)."""
    try:
        value = json.loads((out / VERSION_FILE).read_text(encoding="utf-8")).get(VERSION_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def planned_version(files: dict[str, File]) -> str:
    """The pgdock-gen version planned `files` record."""
    return str(json.loads(files[VERSION_FILE].content)[VERSION_KEY])


def version_warning(files: dict[str, File], out: Path) -> str | None:
    """A warning when the repo in `out` was rendered by another pgdock-gen version than `files` record."""
    before, now = recorded_version(out), planned_version(files)
    if before is None or before == now:
        return None
    return (f"{out} was rendered by pgdock-gen {before}; this is pgdock-gen {now}: generated files and image "
            f"tags may change (review them with --diff), and {VERSION_FILE} and the CI files will name {now}")


@dataclass(frozen=True)
class Changes:
    new: list[str]
    changed: list[str]
    unchanged: list[str]
    stale: list[str]

    @property
    def up_to_date(self) -> bool:
        return not (self.new or self.changed or self.stale)


def compare(files: dict[str, File], out: Path) -> Changes:
    new, changed, unchanged = [], [], []
    for rel, file in files.items():
        target = out / rel
        if not target.exists():
            new.append(rel)
        elif not target.is_file() or target.read_bytes() != file.content:
            changed.append(rel)
        else:
            unchanged.append(rel)
    wanted = {rel.split("/")[1] for rel in files if rel.startswith("nodes/")}
    stale = sorted(f"nodes/{d.name}/" for d in (out / "nodes").glob("*") if d.is_dir() and d.name not in wanted)
    stale += [f"{folder}/" for folder in OPTIONAL_FOLDERS
              if (out / folder).is_dir() and not any(rel.startswith(f"{folder}/") for rel in files)]
    return Changes(new, changed, unchanged, stale)


def diff(files: dict[str, File], out: Path, changes: Changes) -> str:
    """A unified diff from what is on disk to what the spec renders."""
    chunks = []
    for rel in changes.new + changes.changed:
        target = out / rel
        old = target.read_text(errors="replace").splitlines(keepends=True) if target.is_file() else []
        new = files[rel].content.decode(errors="replace").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(old, new, f"a/{rel}" if old else "/dev/null", f"b/{rel}"))
    chunks.extend(f"stale: {rel} is no longer in the spec\n" for rel in changes.stale)
    return "".join(chunks)


def in_the_way(path: Path) -> str | None:
    """What keeps a file from being written at `path`: a file where one of its folders must be, or a
    folder at `path` itself; None when nothing does."""
    for folder in reversed(path.parents):
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a folder"
    return f"{path} is a folder, not a file" if path.is_dir() else None


def _check_writable(out: Path, files: dict[str, File]) -> None:
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: cannot write the cluster repo here ({probe} is not a writable folder)")
    for rel in [*files, "secrets/tls/ca.crt"]:  # and the folders credentials.ensure writes secrets into
        if why := in_the_way(out / rel):
            raise UsageError(f"{out}: cannot write the cluster repo: {why}")


def write_file(path: Path, text: str) -> None:
    """Writes one file whole (the starter spec); a path that cannot be a file is a UsageError."""
    if why := in_the_way(path):
        raise UsageError(f"cannot write {path}: {why}")
    _write_atomic(path, File(text.encode(), 0o644))


def _write_atomic(target: Path, file: File) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(file.content)
        os.chmod(tmp, file.mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _conflicts(spec: Spec, files: dict[str, File], out: Path, changed: list[str]) -> list[str]:
    """The changed files a render must not overwrite without --force: those that are not what the spec
    rendered last time. VERSION_FILE never is one, and after a version change neither is a file that differs
    only by the version it names (the CI files, the README): it is compared with this spec rendered as the
    recorded version."""
    before, now = recorded_version(out), planned_version(files)
    previous = plan(spec, files["cluster.yaml"].content.decode(), version=before) if before not in (None, now) else {}
    return [rel for rel in changed if rel != VERSION_FILE
            and not (rel in previous and (out / rel).read_bytes() == previous[rel].content)]


def write(spec: Spec, files: dict[str, File], out: Path, *, force: bool = False) -> Changes:
    """Writes the repo into `out`; refuses (writing nothing) when files differ and not `force`, or when a
    file or folder is in the way of one it must write."""
    _check_writable(out, files)
    changes = compare(files, out)
    conflicts = _conflicts(spec, files, out, changes.changed)
    if conflicts and not force:
        listing = "\n".join(f"  {rel}" for rel in conflicts)
        raise UsageError(f"{out}: these files differ from what the spec renders:\n{listing}\n"
                         "See the changes with --diff, then overwrite them with --force.")
    if not out.exists():
        # A new repo appears whole or not at all: build it next to its final place, then rename.
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            for rel, file in files.items():
                _write_atomic(staging / rel, file)
            credentials.ensure(spec, staging / "secrets")
            os.chmod(staging, 0o755)
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return changes
    credentials.ensure(spec, out / "secrets")
    for rel in changes.new + changes.changed:
        _write_atomic(out / rel, files[rel])
    return changes


def check(files: dict[str, File], out: Path) -> None:
    """Raises OutOfDate unless `out` holds exactly what `files` are (a version change shows as a changed
    VERSION_FILE; `render` warns about it before it checks)."""
    changes = compare(files, out)
    if not changes.up_to_date:
        raise OutOfDate(f"{out} is out of date with its spec: {len(changes.new)} new, "
                        f"{len(changes.changed)} changed, {len(changes.stale)} stale; "
                        "run `pgdock-gen render --diff` to see them")
