"""The rendered repo of tests/golden/spec.yaml must equal tests/golden/expected/, byte for byte.

After an intended template change, regenerate the expected files and review the diff:

    PGDOCK_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden.py
    git diff tests/golden/expected/
"""

from __future__ import annotations

import difflib
import os
import shutil
import stat
from pathlib import Path

from .conftest import COPIED_VERBATIM, GOLDEN, tree

EXPECTED = GOLDEN / "expected"
SKIP = ("secrets", *COPIED_VERBATIM)


def _update(rendered: Path) -> None:
    shutil.rmtree(EXPECTED, ignore_errors=True)
    for rel, content in tree(rendered, skip=SKIP).items():
        target = EXPECTED / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(stat.S_IMODE((rendered / rel).stat().st_mode))


def test_golden_repo_matches_expected_files(golden_repo: Path) -> None:
    if os.environ.get("PGDOCK_UPDATE_GOLDEN") == "1":
        _update(golden_repo)
    actual = tree(golden_repo, skip=SKIP)
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
