"""Validation rules of cluster.yaml, through `pgdock_gen.spec.parse` / `load`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pgdock_gen.errors import SpecError
from pgdock_gen.spec import WITNESS_DEFAULT_ID, load, parse

from .conftest import MINIMAL_SPEC

PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def problems(text: str, source: str = "cluster.yaml") -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(text, source)
    assert info.value.problems, "a SpecError must list at least one problem"
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only_problem(text: str) -> re.Match[str]:
    found = problems(text)
    assert len(found) == 1, found
    match = PROBLEM_LINE.match(found[0])
    assert match, f"not FILE:LINE: field: message: {found[0]!r}"
    return match


def only_problem_raw(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def with_nodes(*nodes: str, extra: str = "") -> str:
    """A valid header plus the given node items (each a YAML mapping body, indented by 4)."""
    body = "".join("  - " + node.strip().replace("\n", "\n    ") + "\n" for node in nodes)
    return f"cluster: c\npostgres:\n  version: 17\nnodes:\n{body}{extra}"


def with_schedule(schedule: str) -> str:
    return MINIMAL_SPEC + f"backup:\n  s3:\n    bucket: bkt\n  schedule: '{schedule}'\n"


# ------------------------------------------------------------------ happy path


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = parse(MINIMAL_SPEC)
    assert spec.cluster == "c"
    assert spec.pg_version == 17
    assert (spec.database, spec.user) == ("app", "app")
    assert spec.parameters == {}
    assert spec.replication_mode == "async"
    assert spec.witness is None
    assert spec.backup is None
    (node,) = spec.nodes
    assert node.name == "n1"
    assert node.address == "10.0.0.1"
    assert node.context == "n1"
    assert node.port == 5432
    assert node.ssh_port == 2222
    assert node.priority == 100
    assert node.location == "default"
    assert node.id == 1
    assert node.witness is False
    assert spec.primary is node


def test_ids_count_from_one_and_witness_gets_1000() -> None:
    text = with_nodes(
        "name: a\naddress: 10.0.0.1",
        "name: b\naddress: 10.0.0.2",
        "name: c\naddress: 10.0.0.3",
        extra="witness:\n  name: w\n  address: 10.0.0.9\n",
    )
    spec = parse(text)
    assert [n.id for n in spec.nodes] == [1, 2, 3]
    assert spec.witness is not None
    assert spec.witness.id == WITNESS_DEFAULT_ID == 1000
    assert spec.witness.priority == 0
    assert spec.witness.witness is True
    assert spec.witness.context == "w"
    assert [m.name for m in spec.members] == ["a", "b", "c", "w"]


def test_explicit_values_override_defaults(golden_spec_text: str) -> None:
    spec = parse(golden_spec_text)
    g3 = spec.member("g3")
    assert (g3.port, g3.ssh_port, g3.priority, g3.location) == (5433, 2223, 0, "dc2")
    assert spec.replication_mode == "sync"
    assert spec.database == "orders"
    assert spec.backup is not None
    assert spec.backup.s3.endpoint == "https://s3.example.test"
    assert spec.backup.s3.path_style is True
    assert spec.backup.schedule == "30 2 * * *"
    assert spec.backup.retention_days == 14
    assert list(spec.parameters) == sorted(spec.parameters), "parameters are rendered in a stable order"


def test_backup_defaults() -> None:
    spec = parse(MINIMAL_SPEC + "backup:\n  s3:\n    bucket: bkt\n")
    assert spec.backup is not None
    assert spec.backup.schedule == "0 3 * * *"
    assert spec.backup.retention_days == 7
    assert spec.backup.s3.region == "us-east-1"
    assert spec.backup.s3.prefix == ""
    assert spec.backup.s3.endpoint is None
    assert spec.backup.server == spec.cluster  # where the backups of a cluster without the field always were


def test_backup_server_is_a_name() -> None:
    spec = parse(MINIMAL_SPEC + "backup:\n  s3:\n    bucket: bkt\n  server: shop-pg17\n")
    assert spec.backup is not None and spec.backup.server == "shop-pg17"
    with pytest.raises(SpecError, match="server"):
        parse(MINIMAL_SPEC + "backup:\n  s3:\n    bucket: bkt\n  server: ../other\n")


def test_shop_example_is_valid(shop_spec_text: str) -> None:
    spec = parse(shop_spec_text, "examples/shop.yaml")
    assert [n.name for n in spec.members] == ["n1", "n2", "w1"]


def test_member_lookup_of_unknown_name_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="no node named 'zz'"):
        parse(MINIMAL_SPEC).member("zz")


# ------------------------------------------------------------------ document level


def test_invalid_yaml_reports_the_line() -> None:
    text = "cluster: c\npostgres:\n\tversion: 17\nnodes: []\n"
    match = re.fullmatch(r"cluster\.yaml:(\d+): invalid YAML: .+", only_problem_raw(text))
    assert match
    assert match.group(1) == "3"


def test_invalid_yaml_bad_indentation_names_file_and_line() -> None:
    text = with_nodes("name: n1\naddress: 10.0.0.1") + "  - name: n2\n   address: 10.0.0.2\n"
    found = only_problem_raw(text)
    assert found.startswith("cluster.yaml:")
    assert "invalid YAML" in found
    line = int(found.split(":")[1])
    assert line in (8, 9), found  # the offending item, or the line right after it


@pytest.mark.parametrize(
    "text", ["- a\n- b\n", "just a string\n", "42\n", ""], ids=["list", "str", "int", "empty"]
)
def test_document_must_be_a_mapping(text: str) -> None:
    found = only_problem_raw(text)
    assert "(top level)" in found
    assert "must be a mapping" in found


def test_missing_top_level_keys_are_each_reported() -> None:
    found = problems("replication:\n  mode: async\n")
    assert "cluster.yaml:1: cluster: missing required key" in found
    assert "cluster.yaml:1: postgres: missing required key" in found
    assert "cluster.yaml:1: nodes: missing required key" in found


def test_missing_postgres_version() -> None:
    match = only_problem(
        "cluster: c\npostgres:\n  database: app\nnodes:\n  - name: n1\n    address: 10.0.0.1\n"
    )
    assert match["path"] == "postgres.version"
    assert match["message"] == "missing required key"
    assert match["line"] == "2"


def test_missing_node_address_points_at_the_node() -> None:
    match = only_problem(with_nodes("name: n1"))
    assert match["path"] == "nodes[0].address"
    assert match["message"] == "missing required key"
    assert match["line"] == "5"


def test_empty_node_list_is_rejected() -> None:
    match = only_problem("cluster: c\npostgres:\n  version: 17\nnodes: []\n")
    assert match["path"] == "nodes"


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    text = MINIMAL_SPEC.replace("nodes:", "nodse:")
    found = problems(text)
    assert "cluster.yaml:4: nodse: unknown key; did you mean 'nodes'?" in found


def test_unknown_node_key_suggests_the_right_one() -> None:
    text = MINIMAL_SPEC.replace("address:", "adress:")
    found = problems(text)
    assert "cluster.yaml:6: nodes[0].adress: unknown key; did you mean 'address'?" in found


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    found = problems(MINIMAL_SPEC + "zzzzzz: 1\n")
    assert any(
        p.startswith("cluster.yaml:7: zzzzzz: unknown key; allowed: ") and "nodes" in p for p in found
    ), found


def test_witness_has_no_priority() -> None:
    match = only_problem(MINIMAL_SPEC + "witness:\n  name: w\n  address: 10.0.0.9\n  priority: 5\n")
    assert match["path"] == "witness.priority"
    assert "unknown key" in match["message"]


# ------------------------------------------------------------------ names and addresses


def test_duplicate_node_names() -> None:
    match = only_problem(with_nodes("name: n1\naddress: 10.0.0.1", "name: n1\naddress: 10.0.0.2"))
    assert match["path"] == "nodes[1].name"
    assert match["line"] == "7"
    assert "duplicate node name 'n1'" in match["message"]
    assert "nodes[0]" in match["message"]


def test_duplicate_address_and_port() -> None:
    match = only_problem(with_nodes("name: n1\naddress: 10.0.0.1", "name: n2\naddress: 10.0.0.1\nport: 5432"))
    assert match["path"] == "nodes[1].address"
    assert match["line"] == "8"
    assert "10.0.0.1:5432" in match["message"]


def test_a_key_given_twice_is_named_with_both_lines() -> None:
    match = only_problem(with_nodes("name: n1\naddress: 10.0.0.1\npriority: 50\npriority: 0"))
    assert match["path"] == "nodes[0].priority"
    assert match["line"] == "8"
    assert "given twice (first on line 7)" in match["message"]


def test_a_top_level_key_given_twice_is_reported() -> None:
    match = only_problem(MINIMAL_SPEC + "cluster: other\n")
    assert match["path"] == "cluster"
    assert "given twice" in match["message"]


def test_same_address_with_other_port_is_allowed() -> None:
    spec = parse(
        with_nodes("name: n1\naddress: 10.0.0.1",
                   "name: n2\naddress: 10.0.0.1\nport: 5433\nssh_port: 2223\napi_port: 8009")
    )
    assert [(n.address, n.port) for n in spec.nodes] == [("10.0.0.1", 5432), ("10.0.0.1", 5433)]


def test_same_address_needs_distinct_ssh_ports() -> None:
    found = problems(with_nodes("name: n1\naddress: 10.0.0.1", "name: n2\naddress: 10.0.0.1\nport: 5433"))
    assert any("nodes[1]" in p and "ssh_port" in p for p in found), found


def test_witness_must_not_share_address_and_port() -> None:
    match = only_problem(MINIMAL_SPEC + "witness:\n  name: w\n  address: 10.0.0.1\n")
    assert match["path"] == "witness.address"


@pytest.mark.parametrize(
    "name, message",
    [
        ("N1", "is not valid"),
        ("1n", "is not valid"),
        ("n_1", "is not valid"),
        ("a" * 31, "is too long"),
    ],
)
def test_invalid_node_names(name: str, message: str) -> None:
    match = only_problem(MINIMAL_SPEC.replace("name: n1", f"name: {name}"))
    assert match["path"] == "nodes[0].name"
    assert message in match["message"]


def test_name_of_exactly_30_chars_is_allowed() -> None:
    assert parse(MINIMAL_SPEC.replace("name: n1", "name: " + "a" * 30)).nodes[0].name == "a" * 30


def test_invalid_cluster_name() -> None:
    match = only_problem(MINIMAL_SPEC.replace("cluster: c", "cluster: Shop"))
    assert match["path"] == "cluster"
    assert match["line"] == "1"


@pytest.mark.parametrize("field", ["cluster", "name", "address"])
def test_trailing_newline_is_not_a_valid_name(field: str) -> None:
    text = MINIMAL_SPEC
    text = {
        "cluster": text.replace("cluster: c", 'cluster: "c\\n"'),
        "name": text.replace("name: n1", 'name: "n1\\n"'),
        "address": text.replace("address: 10.0.0.1", 'address: "10.0.0.1\\n"'),
    }[field]
    problems(text)


def test_witness_named_like_a_data_node() -> None:
    match = only_problem(MINIMAL_SPEC + "witness:\n  name: n1\n  address: 10.0.0.9\n")
    assert match["path"] == "witness.name"
    assert match["line"] == "8"
    assert "'n1'" in match["message"]


# ------------------------------------------------------------------ postgres


@pytest.mark.parametrize("version", [9, 14, 16, 18])
def test_unsupported_postgres_version(version: int) -> None:
    match = only_problem(MINIMAL_SPEC.replace("version: 17", f"version: {version}"))
    assert match["path"] == "postgres.version"
    assert match["line"] == "3"
    assert f"{version} is not supported" in match["message"]
    assert "15, 17" in match["message"]


@pytest.mark.parametrize("version", [15, 17])
def test_supported_postgres_versions(version: int) -> None:
    assert parse(MINIMAL_SPEC.replace("version: 17", f"version: {version}")).pg_version == version


def test_bad_replication_mode() -> None:
    match = only_problem(MINIMAL_SPEC + "replication:\n  mode: quorum\n")
    assert match["path"] == "replication.mode"
    assert "async, sync" in match["message"]


# ------------------------------------------------------------------ cron (croniter decides, as in the sidecar)


@pytest.mark.parametrize(
    "schedule, why",
    [
        ("0 3 * *", "needs 5 fields"),
        ("0 3 * * * *", "needs 5 fields"),  # croniter would read a sixth field as seconds
        ("@reboot", "needs 5 fields"),
        ("", "needs 5 fields"),
        ("61 * * * *", "croniter refuses minute field '61'"),
        ("0 24 * * *", "croniter refuses hour field '24'"),
        ("0 0 0 * *", "croniter refuses day of month field '0'"),
        ("0 0 * 13 *", "croniter refuses month field '13'"),
        ("0 0 * * 8", "croniter refuses day of week field '8'"),
        ("0 5-3 * * *", "croniter refuses hour field '5-3'"),
        ("*/0 * * * *", "croniter refuses minute field '*/0'"),
        ("0 3 * * xyz", "croniter refuses day of week field 'xyz'"),
        ("H 3 * * *", "croniter refuses minute field 'H'"),
        ("0 3 31 2 *", "never comes due"),
        ("0 3 30 2 *", "never comes due"),
        ("0 3 31 4,6,9,11 *", "never comes due"),
    ],
)
def test_bad_cron_expressions(schedule: str, why: str) -> None:
    match = only_problem(with_schedule(schedule))
    assert match["path"] == "backup.schedule"
    assert match["line"] == "10"
    assert f"bad cron expression '{schedule}'" in match["message"]
    assert why in match["message"]


@pytest.mark.parametrize(
    "schedule",
    [
        "0 3 * * *",
        "*/15 * * * *",
        "@daily",
        "@hourly",
        "0 3 * * mon-fri",
        "0 0 1 jan,jul *",
        "5,35 1-5/2 * * 0",
        "0 0 * * 7",
        "0 0 29 2 *",  # leap days come round
        "0 3 L * *",
        "0 3 * * 1#2",
    ],
)
def test_good_cron_expressions(schedule: str) -> None:
    spec = parse(with_schedule(schedule))
    assert spec.backup is not None
    assert spec.backup.schedule == schedule


def test_bad_cron_expression_on_the_command_line(run_cli, tmp_path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(with_schedule("0 3 31 2 *"), encoding="utf-8")
    result = run_cli("validate", "-f", path)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "backup.schedule" in lines[0] and "never comes due" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ priorities and ids


@pytest.mark.parametrize(
    "priority, message", [(-1, "less than the minimum of 0"), (1001, "greater than the maximum of 1000")]
)
def test_priority_out_of_range(priority: int, message: str) -> None:
    match = only_problem(
        with_nodes("name: n1\naddress: 10.0.0.1", f"name: n2\naddress: 10.0.0.2\npriority: {priority}")
    )
    assert match["path"] == "nodes[1].priority"
    assert match["line"] == "9"
    assert message in match["message"]


@pytest.mark.parametrize("priority", [0, 1000])
def test_priority_bounds_are_allowed(priority: int) -> None:
    spec = parse(
        with_nodes("name: n1\naddress: 10.0.0.1", f"name: n2\naddress: 10.0.0.2\npriority: {priority}")
    )
    assert spec.nodes[1].priority == priority


def test_some_data_node_must_be_promotable() -> None:
    match = only_problem(
        with_nodes("name: n1\naddress: 10.0.0.1\npriority: 0", "name: n2\naddress: 10.0.0.2\npriority: 0")
    )
    assert match["path"] == "nodes"
    assert match["line"] == "4"
    assert "priority above 0" in match["message"]


def test_duplicate_repmgr_ids() -> None:
    match = only_problem(
        with_nodes("name: n1\naddress: 10.0.0.1\nid: 7", "name: n2\naddress: 10.0.0.2\nid: 7")
    )
    assert match["path"] == "nodes[1].id"
    assert "repmgr id 7" in match["message"]


def test_explicit_id_colliding_with_a_default_id() -> None:
    match = only_problem(with_nodes("name: n1\naddress: 10.0.0.1\nid: 2", "name: n2\naddress: 10.0.0.2"))
    assert match["path"] == "nodes[1].id"


def test_witness_id_colliding_with_a_data_node() -> None:
    match = only_problem(MINIMAL_SPEC + "witness:\n  name: w\n  address: 10.0.0.9\n  id: 1\n")
    assert match["path"] == "witness.id"


# ------------------------------------------------------------------ reporting


def test_several_problems_reported_at_once_one_line_each() -> None:
    text = (
        "cluster: Bad\n"  # 1
        "postgres:\n"  # 2
        "  version: 9\n"  # 3
        "nodes:\n"  # 4
        "  - name: ok\n"  # 5
        "    address: 10.0.0.1\n"  # 6
        "  - name: N2\n"  # 7
        "    adress: 10.0.0.2\n"  # 8
    )
    found = problems(text, "prod/cluster.yaml")
    assert len(found) == 5, found
    for line in found:
        assert "\n" not in line
        assert PROBLEM_LINE.match(line), line
        assert line.startswith("prod/cluster.yaml:")
    by_path = {PROBLEM_LINE.match(p)["path"]: PROBLEM_LINE.match(p)["line"] for p in found}
    assert by_path == {
        "cluster": "1",
        "postgres.version": "3",
        "nodes[1].name": "7",
        "nodes[1].adress": "8",
        "nodes[1].address": "7",
    }


def test_field_path_format_for_nested_fields() -> None:
    text = (
        with_nodes("name: n1\naddress: 10.0.0.1", "name: n2\naddress: 10.0.0.2\nport: 70000")
        + "backup:\n  s3:\n    bucket: B\n"
    )
    found = problems(text)
    paths = sorted(PROBLEM_LINE.match(p)["path"] for p in found)
    assert paths == ["backup.s3.bucket", "nodes[1].port"]
    assert any(p.startswith("cluster.yaml:12: backup.s3.bucket:") for p in found), found


def test_source_name_is_used_in_every_problem() -> None:
    found = problems("nodes: 3\n", "/etc/pgdock/x.yaml")
    assert all(p.startswith("/etc/pgdock/x.yaml:") for p in found)


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(MINIMAL_SPEC, encoding="utf-8")
    assert load(path).cluster == "c"


def test_load_reports_problems_with_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(MINIMAL_SPEC.replace("version: 17", "version: 9"), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:3: postgres.version:")


def test_load_of_a_missing_file_suggests_init(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "cluster.yaml"
    with pytest.raises(SpecError) as info:
        load(path)
    (problem,) = info.value.problems
    assert str(path) in problem
    assert "pgdock-gen init" in problem
    assert info.value.exit_code == 2


# ------------------------------------------------------------------ reserved names

RESERVED = ["postgres", "repmgr", "replicator", "template0", "template1"]


def with_postgres(key: str, name: str) -> str:
    return MINIMAL_SPEC.replace("  version: 17\n", f"  version: 17\n  {key}: {name}\n")


@pytest.mark.parametrize(
    "key, name",
    [(key, name) for key in ("database", "user") for name in RESERVED]
    + [("user", "public"), ("user", "none"), ("user", "pg_app")],
)
def test_reserved_names_are_refused(key: str, name: str) -> None:
    match = only_problem(with_postgres(key, name))
    assert match["path"] == f"postgres.{key}"
    assert match["line"] == "4"
    assert match["message"].startswith(f"'{name}' is reserved (")
    assert match["message"].endswith("; choose another name")


@pytest.mark.parametrize(
    "key, name",
    [("database", "pg_app"), ("database", "public"), ("user", "postgres_app"), ("user", "_repmgr"),
     ("database", "template2"), ("user", "app_pg_")],
)
def test_names_near_reserved_ones_are_allowed(key: str, name: str) -> None:
    spec = parse(with_postgres(key, name))
    assert getattr(spec, key) == name


@pytest.mark.parametrize("key", ["database", "user"])
def test_reserved_name_in_capitals_is_already_refused_by_the_pattern(key: str) -> None:
    match = only_problem(with_postgres(key, "Postgres"))
    assert match["path"] == f"postgres.{key}"
    assert "is not valid (must match" in match["message"]


# ------------------------------------------------------------------ placement warnings


def placed(nodes: str, witness: str | None = None) -> str:
    """A spec from a shorthand: "east west:0 -" is n1 in east, n2 in west with priority 0, n3 without a
    location; `witness` is the witness's location ("-": none given), None for no witness."""
    items = []
    for i, item in enumerate(nodes.split(), start=1):
        location, _, priority = item.partition(":")
        items.append(f"name: n{i}\naddress: 10.0.0.{i}" + (f"\nlocation: {location}" if location != "-" else "")
                     + (f"\npriority: {priority}" if priority else ""))
    extra = "" if witness is None else "witness:\n  name: w\n  address: 10.0.0.9\n" + (
        f"  location: {witness}\n" if witness != "-" else "")
    return with_nodes(*items, extra=extra)


