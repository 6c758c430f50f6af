"""The rendered repo of tests/golden/spec.yaml must equal tests/golden/expected/, byte for byte.

After an intended template change, regenerate the expected files and review the diff:

    PGDOCK_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden.py
    git diff tests/golden/expected/

Two things change without any template changing, so the comparison holds them still: the pgdock-gen
version (the golden repo is rendered as GOLDEN_VERSION) and the image tags' content hashes, which follow
base-image/ and backup-image/ (they are compared as placeholders; test_image_tags checks the real ones).
"""

from __future__ import annotations

import difflib
import os
import shutil
import stat
from pathlib import Path

import pytest

from pgdock_gen import images, render, spec

from .conftest import COPIED_VERBATIM, GOLDEN, tree

EXPECTED = GOLDEN / "expected"
SKIP = ("secrets", *COPIED_VERBATIM)
GOLDEN_VERSION = "0.0.0+golden"


@pytest.fixture(scope="module")
def golden_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/golden/spec.yaml rendered as pgdock-gen GOLDEN_VERSION."""
    out = tmp_path_factory.mktemp("golden") / "repo"
    text = (GOLDEN / "spec.yaml").read_text(encoding="utf-8")
    parsed = spec.parse(text, "cluster.yaml")
    render.write(parsed, render.plan(parsed, text, version=GOLDEN_VERSION), out)
    return out


def normalized(repo: Path) -> dict[str, bytes]:
    """The repo's files, secrets and image contexts left out, its image tags' hashes as placeholders."""
    names = images.names(spec.load(repo / "cluster.yaml"), repo)
    placeholders = {names.base: names.base.rsplit("-", 1)[0] + "-<hash of base-image/>",
                    names.backup: names.backup.rsplit("-", 1)[0] + "-<hash of backup-image/>"}
    files = tree(repo, skip=SKIP)
    for rel, content in files.items():
        for tag, placeholder in placeholders.items():
            content = content.replace(tag.encode(), placeholder.encode())
        files[rel] = content
    return files


def _update(rendered: Path) -> None:
    shutil.rmtree(EXPECTED, ignore_errors=True)
    for rel, content in normalized(rendered).items():
        target = EXPECTED / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(stat.S_IMODE((rendered / rel).stat().st_mode))


def test_golden_repo_matches_expected_files(golden_repo: Path) -> None:
    if os.environ.get("PGDOCK_UPDATE_GOLDEN") == "1":
        _update(golden_repo)
    actual = normalized(golden_repo)
    expected = tree(EXPECTED, skip=())
    assert expected, f"{EXPECTED} is empty; create it with PGDOCK_UPDATE_GOLDEN=1"
    assert sorted(actual) == sorted(expected), "rendered file list differs from the golden one"
    diffs = []
    for rel in sorted(actual):
        if actual[rel] != expected[rel]:
            diffs.extend(
                difflib.unified_diff(
                    expected[rel].decode().splitlines(keepends=True),
                    actual[rel].decode().splitlines(keepends=True),
                    f"expected/{rel}",
                    f"rendered/{rel}",
                )
            )
    assert not diffs, (
        "rendered files differ from tests/golden/expected/ "
        "(PGDOCK_UPDATE_GOLDEN=1 rewrites them):\n" + "".join(diffs)
    )


def test_golden_scripts_keep_their_executable_bit(golden_repo: Path) -> None:
    scripts = sorted((golden_repo / "shared").rglob("*.sh"))
    assert scripts
    for script in scripts:
        assert os.access(script, os.X_OK), script
