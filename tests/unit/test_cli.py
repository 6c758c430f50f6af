"""`pgdock-gen` commands through the real entry point (`pgdock_gen.cli:main`) and its exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from jsonschema import Draft202012Validator

from pgdock_gen import spec as specs
from pgdock_gen.cli import cli

from .conftest import EXAMPLES, GOLDEN, REPO_ROOT, tree


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the CLI, groups included, e.g. ("lab", "up")."""
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


COMMANDS = _command_paths(cli)
HELP_CASES = [
    pytest.param(path, id=" ".join(path) or "(group)")
    for path in [(), *COMMANDS]
]
EDITED = "nodes/n1/postgresql.conf"


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def spec_file(tmp_path: Path, shop_spec_text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(shop_spec_text, encoding="utf-8")
    return path


@pytest.fixture
def rendered(run_cli, spec_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    result = run_cli("render", "-f", spec_file, "-o", out)
    assert result.exit_code == 0, result.stderr
    return out


def test_commands_are_the_documented_ones() -> None:
    assert {("init",), ("validate",), ("render",), ("schema",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", HELP_CASES)
def test_every_help_shows_an_example(run_cli, command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Usage:" in result.stdout
    assert re.search(r"^\s*Examples?\b", result.stdout, re.MULTILINE), result.stdout
    assert "pgdock-gen " in result.stdout.split("Example", 1)[1]


def test_real_entry_points_run(tmp_path: Path) -> None:
    """The console script and `python -m pgdock_gen` both reach main() and map errors to exit codes."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "pgdock_gen", "validate", "-f", EXAMPLES / "shop.yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "is valid" in ok.stdout
    # the console script of the interpreter running the tests (PATH may reach another installation's)
    script = Path(sys.executable).parent / "pgdock-gen"
    missing = subprocess.run(
        [script if script.exists() else "pgdock-gen", "validate", "-f", tmp_path / "absent.yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert missing.returncode == 2
    assert "pgdock-gen init" in missing.stderr
    assert "Traceback" not in missing.stderr


# ------------------------------------------------------------------ init


def test_init_writes_a_starter_spec_that_validates(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "prod" / "cluster.yaml"
    result = run_cli("init", path)
    assert result.exit_code == 0, result.stderr
    assert path.is_file()
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=./cluster.schema.json\n# pgdock cluster spec")
    parsed = specs.parse(text, str(path))
    assert parsed.nodes
    assert run_cli("validate", "-f", path).exit_code == 0


def test_init_refuses_to_overwrite_without_force(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("mine\n", encoding="utf-8")
    result = run_cli("init", path)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert path.read_text(encoding="utf-8") == "mine\n"
    forced = run_cli("init", "--force", path)
    assert forced.exit_code == 0, forced.stderr
    assert "# pgdock cluster spec" in path.read_text(encoding="utf-8").splitlines()[1]


# ------------------------------------------------------------------ validate


def test_validate_ok(run_cli, spec_file: Path) -> None:
    result = run_cli("validate", "-f", spec_file)
    assert result.exit_code == 0, result.stderr
    assert "cluster 'shop' is valid" in result.stdout
    assert "2 data node(s), 1 witness" in result.stdout
    assert result.stderr == ""


def test_validate_reports_one_line_per_problem(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: Bad\npostgres:\n  version: 9\nnodse: []\n", encoding="utf-8")
    result = run_cli("validate", "-f", path)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    assert all(line.startswith(f"{path}:") for line in lines), lines
    assert f"{path}:4: nodse: unknown key; did you mean 'nodes'?" in lines
    assert result.stdout == ""


def test_validate_single_problem_is_one_line(run_cli, tmp_path: Path, minimal_spec_text: str) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(minimal_spec_text.replace("version: 17", "version: 9"), encoding="utf-8")
    result = run_cli("validate", "-f", path)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert f"{path}:3: postgres.version:" in result.stderr


# ------------------------------------------------------------------ schema


def test_schema_is_a_valid_json_schema_that_accepts_the_examples(run_cli) -> None:
    result = run_cli("schema")
    assert result.exit_code == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in (EXAMPLES / "shop.yaml", GOLDEN / "spec.yaml"):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
        assert not errors, [e.message for e in errors]
    assert list(validator.iter_errors({"cluster": "x"})), "the schema must reject an incomplete spec"


# ------------------------------------------------------------------ render


def test_render_into_a_new_folder(run_cli, spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "repo"
    result = run_cli("render", "-f", spec_file, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert re.match(r"rendered .+: \d+ new, 0 updated, 0 unchanged", result.stdout), result.stdout
    for rel in (
        "cluster.yaml",
        "README.md",
        "nodes/n1/postgresql.conf",
        "nodes/w1/repmgr.conf",
        "secrets/passwords/app",
    ):
        assert (out / rel).is_file(), rel
    assert (out / "cluster.yaml").read_bytes() == spec_file.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["repo"], "no staging folder may be left behind"


def test_render_defaults_to_the_spec_folder(run_cli, spec_file: Path) -> None:
    result = run_cli("render", "-f", spec_file)
    assert result.exit_code == 0, result.stderr
    assert (spec_file.parent / "nodes" / "n1" / "postgresql.conf").is_file()


def test_check_is_clean_right_after_render(run_cli, spec_file: Path, rendered: Path) -> None:
    result = run_cli("render", "-f", spec_file, "-o", rendered, "--check")
    assert result.exit_code == 0, result.stderr
    assert "up to date" in result.stdout


def test_check_exits_1_after_an_edit(run_cli, spec_file: Path, rendered: Path) -> None:
    (rendered / EDITED).write_text("# edited by hand\n", encoding="utf-8")
    result = run_cli("render", "-f", spec_file, "-o", rendered, "--check")
    assert result.exit_code == 1
    assert "out of date" in result.stderr
    assert "1 changed" in result.stderr


def test_check_exits_1_for_a_missing_file_and_a_stale_node(run_cli, spec_file: Path, rendered: Path) -> None:
    (rendered / "nodes" / "n2" / "env").unlink()
    assert run_cli("render", "-f", spec_file, "-o", rendered, "--check").exit_code == 1
    run_cli("render", "-f", spec_file, "-o", rendered)
    assert run_cli("render", "-f", spec_file, "-o", rendered, "--check").exit_code == 0
    (rendered / "nodes" / "old").mkdir()
    result = run_cli("render", "-f", spec_file, "-o", rendered, "--check")
    assert result.exit_code == 1
    assert "1 stale" in result.stderr


def test_check_of_a_missing_folder_exits_1_and_creates_nothing(
    run_cli, spec_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "absent"
    assert run_cli("render", "-f", spec_file, "-o", out, "--check").exit_code == 1
    assert not out.exists()


def test_diff_shows_the_edit_and_writes_nothing(run_cli, spec_file: Path, rendered: Path) -> None:
    original = (rendered / EDITED).read_text(encoding="utf-8")
    edited = original.replace("hot_standby = on", "hot_standby = off")
    assert edited != original
    (rendered / EDITED).write_text(edited, encoding="utf-8")
    before = {rel: (rendered / rel).stat().st_mtime_ns for rel in listing(rendered)}
    result = run_cli("render", "-f", spec_file, "-o", rendered, "--diff")
    assert result.exit_code == 0, result.stderr
    assert f"--- a/{EDITED}\n+++ b/{EDITED}\n" in result.stdout
    assert "\n-hot_standby = off\n" in result.stdout
    assert "\n+hot_standby = on\n" in result.stdout
    assert re.search(r"^@@ -\d+,\d+ \+\d+,\d+ @@", result.stdout, re.MULTILINE)
    assert result.stdout.count("--- ") == 1, "only the edited file differs"
    assert "0 new, 1 changed, 0 stale" in result.stderr
    assert (rendered / EDITED).read_text(encoding="utf-8") == edited
    assert {rel: (rendered / rel).stat().st_mtime_ns for rel in listing(rendered)} == before


def test_diff_of_a_new_folder_creates_nothing(run_cli, spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "absent"
    result = run_cli("render", "-f", spec_file, "-o", out, "--diff")
    assert result.exit_code == 0, result.stderr
    assert "--- /dev/null\n+++ b/nodes/n1/postgresql.conf\n" in result.stdout
    assert not out.exists()


def test_rerender_refuses_to_overwrite_an_edit_without_force(
    run_cli, spec_file: Path, rendered: Path
) -> None:
    (rendered / EDITED).write_text("# edited by hand\n", encoding="utf-8")
    (rendered / "nodes" / "n2" / "env").unlink()
    result = run_cli("render", "-f", spec_file, "-o", rendered)
    assert result.exit_code == 2
    assert EDITED in result.stderr
    assert "--force" in result.stderr
    assert (rendered / EDITED).read_text(encoding="utf-8") == "# edited by hand\n"
    assert not (rendered / "nodes" / "n2" / "env").exists(), "a refused render writes nothing at all"


def test_rerender_with_force_restores_the_file(run_cli, spec_file: Path, rendered: Path) -> None:
    original = (rendered / EDITED).read_bytes()
    (rendered / EDITED).write_text("# edited by hand\n", encoding="utf-8")
    result = run_cli("render", "-f", spec_file, "-o", rendered, "--force")
    assert result.exit_code == 0, result.stderr
    assert "0 new, 1 updated" in result.stdout
    assert (rendered / EDITED).read_bytes() == original
    assert run_cli("render", "-f", spec_file, "-o", rendered, "--check").exit_code == 0


def test_render_reports_a_removed_node_as_stale(run_cli, spec_file: Path, rendered: Path) -> None:
    text = spec_file.read_text(encoding="utf-8")
    spec_file.write_text(
        text.replace("witness:\n  name: w1\n  address: 10.0.0.3\n  location: dc1\n", ""), encoding="utf-8"
    )
    result = run_cli("render", "-f", spec_file, "-o", rendered, "--force")
    assert result.exit_code == 0, result.stderr
    assert "nodes/w1/ is no longer in the spec" in result.stderr


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_render_into_an_unwritable_place(run_cli, spec_file: Path, tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file\n", encoding="utf-8")
    out = blocker / "repo" if where == "under-a-file" else blocker
    before = listing(tmp_path)
    result = run_cli("render", "-f", spec_file, "-o", out)
    assert result.exit_code == 2
    assert str(out) in result.stderr
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
    assert listing(tmp_path) == before
    assert blocker.read_text(encoding="utf-8") == "a regular file\n"


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "empty-folder"])
def test_bad_spec_creates_nothing(run_cli, tmp_path: Path, existing: bool) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: c\npostgres:\n  version: 9\nnodes:\n  - name: n1\n", encoding="utf-8")
    out = tmp_path / "repo"
    if existing:
        out.mkdir()
    result = run_cli("render", "-f", path, "-o", out)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 2, result.stderr
    assert out.exists() == existing
    assert listing(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["cluster.yaml"] + (["repo"] if existing else [])
    )


def test_render_of_a_missing_spec_exits_2(run_cli, tmp_path: Path) -> None:
    result = run_cli("render", "-f", tmp_path / "absent.yaml", "-o", tmp_path / "repo")
    assert result.exit_code == 2
    assert "pgdock-gen init" in result.stderr
    assert not (tmp_path / "repo").exists()


def test_cli_render_equals_api_render(run_cli, rendered: Path, tmp_path: Path, shop_spec_text: str) -> None:
    from .conftest import render_spec

    api = tmp_path / "api"
    render_spec(shop_spec_text, api)
    assert tree(api) == tree(rendered)


def test_validate_prints_placement_warning_and_exits_0(run_cli, tmp_path: Path, minimal_spec_text: str) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        minimal_spec_text + "    location: east\n  - name: n2\n    address: 10.0.0.2\n    location: west\n"
        "witness:\n  name: w\n  address: 10.0.0.9\n  location: west\n",
        encoding="utf-8",
    )
    result = run_cli("validate", "-f", path)
    assert result.exit_code == 0, result.stderr
    assert "cluster 'c' is valid" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"warning: {path}:7: nodes[0].location: n1 is the only member in location 'east'")
    assert "cancels the failover" in line


def test_validate_refuses_a_reserved_user_with_exit_2(run_cli, tmp_path: Path, minimal_spec_text: str) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(minimal_spec_text.replace("  version: 17\n", "  version: 17\n  user: repmgr\n"), encoding="utf-8")
    result = run_cli("validate", "-f", path)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert f"{path}:4: postgres.user: 'repmgr' is reserved (" in line
    assert result.stdout == ""


# ------------------------------------------------------------------ one line, never a traceback


def one_line_error(result, code: int, *words: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    for word in words:
        assert word in line, line
    return line


def test_a_spec_that_is_not_utf8_is_a_usage_error(run_cli, tmp_path: Path, minimal_spec_text: str) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_bytes(minimal_spec_text.encode() + b"# caf\xe9\n")
    one_line_error(run_cli("validate", "-f", path), 2, str(path), "UTF-8", "line 7")


def test_a_spec_that_is_a_folder_is_a_usage_error(run_cli, tmp_path: Path) -> None:
    one_line_error(run_cli("validate", "-f", tmp_path), 2, str(tmp_path))


@pytest.mark.parametrize("blocked", ["nodes", "nodes/n1", "secrets", "shared"])
def test_render_into_a_folder_with_a_file_in_the_way(run_cli, spec_file: Path, tmp_path: Path,
                                                     blocked: str) -> None:
    out = tmp_path / "repo"
    (out / blocked).parent.mkdir(parents=True, exist_ok=True)
    (out / blocked).write_text("in the way\n", encoding="utf-8")
    one_line_error(run_cli("render", "-f", spec_file, "-o", out), 2, "cannot write", str(out / blocked))
    assert (out / blocked).read_text(encoding="utf-8") == "in the way\n"


@pytest.mark.parametrize("where", ["under-a-file", "a-folder"])
def test_init_into_an_impossible_place(run_cli, tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    if where == "under-a-file":
        blocker.write_text("a regular file\n", encoding="utf-8")
        result = run_cli("init", blocker / "cluster.yaml")
    else:
        blocker.mkdir()
        result = run_cli("init", "--force", blocker)
    one_line_error(result, 2, "cannot write", str(blocker))


class FakeEngine:
    """A Docker client whose every command prints `text` (a node's event log or deploy history)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.volume = type("Volumes", (), {"exists": staticmethod(lambda name: True)})()
        self.image = type("Images", (), {"list": staticmethod(lambda repo: [type("Image", (), {"created": 0, "repo_tags": [f"{repo}:pg{v}-0123456789ab" for v in (15, 17)]})])})()  # noqa: E501

    def execute(self, container: str, command: list[str], **_: object) -> str:
        return self.text

    def run(self, image: str, command: list[str], **_: object) -> str:
        return self.text


GOOD_EVENT = '{"time": "2026-11-25T17:03:00", "event": "standby_promote", "success": true, "details": "ok"}'
GOOD_DEPLOY = ('{"version": "v1", "config": "abc", "spec": "def", "compose": "123", "time": "2026-11-25T17:03:00", '
               '"operator": "me@here", "rollback": false, "pending_restart": []}')


@pytest.mark.parametrize("garbage", ['{"time": "2026-11-25T17:0', "{not json}", '{"a": 1} trailing'])
@pytest.mark.parametrize("command", [("events",), ("history", "n1")], ids=["events", "history"])
def test_a_garbled_line_in_a_nodes_log_is_named(run_cli, monkeypatch: pytest.MonkeyPatch, spec_file: Path,
                                                  command: tuple[str, ...], garbage: str) -> None:
    from pgdock_gen import docker

    good = GOOD_EVENT if command[0] == "events" else GOOD_DEPLOY
    monkeypatch.setattr(docker, "client", lambda context=None: FakeEngine(f"{good}\n{garbage}\n"))
    one_line_error(run_cli(command[0], "-f", spec_file, *command[1:]), 1, "n1", "line 2")


def test_a_history_entry_without_its_fields_is_named(run_cli, monkeypatch: pytest.MonkeyPatch,
                                                     spec_file: Path) -> None:
    from pgdock_gen import docker

    monkeypatch.setattr(docker, "client", lambda context=None: FakeEngine(f'{GOOD_DEPLOY}\n{{"version": "v2"}}\n'))
    one_line_error(run_cli("history", "-f", spec_file, "n1"), 1, "n1", "line 2", "config")


def test_readable_logs_still_show(run_cli, monkeypatch: pytest.MonkeyPatch, spec_file: Path) -> None:
    from pgdock_gen import docker

    monkeypatch.setattr(docker, "client", lambda context=None: FakeEngine(f"{GOOD_DEPLOY}\n"))
    result = run_cli("history", "-f", spec_file, "n1")
    assert result.exit_code == 0, result.stderr
    assert "v1" in result.stdout and "me@here" in result.stdout
    monkeypatch.setattr(docker, "client", lambda context=None: FakeEngine(f"{GOOD_EVENT}\n"))
    result = run_cli("events", "-f", spec_file, "--json")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3 and "standby_promote" in result.stdout


class FakeStates:
    """A Docker client per node whose `pgdock-agent state` answers from `states` (None: not running)."""

    def __init__(self, states: dict[str, dict | None]) -> None:
        self.states = states

    def execute(self, container: str, command: list[str], **_: object) -> str:
        from python_on_whales.exceptions import DockerException

        state = self.states[container.rsplit("-", 1)[-1]]
        if state is None:
            raise DockerException(["docker", "exec"], 1)
        return json.dumps(state)


def agent(node: str, role: str, upstream: str | None = None, status: str = "running") -> dict:
    return {"node": node, "role": role, "timeline": 1, "upstream": upstream, "lag_bytes": 0, "lag_seconds": 0.0,
            "replicas": {}, "status": status, "repmgrd": role != "down", "registered": role != "down",
            "archiving": None}


@pytest.mark.parametrize(("states", "code", "state"), [
    ({"n1": agent("n1", "primary"), "n2": agent("n2", "standby", "n1"), "w1": agent("w1", "witness")}, 0, "healthy"),
    ({"n1": agent("n1", "primary"), "n2": agent("n2", "down", status="fenced: x"), "w1": agent("w1", "witness")},
     3, "degraded"),
    ({"n1": agent("n1", "primary"), "n2": agent("n2", "standby", "n1"), "w1": None}, 3, "degraded"),
    ({"n1": None, "n2": agent("n2", "standby"), "w1": agent("w1", "witness")}, 4, "down"),
], ids=["healthy", "fenced-standby", "witness-unreachable", "no-primary"])
def test_status_exits_with_its_verdict(run_cli, monkeypatch: pytest.MonkeyPatch, spec_file: Path,
                                       states: dict, code: int, state: str) -> None:
    from pgdock_gen import docker

    monkeypatch.setattr(docker, "client", lambda context=None: FakeStates(states))
    result = run_cli("status", "-f", spec_file, "--json")
    assert result.exit_code == code, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["format"], doc["state"], doc["exit_code"]) == (1, state, code)
    table = run_cli("status", "-f", spec_file)
    assert table.exit_code == code and state in table.stdout


def test_history_takes_node_positionally_or_by_the_hidden_alias(run_cli, monkeypatch: pytest.MonkeyPatch,
                                                                 spec_file: Path) -> None:
    from pgdock_gen import docker

    monkeypatch.setattr(docker, "client", lambda context=None: FakeEngine(f"{GOOD_DEPLOY}\n"))
    positional = run_cli("history", "-f", spec_file, "n1").stdout
    assert positional == run_cli("history", "-f", spec_file, "--node", "n1").stdout
    doc = json.loads(run_cli("history", "-f", spec_file, "n1", "--json").stdout)
    assert doc["format"] == 1 and doc["node"] == "n1" and doc["deployments"][0]["operator"] == "me@here"
    one_line_error(run_cli("history", "-f", spec_file, "n1", "--node", "n2"), 2, "two nodes given")
    one_line_error(run_cli("history", "-f", spec_file), 2, "name the node")
    assert "--node" not in run_cli("history", "--help").stdout


@pytest.mark.parametrize("args", [(), ("n1", "--all"), ("--node", "n1", "--context", "n1")])
def test_deploy_needs_exactly_one_way_to_choose_nodes(run_cli, spec_file: Path, args: tuple[str, ...]) -> None:
    one_line_error(run_cli("deploy", "-f", spec_file, *args), 2, "exactly one of NODE, --context NAME or --all")


def test_deploy_json_goes_with_dry_run(run_cli, spec_file: Path) -> None:
    one_line_error(run_cli("deploy", "-f", spec_file, "n1", "--json"), 2, "--dry-run")


def test_validate_json_of_a_valid_and_an_invalid_spec(run_cli, spec_file: Path, tmp_path: Path) -> None:
    good = run_cli("validate", "-f", spec_file, "--json")
    assert good.exit_code == 0, good.stderr
    doc = json.loads(good.stdout)
    assert doc["valid"] and doc["cluster"] == "shop" and doc["witness"] == "w1"
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("cluster: shop\npostgres: {version: 17}\nnodes: []\n", encoding="utf-8")
    bad = run_cli("validate", "-f", bad_spec, "--json")
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr
    doc = json.loads(bad.stdout)
    assert not doc["valid"] and doc["problems"] and all("bad.yaml" in p for p in doc["problems"])


def test_node_arguments_complete_from_the_spec(spec_file: Path, tmp_path: Path) -> None:
    from pgdock_gen.cli import _complete_contexts, _complete_nodes

    def _ctx(params: dict) -> click.Context:
        ctx = click.Context(cli)
        ctx.params = params
        return ctx

    assert _complete_nodes(_ctx({"spec_path": spec_file}), None, "") == ["n1", "n2", "w1"]
    assert _complete_nodes(_ctx({"spec_path": spec_file}), None, "n") == ["n1", "n2"]
    assert _complete_nodes(_ctx({"spec_path": tmp_path / "missing.yaml"}), None, "") == []
    assert _complete_nodes(_ctx({}), None, "") == []  # cluster.yaml of the working folder: none here
    assert _complete_contexts(_ctx({"spec_path": spec_file}), None, "") == ["n1", "n2", "w1"]


@pytest.mark.parametrize("words", [("psql", "n"), ("deploy", "n"), ("history", "n"), ("lab", "kill", "n"),
                                   ("deploy", "--node", "n")])
def test_shell_completion_through_click(run_cli, monkeypatch: pytest.MonkeyPatch, spec_file: Path,
                                        words: tuple[str, ...]) -> None:
    """What `_PGDOCK_GEN_COMPLETE=bash_source pgdock-gen` installs asks this: node names come back."""
    *command, typed = words
    path = 2 if command[0] == "lab" else 1  # -f belongs to the command, not to its group
    line = ["pgdock-gen", *command[:path], "-f", str(spec_file), *command[path:], typed]
    monkeypatch.setenv("_PGDOCK_GEN_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", " ".join(line))
    monkeypatch.setenv("COMP_CWORD", str(len(line) - 1))
    result = run_cli()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["plain,n1", "plain,n2"]


def test_status_that_cannot_look_exits_1(run_cli, monkeypatch: pytest.MonkeyPatch, spec_file: Path) -> None:
    from pgdock_gen import docker
    from pgdock_gen.errors import DockerError

    def no_docker(context: str | None = None) -> None:
        raise DockerError("the docker CLI is not installed; run scripts/setup.sh (or install docker-ce-cli)")

    monkeypatch.setattr(docker, "client", no_docker)
    one_line_error(run_cli("status", "-f", spec_file, "--json"), 1, "docker CLI is not installed")


@pytest.mark.parametrize(("choose", "nodes"), [(("n2",), ["n2"]), (("--node", "n2"), ["n2"]),
                                               (("--all",), ["n1", "n2", "w1"]), (("--context", "n1"), ["n1"])])
def test_deploy_dry_run_json_plans_the_chosen_nodes(run_cli, monkeypatch: pytest.MonkeyPatch, spec_file: Path,
                                                    choose: tuple[str, ...], nodes: list[str]) -> None:
    from pgdock_gen import deploy

    def plan(spec, repo, node, *, version, force):
        return deploy.Plan(node, node.context, version or "v1", "abc", True, ["start the compose project"])

    monkeypatch.setattr(deploy, "plan", plan)
    result = run_cli("deploy", "-f", spec_file, *choose, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == 1 and [n["node"] for n in doc["nodes"]] == nodes
    assert doc["nodes"][0]["steps"] == ["start the compose project"]
    text = run_cli("deploy", "-f", spec_file, *choose, "--dry-run")
    assert text.stdout.startswith(f"{nodes[0]} (context {nodes[0]}), config v1:\n  - start the compose project")