@pytest.mark.parametrize(
    "nodes, witness, warned",
    [
        ("east west west", None, ["nodes[0]"]),
        ("east west west", "-", ["nodes[0]"]),
        ("east west", "west", ["nodes[0]"]),
        ("east west", "north", ["nodes[0]", "nodes[1]"]),
        ("east west", None, ["nodes[0]", "nodes[1]"]),
        ("east:0 west west", None, ["nodes[0]"]),
        ("east east west", "north", ["nodes[2]"]),
        ("east west", "east", ["nodes[1]"]),
        ("- - -", "-", []),
        ("dc1 dc1", "dc1", []),
        ("east west west", "east", []),
        ("east east west west", None, []),
        ("east east west:0", "north", []),
        ("east", None, []),
    ],
    ids=[
        "primary-alone-no-witness",
        "primary-alone-witness-without-location",
        "primary-alone-witness-with-standbys",
        "witness-in-a-third-location-counts-for-neither",
        "two-nodes-two-locations",
        "bootstrap-primary-even-with-priority-0",
        "promotable-standby-alone",
        "witness-with-primary-but-lone-standby-once-promoted",
        "no-locations",
        "one-location",
        "witness-with-primary-standbys-together",
        "two-per-location",
        "lone-node-never-promoted",
        "single-node",
    ],
)
def test_placement_warnings(nodes: str, witness: str | None, warned: list[str]) -> None:
    spec = parse(placed(nodes, witness))
    found = [PROBLEM_LINE.match(w) for w in spec.warnings]
    assert all(found), spec.warnings
    assert [m["path"] for m in found] == [f"{w}.location" for w in warned]
    for match, path in zip(found, warned, strict=True):
        node = spec.nodes[int(path[6:-1])]
        assert match["message"].startswith(f"{node.name} is the only member in location {node.location!r}")
        assert "cancels the failover" in match["message"]
        assert f"put the witness or another data node in {node.location!r}" in match["message"]


