"""`cookiecutter` on the repo root gives the same cluster repo as `pgdock-gen render`."""

from __future__ import annotations

from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from pgdock_gen import spec as specs
from pgdock_gen.template import starter_spec

from .conftest import REPO_ROOT, render_spec, tree

ANSWERS = {
    "cluster": "three",
    "postgres_version": "15",
    "database": "shopdb",
    "user": "shop",
    "replication_mode": "sync",
    "nodes": "a1=10.2.0.1, a2=10.2.0.2, a3=10.2.0.3",
    "witness": "aw=10.2.0.9",
    "s3_bucket": "three-backups",
    "s3_region": "eu-central-1",
    "s3_endpoint": "https://s3.example.test",
}


@pytest.fixture
def run_cookiecutter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs cookiecutter without input; its replay and cache dirs live under tmp_path, not in $HOME."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = {
        "replay_dir": str(tmp_path / "home" / "replay"),
        "cookiecutters_dir": str(tmp_path / "home" / "cookiecutters"),
    }
    out = tmp_path / "cookiecutter-out"

    def run(answers: dict[str, str]) -> Path:
        return Path(
            cookiecutter(
                str(REPO_ROOT),
                no_input=True,
                output_dir=str(out),
                default_config=config,
                extra_context=answers,
            )
        )

    run.output_dir = out  # type: ignore[attr-defined]
    return run


def test_cookiecutter_and_render_give_the_same_tree(run_cookiecutter, tmp_path: Path) -> None:
    project = run_cookiecutter(ANSWERS)
    assert project.name == "three"
    spec_text = (project / "cluster.yaml").read_text(encoding="utf-8")
    parsed = specs.parse(spec_text, str(project / "cluster.yaml"))
    assert [n.name for n in parsed.members] == ["a1", "a2", "a3", "aw"]
    assert [n.address for n in parsed.members] == ["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.9"]
    assert (parsed.pg_version, parsed.database, parsed.user, parsed.replication_mode) == (
        15,
        "shopdb",
        "shop",
        "sync",
    )
    assert parsed.backup is not None
    assert (parsed.backup.s3.bucket, parsed.backup.s3.endpoint) == (
        "three-backups",
        "https://s3.example.test",
    )

    rendered = tmp_path / "rendered"
    render_spec(spec_text, rendered)
    from_cookiecutter, from_render = tree(project), tree(rendered)
    assert sorted(from_cookiecutter) == sorted(from_render)
    assert [rel for rel in from_render if from_cookiecutter[rel] != from_render[rel]] == []
    assert (project / "secrets" / "passwords" / "app").is_file(), "the hook must create the secrets too"
    assert (project / "nodes" / "aw" / "repmgr.conf").is_file()
    assert not (tmp_path / "home" / ".cookiecutter_replay").exists()


def test_cookiecutter_defaults_equal_init(run_cookiecutter) -> None:
    project = run_cookiecutter({})
    assert (project / "cluster.yaml").read_text(encoding="utf-8") == starter_spec()


def test_invalid_answer_fails_and_leaves_no_project(run_cookiecutter) -> None:
    with pytest.raises(FailedHookException):
        run_cookiecutter({**ANSWERS, "nodes": "N1=10.0.0.1"})
    out: Path = run_cookiecutter.output_dir
    assert not (out / "three").exists()
    assert not out.exists() or list(out.iterdir()) == []
