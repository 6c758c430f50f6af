"""Shared fixtures of the fast unit layer: spec texts and a one-call renderer."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgdock_gen import render, spec
from pgdock_gen.render import Changes

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "base-image" / "agent"))  # the agent package, as the image carries it
EXAMPLES = REPO_ROOT / "examples"
GOLDEN = REPO_ROOT / "tests" / "golden"
COPIED_VERBATIM = ("base-image", "backup-image")
"""Build contexts the renderer copies from the repo root; they change with the images, not the spec."""

MINIMAL_SPEC = """\
cluster: c
postgres:
  version: 17
nodes:
  - name: n1
    address: 10.0.0.1
"""


def render_spec(text: str, out: Path, *, force: bool = False) -> Changes:
    """Validates `text` and writes its cluster repo into `out` (the `pgdock-gen render` path, in process)."""
    parsed = spec.parse(text, "cluster.yaml")
    return render.write(parsed, render.plan(parsed, text), out, force=force)


def tree(root: Path, *, skip: tuple[str, ...] = ("secrets",)) -> dict[str, bytes]:
    """Every file below `root` as relative path -> bytes, leaving out the top-level folders in `skip`."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Runs the real entry point `pgdock_gen.cli.main` in process: its exit code mapping included."""
    from pgdock_gen.cli import main

    def run(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["pgdock-gen", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def shop_spec_text() -> str:
    return (EXAMPLES / "shop.yaml").read_text(encoding="utf-8")


@pytest.fixture
def golden_spec_text() -> str:
    return (GOLDEN / "spec.yaml").read_text(encoding="utf-8")


@pytest.fixture
def minimal_spec_text() -> str:
    return MINIMAL_SPEC


@pytest.fixture
def shop_repo(tmp_path: Path, shop_spec_text: str) -> Iterator[Path]:
    """examples/shop.yaml rendered into a fresh folder."""
    out = tmp_path / "shop"
    render_spec(shop_spec_text, out)
    yield out


@pytest.fixture(scope="module")
def golden_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/golden/spec.yaml (3 data nodes, a witness, sync) rendered once per module."""
    out = tmp_path_factory.mktemp("golden") / "repo"
    render_spec((GOLDEN / "spec.yaml").read_text(encoding="utf-8"), out)
    return out