def test_placement_warning_points_at_the_location_line() -> None:
    (warning,) = parse(placed("east west west")).warnings
    assert warning.startswith("cluster.yaml:7: nodes[0].location: n1 is the only member in location 'east'")


def test_examples_have_no_warnings(shop_spec_text: str, golden_spec_text: str) -> None:
    assert parse(shop_spec_text).warnings == ()
    assert parse(golden_spec_text).warnings == ()


# ------------------------------------------------------------------ backup.s3: values that reach shell commands


def with_s3(**fields: str) -> str:
    """MINIMAL_SPEC with backups to bucket `bkt`; each field's value is written as a YAML (JSON) string."""
    s3 = {"bucket": "bkt", **fields}
    return MINIMAL_SPEC + "backup:\n  s3:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in s3.items())


UNSAFE_PREFIXES = ["x;touch /tmp/pwned;#", "$(touch /tmp/pwned)", "`id`", "a b", "it's", "a//b", "../up", "a/./b",
                   "%p", "a\\b", "a|b", "a&b", "~/x"]
UNSAFE_ENDPOINTS = [
    "https://s3.example.com/$(touch /tmp/pwned)", "http://s3.example.com;id", "https://s3.example.com'x",
    "https://s3.example.com`id`", "ftp://s3.example.com", "https://user:pw@s3.example.com", "https://",
    "https://s3.example.com/?x=1", "https://s3.example.com/%p", "https://-s3.example.com", "http://h:1:2",
    "https://s3.example.com/a b", "https://s3..example.com", "s3.example.com", "https://[fd00::1;id]",
]


