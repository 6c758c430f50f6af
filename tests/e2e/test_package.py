"""pgdock-gen as users install it (issue 11): a wheel in a clean venv, and the template from cookiecutter alone.

No Docker here, but the package index: each venv is made without this machine's
site-packages and gets its packages the way a user's would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgdock_gen.template import starter_spec

from ..unit.conftest import EXAMPLES, REPO_ROOT, render_spec, tree
from .conftest import SPECS

SPEC_FILES = sorted([*EXAMPLES.glob("*.yaml"), REPO_ROOT / "tests" / "golden" / "spec.yaml", *SPECS.glob("*.yaml")])
ANSWERS = ["cluster=pkg", "nodes=p1=10.3.0.1, p2=10.3.0.2", "witness=pw=10.3.0.9"]


def _venv(path: Path, *packages: str) -> Path:
    """A venv without this machine's packages, with `packages` installed from the index or as files."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    if packages:
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *packages],
                       check=True)
    return path / "bin"


def _run(*args: str | Path, cwd: Path | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command; `home` keeps cookiecutter's clones and replays out of the user's home."""
    env = {**os.environ, "HOME": str(home)} if home else None
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the source (the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source") / "pgdock"
    shutil.copytree(REPO_ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".lab", "build", "dist", "*.egg-info", "__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(out), str(source)], check=True)
    (built,) = out.glob("pgdock_gen-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(tmp_path_factory.mktemp("venv") / "wheel", str(wheel))


@pytest.fixture(scope="module")
def cookiecutter_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(tmp_path_factory.mktemp("venv") / "cc", "cookiecutter")


def test_the_wheel_carries_the_image_contexts_and_the_template_files(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("pgdock_gen/assets/base-image/Dockerfile", "pgdock_gen/assets/backup-image/Dockerfile",
                     "pgdock_gen/assets/base-image/agent/pgdock_agent/decide.py", "pgdock_gen/assets/cookiecutter.json",
                     "pgdock_gen/assets/starter/cluster.yaml", "pgdock_gen/templates/node/compose.yaml.j2"):
        assert expected in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "bench/", "generator/"))]


def test_init_from_the_wheel_writes_the_starter_spec(installed: Path, tmp_path: Path) -> None:
    result = _run(installed / "pgdock-gen", "init", tmp_path / "cluster.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cluster.yaml").read_text(encoding="utf-8") == starter_spec()


@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=lambda p: p.name)
def test_the_wheel_renders_what_the_source_renders(installed: Path, spec_file: Path, tmp_path: Path) -> None:
    text = spec_file.read_text(encoding="utf-8")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "cluster.yaml").write_text(text, encoding="utf-8")
    result = _run(installed / "pgdock-gen", "render", "-f", tmp_path / "w" / "cluster.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    render_spec(text, tmp_path / "s")
    from_wheel, from_source = tree(tmp_path / "w"), tree(tmp_path / "s")
    assert sorted(from_wheel) == sorted(from_source)
    assert [rel for rel in from_source if from_wheel[rel] != from_source[rel]] == []
    assert "base-image/Dockerfile" in from_wheel and "backup-image/Dockerfile" in from_wheel


def test_cookiecutter_alone_names_what_the_template_needs(cookiecutter_only: Path, tmp_path: Path) -> None:
    for answers in (ANSWERS, [*ANSWERS[:1], "nodes=p1"]):
        result = _run(cookiecutter_only / "cookiecutter", "--no-input", "-o", tmp_path / "out", REPO_ROOT, *answers,
                      home=tmp_path)
        assert result.returncode != 0
        assert "pgdock: the template needs the Python packages jsonschema, cryptography, croniter" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.fixture(scope="module")
def cookiecutter_ready(cookiecutter_only: Path) -> Iterator[Path]:
    """The same venv once the user installed what the message named."""
    subprocess.run([str(cookiecutter_only / "pip"), "install", "-q", "--disable-pip-version-check",
                    "jsonschema", "cryptography", "croniter"], check=True)
    yield cookiecutter_only


def test_cookiecutter_renders_the_same_tree_and_refuses_bad_answers(cookiecutter_ready: Path, tmp_path: Path) -> None:
    bad = _run(cookiecutter_ready / "cookiecutter", "--no-input", "-o", tmp_path / "bad", REPO_ROOT,
               *ANSWERS[:1], "nodes=p1", home=tmp_path)
    assert bad.returncode != 0 and "pgdock: nodes: 'p1' is not name=address" in bad.stderr
    # cookiecutter 2.7 logs a traceback of its own for any failing generation hook; none comes from pgdock
    assert "pgdock_gen" not in bad.stderr and "Error:" not in bad.stderr.replace("FailedHookException", "")
    assert not (tmp_path / "bad").exists() or list((tmp_path / "bad").iterdir()) == []

    good = _run(cookiecutter_ready / "cookiecutter", "--no-input", "-o", tmp_path / "good", REPO_ROOT, *ANSWERS,
                home=tmp_path)
    assert good.returncode == 0, good.stderr
    project = tmp_path / "good" / "pkg"
    render_spec((project / "cluster.yaml").read_text(encoding="utf-8"), tmp_path / "s")
    assert tree(project) == tree(tmp_path / "s")


def test_cookiecutter_from_a_git_url(cookiecutter_ready: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO_ROOT}", str(clone)], check=True)
    result = _run(cookiecutter_ready / "cookiecutter", "--no-input", "-o", tmp_path / "out",
                  f"git+file://{clone}", *ANSWERS, cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "out" / "pkg"
    assert (project / "base-image" / "Dockerfile").is_file()
    assert (project / "nodes" / "p2" / "repmgr.conf").is_file()
