"""What the package reads at run time comes from its own data (importlib.resources), and a gap is loud."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdock_gen import render, spec, template
from pgdock_gen.errors import PgdockError

from .conftest import MINIMAL_SPEC


def test_assets_are_the_source_layouts_folders() -> None:
    root = Path(__file__).resolve().parents[2]
    for name in template.IMAGE_CONTEXTS:
        assert template.image_context(name).resolve() == root / name
    assert template.COOKIECUTTER_JSON.resolve() == root / "cookiecutter.json"
    assert template.STARTER_SPEC.resolve() == root / "{{cookiecutter.cluster}}" / "cluster.yaml"


def test_render_refuses_when_an_image_context_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "base-image").mkdir()
    (tmp_path / "base-image" / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setattr(template, "ASSETS", tmp_path)  # an installation without backup-image/
    parsed = spec.parse(MINIMAL_SPEC, "cluster.yaml")
    with pytest.raises(PgdockError, match=r"lacks its backup-image/ folder .*reinstall the package"):
        render.plan(parsed, MINIMAL_SPEC)
    assert not (tmp_path / "out").exists()