@pytest.mark.parametrize("field, value", [("prefix", v) for v in UNSAFE_PREFIXES]
                         + [("endpoint", v) for v in UNSAFE_ENDPOINTS])
def test_unsafe_s3_prefixes_and_endpoints_are_refused(field: str, value: str) -> None:
    match = only_problem(with_s3(**{field: value}))
    assert match["path"] == f"backup.s3.{field}"
    assert match["line"] == "10"
    assert "is not valid: " in match["message"]


@pytest.mark.parametrize("prefix", ["", "golden", "team-a/pg_backups/v1.2", "/lead/trail/", "a..b"])
def test_plain_s3_prefixes_are_allowed(prefix: str) -> None:
    spec = parse(with_s3(prefix=prefix))
    assert spec.backup is not None and spec.backup.s3.prefix == prefix


@pytest.mark.parametrize("endpoint", [
    "https://s3.example.test", "http://10.0.0.5:9000", "https://[fd00::1]:9000/s3", "lab",
    "https://s3.eu-central-1.amazonaws.com/", "http://minio:9000/a/b_c.d-e~f",
])
def test_http_endpoints_are_allowed(endpoint: str) -> None:
    spec = parse(with_s3(endpoint=endpoint))
    assert spec.backup is not None and spec.backup.s3.endpoint == endpoint


@pytest.mark.parametrize("bucket", ["a..b", "192.168.1.1", "Bkt", "ab", "a" * 64, "-ab", "ab-", "a_b", "a;b"])
def test_bucket_names_follow_the_s3_rules(bucket: str) -> None:
    match = only_problem(with_s3(bucket=bucket))
    assert match["path"] == "backup.s3.bucket"


@pytest.mark.parametrize("bucket", ["abc", "golden-backups", "a.b-c", "a" * 63, "1.2.3"])
def test_good_bucket_names(bucket: str) -> None:
    spec = parse(with_s3(bucket=bucket))
    assert spec.backup is not None and spec.backup.s3.bucket == bucket


@pytest.mark.parametrize("region", ["eu central", "x;y", "$(id)", ""])
def test_unsafe_regions_are_refused(region: str) -> None:
    assert only_problem(with_s3(region=region))["path"] == "backup.s3.region"


# ------------------------------------------------------------------ postgres.parameters


def with_parameters(*items: str) -> str:
    """MINIMAL_SPEC with postgres.parameters given as raw YAML lines (`name: value`)."""
    return MINIMAL_SPEC.replace("  version: 17\n", "  version: 17\n  parameters:\n"
                                + "".join(f"    {item}\n" for item in items))


@pytest.mark.parametrize("item", [
    "ssl: off", "port: 5433", "password_encryption: md5", "listen_addresses: localhost", "hba_file: /tmp/x",
    "ident_file: /tmp/x", "wal_level: minimal", "archive_mode: off", "archive_command: 'cp %p /x'",
    "archive_library: basic_archive", "restore_command: 'cp /x/%f %p'", "primary_conninfo: 'host=x'",
    "primary_slot_name: s", "ssl_cert_file: /x", "ssl_key_file: /x", "ssl_ca_file: /x", "ssl_crl_file: /x",
    "ssl_passphrase_command: 'echo x'", "unix_socket_directories: /tmp", "cluster_name: x", "hot_standby: off",
    "wal_log_hints: off", "synchronous_standby_names: '*'", "data_directory: /x", "config_file: /x",
    "include: /etc/passwd", "include_dir: /etc", "include_if_exists: /x", "recovery_target_time: '2026-01-01'",
])
def test_managed_parameters_are_refused_with_the_field_named(item: str) -> None:
    name = item.split(":")[0]
    match = only_problem(with_parameters(item))
    assert match["path"] == f"postgres.parameters.{name}"
    assert match["line"] == "5"
    assert match["message"].startswith("managed by pgdock ("), match["message"]


