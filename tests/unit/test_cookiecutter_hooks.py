"""The template's hooks: answers checked before anything is written, no clobbering, the checkout's renderer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from pgdock_gen.cookiecutter_hooks import answer_problems

from .conftest import REPO_ROOT

GOOD = {"cluster": "shop", "nodes": "n1=10.0.0.1, n2=10.0.0.2", "witness": "w1=10.0.0.3", "database": "app",
        "user": "app", "s3_bucket": "", "s3_region": "eu-central-1", "s3_endpoint": "https://s3.example.test:9000"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"witness": ""}, None),
        ({"nodes": "n1=db1.example.test"}, None),
        ({"nodes": "n1"}, "nodes: 'n1' is not name=address"),
        ({"nodes": "N1=10.0.0.1"}, "nodes: 'N1=10.0.0.1' is not name=address"),
        ({"nodes": "n1=10.0.0.1 #x"}, "nodes: 'n1=10.0.0.1 #x' is not name=address"),
        ({"nodes": " , "}, "nodes: give at least one name=address"),
        ({"witness": "w1=10.0.0.3, w2=10.0.0.4"}, "witness: give at most 1 name=address, got 2"),
        ({"cluster": "Shop"}, "cluster: 'Shop' must be lower-case letters, digits and dashes"),
        ({"database": "app\nnodes: []"}, "database: 'app\\nnodes: []' has characters a spec value cannot hold"),
        ({"s3_bucket": "b: {x: 1}"}, "s3_bucket: 'b: {x: 1}' has characters a spec value cannot hold"),
    ],
)
def test_answer_problems(change: dict[str, str], problem: str | None) -> None:
    assert answer_problems({**GOOD, **change}) == ([problem] if problem else [])


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """cookiecutter on the repo root, no input, caches under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = {"replay_dir": str(tmp_path / "replay"), "cookiecutters_dir": str(tmp_path / "cc")}
    out = tmp_path / "out"

    def go(answers: dict[str, str], *, overwrite: bool = False) -> Path:
        return Path(cookiecutter(str(REPO_ROOT), no_input=True, output_dir=str(out), default_config=config,
                                 extra_context=answers, overwrite_if_exists=overwrite))

    go.out = out  # type: ignore[attr-defined]
    return go


def test_a_bad_answer_is_named_before_any_file_is_written(run, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FailedHookException):
        run({**GOOD, "nodes": "n1"})
    err = capfd.readouterr().err
    assert "pgdock: nodes: 'n1' is not name=address" in err
    assert "Traceback" not in err
    assert not run.out.exists() or list(run.out.iterdir()) == []


def test_a_spec_rule_is_named_too(run, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FailedHookException):
        run({**GOOD, "nodes": "n1=10.0.0.1, n1=10.0.0.2"})
    assert "n1" in capfd.readouterr().err
    assert not (run.out / "shop").exists()


def test_other_answers_never_clobber_an_existing_spec(run, capfd: pytest.CaptureFixture[str]) -> None:
    project = run(GOOD)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert run(GOOD, overwrite=True) == project  # the same answers again: nothing changes, no refusal
    with pytest.raises(FailedHookException):
        run({**GOOD, "nodes": "n1=10.0.0.1, n2=10.0.0.9"}, overwrite=True)
    assert "was made from other answers; nothing was changed" in capfd.readouterr().err
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_hooks_load_the_checkouts_renderer_not_the_installed_one(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "generator").mkdir(parents=True)
    (checkout / "generator" / "__init__.py").write_text("")
    (checkout / "generator" / "cookiecutter_hooks.py").write_text("WHO = 'checkout'\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pgdock_checkout; "
            "m = pgdock_checkout.hooks_module(sys.argv[2]); print(m.WHO, m.__file__)")
    result = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "hooks"), str(checkout)],
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["checkout", str(checkout / "generator" / "cookiecutter_hooks.py")]


def test_render_needs_names_every_package_the_renderers_modules_import() -> None:
    """The pre-prompt check must know each package render's modules import when loaded (croniter was missed
    once: cookiecutter alone then ended in a traceback). Imports inside functions run lazily and are listed
    by hand; the end-to-end package test runs the template in a venv with only cookiecutter."""
    import ast
    import importlib.util

    from pgdock_gen.cookiecutter_hooks import RENDER_NEEDS

    code = ("import sys; from pgdock_gen import render, spec, template; "
            "print(' '.join(m for m in sys.modules if m.startswith('pgdock_gen.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    imported: set[str] = set()
    for name in loaded:
        origin = importlib.util.find_spec(name).origin
        for node in ast.parse(Path(origin).read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"pgdock_gen", "__future__"}
    assert third_party <= set(RENDER_NEEDS) | {"click"}, "click comes with cookiecutter; add the rest"
    assert "croniter" in third_party
