"""The rendered repo checked by the real tools: docker compose, yamllint, shellcheck, hadolint.

These need the binaries (scripts/setup.sh and `pip install -e .[test]` install them); a
missing one skips its test with the reason, anything else is a failure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pgdock_gen.template import starter_spec

from .conftest import render_spec

YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"


def need(*command: str) -> list[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (scripts/setup.sh installs it)")
    return list(command)


def run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False, timeout=120)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The golden cluster (3 nodes, witness, sync) and the shop example, rendered once."""
    from .conftest import EXAMPLES, GOLDEN

    root = tmp_path_factory.mktemp("tools")
    out = []
    for name, source in (("golden", GOLDEN / "spec.yaml"), ("shop", EXAMPLES / "shop.yaml")):
        render_spec(source.read_text(encoding="utf-8"), root / name)
        out.append(root / name)
    return out


def generated(repos: list[Path], *patterns: str) -> list[Path]:
    """Rendered files matching any of `patterns`, secrets excepted."""
    found = [
        p
        for repo in repos
        for pattern in patterns
        for p in sorted(repo.rglob(pattern))
        if "secrets" not in p.relative_to(repo).parts
    ]
    assert found, f"no {', '.join(patterns)} in the rendered repos"
    return found


def test_compose_files_are_valid(repos: list[Path]) -> None:
    docker = need("docker")
    if run([docker[0], "compose", "version"]).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    failures = []
    composes = generated(repos, "compose.yaml")
    assert len(composes) == 4 + 3 + 1  # the golden repo's proxy/ too
    for compose in composes:
        result = run([*docker, "compose", "-f", str(compose), "config", "-q"], cwd=compose.parent)
        if result.returncode != 0:
            failures.append(f"{compose}: {result.stderr.strip()}")
    assert failures == []


def test_yaml_files_pass_yamllint(repos: list[Path], tmp_path: Path) -> None:
    yamllint = need("yamllint")
    starter = tmp_path / "starter" / "cluster.yaml"
    starter.parent.mkdir()
    starter.write_text(starter_spec(), encoding="utf-8")
    files = [*generated(repos, "*.yaml", "*.yml"), starter]
    # per repo: cluster.yaml and the two CI files; golden's proxy/compose.yaml, monitoring/*.yml
    assert len(files) == 2 * 3 + 4 + 3 + 1 + 3
    result = run([*yamllint, "-f", "parsable", "-d", YAMLLINT_CONFIG, *map(str, files)])
    errors = [line for line in result.stdout.splitlines() if "[error]" in line]
    assert result.returncode == 0 and not errors, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck(repos: list[Path]) -> None:
    shellcheck = need("shellcheck")
    scripts = generated(repos, "*.sh")
    result = run([*shellcheck, *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint(repos: list[Path]) -> None:
    hadolint = need("hadolint")
    dockerfiles = generated(repos, "Dockerfile")
    assert any(p.parent.name == "base-image" for p in dockerfiles)
    assert sum(p.parent.parent.name == "nodes" for p in dockerfiles) == 4 + 3
    result = run([*hadolint, "--failure-threshold", "warning", *map(str, dockerfiles)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_e2e_stand_in_server_passes_shellcheck_and_hadolint() -> None:
    """tests/e2e/host is not rendered into a cluster repo, but it is shell and a Dockerfile all the same."""
    host = Path(__file__).parents[1] / "e2e" / "host"
    result = run([*need("shellcheck"), str(host / "start.sh")])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([*need("hadolint"), "--failure-threshold", "warning", str(host / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr
