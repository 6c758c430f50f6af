"""Base and backup image tags carry a hash of their build context: forks with different base-image/ or
backup-image/ files never share a tag, and every file of a rendered repo names the same images."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from pgdock_gen import images, render, spec
from pgdock_gen.errors import DockerError, UsageError

from .conftest import render_spec

TAG = re.compile(r"pgdock/(?:base|backup):pg\d+-[0-9a-f]{12}")


def test_tags_carry_a_content_hash(shop_repo: Path) -> None:
    loaded = spec.load(shop_repo / "cluster.yaml")
    names = images.names(loaded, shop_repo)
    assert re.fullmatch(rf"pgdock/base:pg{loaded.pg_version}-[0-9a-f]{{12}}", names.base)
    assert re.fullmatch(rf"pgdock/backup:pg{loaded.pg_version}-[0-9a-f]{{12}}", names.backup)


@pytest.mark.parametrize("which", ["shop", "golden"])
def test_the_rendered_tree_references_the_tags_its_contexts_build(
    which: str, shop_repo: Path, golden_repo: Path
) -> None:
    repo = {"shop": shop_repo, "golden": golden_repo}[which]
    loaded = spec.load(repo / "cluster.yaml")
    names = images.names(loaded, repo)
    seen = set()
    for path in sorted(p for p in repo.rglob("*") if p.is_file() and "secrets" not in p.parts):
        seen |= set(TAG.findall(path.read_text(encoding="utf-8", errors="replace")))
    assert seen == {names.base} | ({names.backup} if loaded.backup else set())
    for node in loaded.members:
        folder = repo / "nodes" / node.name
        assert f"FROM {names.base}\n" in (folder / "Dockerfile").read_text(encoding="utf-8")
        compose = (folder / "compose.yaml").read_text(encoding="utf-8")
        assert f"image: {names.base}\n" in compose
        assert (f"image: {names.backup}\n" in compose) is (loaded.backup is not None and not node.witness)
    assert images.stale_references(loaded, repo) is None


def test_plan_and_the_written_repo_give_the_same_tags(shop_spec_text: str, tmp_path: Path) -> None:
    loaded = spec.parse(shop_spec_text)
    planned = render.plan(loaded, shop_spec_text)
    render_spec(shop_spec_text, tmp_path / "repo")
    names = images.names(loaded, tmp_path / "repo")
    assert f"FROM {names.base}\n" in planned["nodes/n1/Dockerfile"].content.decode()


@pytest.mark.parametrize("context", ["base-image", "backup-image"])
def test_a_change_in_an_image_context_changes_its_tag(golden_repo: Path, context: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(golden_repo, repo, symlinks=True)
    loaded = spec.load(repo / "cluster.yaml")
    before = images.names(loaded, repo)
    dockerfile = repo / context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text(encoding="utf-8") + "# a fork's edit\n", encoding="utf-8")
    after = images.names(loaded, repo)
    assert after.backup != before.backup, "the backup image builds FROM the base: it changes with either"
    assert (after.base != before.base) is (context == "base-image")
    first_missing = after.base if context == "base-image" else after.backup
    with pytest.raises(UsageError, match=f"does not name {re.escape(first_missing)}"):
        images.build_all(loaded, repo)


def test_an_added_file_or_an_executable_bit_changes_the_tag() -> None:
    files = [("Dockerfile", 0o644, b"FROM x\n"), ("entry.sh", 0o644, b"#!/bin/sh\n")]
    plain = images.context_digest(files)
    assert images.context_digest(list(reversed(files))) == plain, "order does not matter"
    assert images.context_digest([files[0], ("entry.sh", 0o755, b"#!/bin/sh\n")]) != plain
    assert images.context_digest([*files, ("extra", 0o644, b"")]) != plain
    assert images.context_digest(files, parent="pgdock/base:pg17-0") != plain


def test_same_files_same_tags_across_clusters(shop_spec_text: str, minimal_spec_text: str) -> None:
    """The tag depends on the files and the PostgreSQL major only: clusters of one pgdock share base images."""
    first = render.plan(spec.parse(shop_spec_text), shop_spec_text)
    second = render.plan(spec.parse(minimal_spec_text), minimal_spec_text)
    assert TAG.findall(first["nodes/n1/Dockerfile"].content.decode()) == \
        TAG.findall(second["nodes/n1/Dockerfile"].content.decode())


def test_names_refuse_a_folder_that_is_no_rendered_repo(tmp_path: Path, minimal_spec_text: str) -> None:
    with pytest.raises(UsageError, match="not a rendered cluster repo"):
        images.names(spec.parse(minimal_spec_text), tmp_path)


class FakeImages:
    """An engine's image list: (created, tags) per image."""

    def __init__(self, listed: list[tuple[int, list[str]]]) -> None:
        self.listed = listed

    def list(self, repository: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(created=c, repo_tags=[t for t in tags if t.startswith(repository + ":")])
                for c, tags in self.listed]

    def exists(self, tag: str) -> bool:
        return any(tag in tags for _, tags in self.listed)


def test_helper_containers_use_a_base_image_the_engine_has(shop_repo: Path) -> None:
    loaded = spec.load(shop_repo / "cluster.yaml")
    own = images.names(loaded, shop_repo).base
    engine = SimpleNamespace(image=FakeImages([(1, ["pgdock/base:pg17-aaaaaaaaaaaa"]), (3, ["pgdock/base:pg15-cc"]),
                                               (2, ["pgdock/base:pg17-bbbbbbbbbbbb", "other:x"])]))
    assert images.helper_image(engine, loaded) == "pgdock/base:pg17-bbbbbbbbbbbb", "the newest of this major"
    assert images.helper_image(engine, loaded, shop_repo) == "pgdock/base:pg17-bbbbbbbbbbbb", "own one not there"
    engine.image.listed.append((0, [own]))
    assert images.helper_image(engine, loaded, shop_repo) == own, "the repo's own base, when the engine has it"
    with pytest.raises(DockerError, match="no pgdock/base:pg17-"):
        images.helper_image(SimpleNamespace(image=FakeImages([(1, ["pgdock/base:pg15-x"])])), loaded)
