"""What makes a rendered cluster repo a complete fork: its CI, its schema file and the pgdock-gen
version that rendered it (recorded, pinned in CI, and named when another version renders it)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from yamllint import linter
from yamllint.config import YamlLintConfig

from pgdock_gen import render, spec
from pgdock_gen.schema import SCHEMA, SCHEMA_FILE, document
from pgdock_gen.template import pgdock_version, starter_spec

CI_FILES = (".github/workflows/pgdock.yml", ".gitlab-ci.yml")
VERSION = metadata.version("pgdock-gen")


def test_the_version_is_the_installed_distributions() -> None:
    assert pgdock_version() == VERSION


@pytest.mark.parametrize("rel", CI_FILES)
def test_ci_files_pass_yamllint_with_its_default_rules(shop_repo: Path, rel: str) -> None:
    text = (shop_repo / rel).read_text(encoding="utf-8")
    problems = list(linter.run(text, YamlLintConfig("extends: default\nrules: {line-length: {max: 120}}")))
    assert problems == [], "\n".join(f"{rel}:{p.line}: {p.desc} ({p.rule})" for p in problems)


def _commands(rel: str, document_: dict) -> list[str]:
    if rel == ".gitlab-ci.yml":
        return list(document_["pgdock"]["script"])
    (job,) = document_["jobs"].values()
    return [step["run"] for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("rel", CI_FILES)
def test_ci_installs_the_rendering_version_then_validates_and_checks(shop_repo: Path, rel: str) -> None:
    parsed = yaml.safe_load((shop_repo / rel).read_text(encoding="utf-8"))
    assert _commands(rel, parsed) == [
        f'python -m pip install "pgdock-gen=={VERSION}"',
        "pgdock-gen validate -f cluster.yaml",
        "pgdock-gen render -f cluster.yaml --check",
    ]
    if rel.startswith(".github"):
        assert set(parsed["on"]) == {"push", "pull_request"}  # quoted "on": yamllint's truthy rule


def test_the_repo_carries_the_schema_and_the_starter_points_at_it(shop_repo: Path, run_cli) -> None:
    written = (shop_repo / SCHEMA_FILE).read_text(encoding="utf-8")
    assert written == document() == run_cli("schema").stdout
    Draft202012Validator.check_schema(json.loads(written))
    assert json.loads(written) == SCHEMA
    assert starter_spec().splitlines()[0] == f"# yaml-language-server: $schema=./{SCHEMA_FILE}"


def test_the_repo_records_the_version_that_rendered_it(shop_repo: Path) -> None:
    assert json.loads((shop_repo / render.VERSION_FILE).read_text(encoding="utf-8")) == {"pgdock-gen": VERSION}
    assert render.recorded_version(shop_repo) == VERSION


@pytest.fixture
def out(run_cli, tmp_path: Path, shop_spec_text: str) -> Path:
    """The shop spec (tmp_path/cluster.yaml) rendered into tmp_path/repo by this version."""
    (tmp_path / "cluster.yaml").write_text(shop_spec_text, encoding="utf-8")
    assert run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", tmp_path / "repo").exit_code == 0
    return tmp_path / "repo"


def test_another_version_warns_naming_both_and_still_renders(
    run_cli, tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "pgdock_version", lambda: "99.0.0")

    checked = run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", out, "--check")
    assert checked.exit_code != 0
    assert f"rendered by pgdock-gen {VERSION}; this is pgdock-gen 99.0.0" in checked.stderr
    assert "Traceback" not in checked.stderr

    rendered = run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", out)
    assert rendered.exit_code == 0, rendered.stderr  # the version file is pgdock's own: no --force needed
    (warning,) = [line for line in rendered.stderr.splitlines() if line.startswith("warning:")]
    assert VERSION in warning and "99.0.0" in warning
    assert render.recorded_version(out) == "99.0.0"
    assert 'pgdock-gen==99.0.0"' in (out / ".gitlab-ci.yml").read_text(encoding="utf-8")

    again = run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", out, "--check")
    assert again.exit_code == 0 and "warning" not in again.stderr


def test_same_version_renders_without_a_warning(run_cli, tmp_path: Path, out: Path) -> None:
    second = run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", out)
    assert second.exit_code == 0 and "warning" not in second.stderr


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"pgdock-gen": 3}'])
def test_an_unreadable_version_file_is_rewritten_quietly(out: Path, shop_spec_text: str, content: str) -> None:
    (out / render.VERSION_FILE).write_text(content, encoding="utf-8")
    parsed = spec.parse(shop_spec_text)
    files = render.plan(parsed, shop_spec_text)
    assert render.version_warning(files, out) is None
    render.write(parsed, files, out)
    assert render.recorded_version(out) == VERSION


def test_a_hand_edit_still_needs_force_after_a_version_change(
    run_cli, tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (out / ".gitlab-ci.yml").open("a", encoding="utf-8") as handle:
        handle.write("# mine\n")
    monkeypatch.setattr(render, "pgdock_version", lambda: "99.0.0")
    refused = run_cli("render", "-f", tmp_path / "cluster.yaml", "-o", out)
    assert refused.exit_code != 0
    assert ".gitlab-ci.yml" in refused.stderr and "README.md" not in refused.stderr
    assert render.recorded_version(out) == VERSION, "a refused render writes nothing"