@pytest.mark.parametrize("item", ["max_wal_senders: 4", "max_replication_slots: 0", "max_wal_senders: '32'",
                                  "max_replication_slots: 15.5"])
def test_replication_capacity_cannot_go_below_what_pgdock_needs(item: str) -> None:
    match = only_problem(with_parameters(item))
    assert match["path"] == f"postgres.parameters.{item.split(':')[0]}"
    assert "at least 16" in match["message"]


def test_replication_capacity_may_grow_and_wal_level_may_be_logical() -> None:
    spec = parse(with_parameters("max_wal_senders: 32", "max_replication_slots: 20", "wal_level: logical"))
    assert spec.parameters == {"max_replication_slots": 20, "max_wal_senders": 32, "wal_level": "logical"}


def test_shared_preload_libraries_are_merged_after_repmgr() -> None:
    spec = parse(with_parameters("shared_preload_libraries: 'pg_stat_statements, repmgr,auto_explain ,"
                                 "pg_stat_statements'", "work_mem: 8MB"))
    assert spec.preload_libraries == ("repmgr", "pg_stat_statements", "auto_explain")
    assert spec.parameters == {"work_mem": "8MB"}, "merged, not rendered as a parameter of its own"
    assert parse(MINIMAL_SPEC).preload_libraries == ("repmgr",)
    assert parse(with_parameters("shared_preload_libraries: ''")).preload_libraries == ("repmgr",)


@pytest.mark.parametrize("value", ["\"x'; archive_command = 'touch /tmp/pwned\"", "'a b'", "'$libdir/x'",
                                   "'a,,b'", "'pg-stat'", "1", "true"])
def test_preload_libraries_must_be_plain_names(value: str) -> None:
    match = only_problem(with_parameters(f"shared_preload_libraries: {value}"))
    assert match["path"] == "postgres.parameters.shared_preload_libraries"


@pytest.mark.parametrize("name", ["SSL", "work-mem", "1x", "a..b", "x.", ".x", "on", "yes", "1", "'a b'",
                                  "'%p'", "'x = 1 #'"])
def test_parameter_names_must_be_guc_shaped(name: str) -> None:
    found = problems(with_parameters(f"{name}: 1"))
    assert len(found) == 1, found
    assert "postgres.parameters" in found[0]
    assert found[0].startswith("cluster.yaml:5: "), found


@pytest.mark.parametrize("value", ['"a\\x01b"', '"a\\0b"', '"a\\tb"', '"a\\x7fb"', ".nan", ".inf", "-.inf",
                                   '"two\\nlines"'])
def test_parameter_values_without_control_characters_or_infinities(value: str) -> None:
    match = only_problem(with_parameters(f"application_name: {value}"))
    assert match["path"] == "postgres.parameters.application_name"
    assert match["line"] == "5"


def test_custom_parameters_with_a_dot_are_allowed() -> None:
    assert parse(with_parameters("pg_stat_statements.max: 10000")).parameters == {"pg_stat_statements.max": 10000}


# ------------------------------------------------------------------ hostile documents


def timed_parse(text: str, limit: float = 1.0) -> tuple[float, list[str]]:
    """Parses `text` and returns (seconds, problems); a parse running past 10 s is stopped as a failure."""
    import signal
    import time

    def stop(*_: object) -> None:
        raise TimeoutError("the spec took more than 10 s to answer")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 10)
    started = time.perf_counter()
    try:
        parse(text)
        found: list[str] = []
    except SpecError as exc:
        found = exc.problems
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - started
    assert elapsed < limit, f"took {elapsed:.2f} s"
    return elapsed, found


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_at_once() -> None:
    assert len(ALIAS_BOMB) < 400
    _, found = timed_parse(ALIAS_BOMB)
    assert len(found) == 1, found
    assert found[0].startswith("cluster.yaml:1: ") and "anchors and aliases" in found[0], found


@pytest.mark.parametrize("text, line", [
    (MINIMAL_SPEC.replace("cluster: c", "cluster: &name c"), 1),
    (with_nodes("name: n1\naddress: &ip 10.0.0.1", "name: n2\naddress: 10.0.0.2\nlocation: *ip"), 6),
    ("base: &base {version: 17}\n" + MINIMAL_SPEC.replace("  version: 17\n", "  <<: *base\n"), 1),
], ids=["anchor", "alias", "merge-key"])
def test_anchors_and_aliases_are_refused_with_their_line(text: str, line: int) -> None:
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(f"cluster.yaml:{line}: "), found
    assert "anchors and aliases" in found[0]


def test_deep_nesting_is_refused_quickly() -> None:
    _, found = timed_parse("cluster: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert len(found) == 1 and "nested" in found[0], found


def test_a_spec_over_one_megabyte_is_refused_quickly() -> None:
    _, found = timed_parse(MINIMAL_SPEC + ("# padding" + " " * 90 + "\n") * 11_000)
    assert len(found) == 1, found
    assert "1000000 bytes" in found[0], found


def test_node_count_is_limited() -> None:
    nodes = [f"name: n{i}\naddress: 10.0.{i // 200}.{i % 200 + 1}" for i in range(65)]
    match = only_problem(with_nodes(*nodes))
    assert match["path"] == "nodes"
    assert match["message"] == "65 given; at most 64 are supported"
    assert len(parse(with_nodes(*nodes[:64])).nodes) == 64


def big_parameters(count: int, name: str = "ext.setting_{i}", size: int = 200) -> list[str]:
    return [f"{name.format(i=i)}: '{i:08} {'x' * size}'" for i in range(count)]


def test_a_large_legal_spec_answers_within_a_second() -> None:
    nodes = [f"name: n{i}\naddress: 10.0.{i // 200}.{i % 200 + 1}\nport: {5432 + i}\nssh_port: {2222 + i}\n"
             f"location: dc{i % 3}\npriority: {i}" for i in range(64)]
    parameters = "".join(f"    {item}\n" for item in big_parameters(4_300, size=180))
    text = with_nodes(*nodes).replace("  version: 17\n", "  version: 17\n  parameters:\n" + parameters)
    assert 900_000 < len(text) <= 1_000_000
    _, found = timed_parse(text)
    assert found == []


def test_a_large_spec_full_of_problems_answers_within_a_second() -> None:
    text = with_parameters(*big_parameters(4_900, "Bad-Name-{i}", size=170))
    assert 900_000 < len(text) <= 1_000_000
    _, found = timed_parse(text)
    assert len(found) == 4_900
    assert found[-1].startswith("cluster.yaml:4904: postgres.parameters.Bad-Name-4899: "), found[-1]


@pytest.mark.parametrize("where", ["parameters", "nodes"])
def test_masses_of_tiny_values_are_refused_quickly(where: str) -> None:
    if where == "parameters":
        text = with_parameters(*(f"p{i}: 1" for i in range(70_000)))
    else:
        text = MINIMAL_SPEC + "  - {}\n" * 140_000
    assert 900_000 < len(text) <= 1_000_000
    _, found = timed_parse(text)
    assert len(found) == 1 and "more than 10000 keys and values" in found[0], found


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize("address", [
    "all", "samenet", "samehost", "ALL", ".example.com", "-x", "example..com", "host_name", "host.", "10.0.0.256",
    "1.2.3", "fd00::zz", "fe80::1%eth0", "a" * 64 + ".com", "10.0.0.0/8", "+admins", "@file",
])
def test_addresses_that_are_not_an_ip_or_a_host_name_are_refused(address: str) -> None:
    match = only_problem(MINIMAL_SPEC.replace("address: 10.0.0.1", f"address: {json.dumps(address)}"))
    assert match["path"] == "nodes[0].address"
    assert match["line"] == "6"


@pytest.mark.parametrize("address", ["10.0.0.1", "fd00::1", "::ffff:10.0.0.1", "db-1.example.com", "localhost",
                                     "n1", "2001:db8::7334"])
def test_ip_literals_and_host_names_are_allowed(address: str) -> None:
    assert parse(MINIMAL_SPEC.replace("address: 10.0.0.1", f"address: '{address}'")).nodes[0].address == address


def test_the_witness_address_is_checked_too() -> None:
    match = only_problem(MINIMAL_SPEC + "witness:\n  name: w\n  address: samenet\n")
    assert match["path"] == "witness.address"


def test_a_character_yaml_refuses_is_one_line_with_its_line() -> None:
    assert only_problem_raw("cluster: c\n\nx: \x07\n") == (
        "cluster.yaml:3: invalid YAML: unacceptable character #x0007: control characters are not allowed")
