"""Loads `cluster.yaml` into a typed model, reporting every problem at once.

Shape rules live in `schema.SCHEMA` (checked with jsonschema); rules that span
several fields (unique names, a witness named like a node, ...) or need to know
pgdock (reserved role and database names) live here. Each problem names the file,
the line and the field path, so a user fixes them all in one pass instead of one
per run. Valid specs that likely defeat their purpose (a primary alone in its
location) get warnings in the same format, in `Spec.warnings`.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .cron import cron_problem
from .errors import SpecError
from .schema import SCHEMA, allowed_keys

WITNESS_DEFAULT_ID = 1000
FENCE_GAP = 2.5
"""Seconds between an isolated primary's fence and the earliest promotion: see Spec.fence_seconds."""
"""repmgr node ids of data nodes count from 1; the witness sits well apart so adding nodes never collides."""

RESERVED_NAMES: dict[str, str] = {
    "postgres": "initdb's superuser and maintenance database",
    "template0": "a template database initdb creates",
    "template1": "a template database initdb creates",
    "repmgr": "repmgr's superuser and metadata database, created on every node's first start",
    "replicator": "the streaming replication role, created on the primary's first start",
}
"""Roles and databases a node has before the spec's own are created (initdb, base-image/agent): reusing
one fails the primary's first start. pgdock quotes names (sql.Identifier), so only an exact match
clashes; the schema's pattern admits lowercase names only, so no other spelling can get through either."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    context: str
    port: int
    ssh_port: int
    location: str
    id: int
    priority: int
    witness: bool = False

    @property
    def hba_address(self) -> str:
        """The address as pg_hba.conf wants it: a host CIDR for an IP, the name otherwise."""
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return self.address
        return f"{ip}/{ip.max_prefixlen}"


@dataclass(frozen=True)
class S3:
    bucket: str
    prefix: str
    region: str
    endpoint: str | None
    path_style: bool
    ca_bundle: str | None


@dataclass(frozen=True)
class Backup:
    s3: S3
    schedule: str
    retention_days: int


@dataclass(frozen=True)
class Spec:
    cluster: str
    pg_version: int
    database: str
    user: str
    parameters: dict[str, Any]
    replication_mode: str
    detection_seconds: int
    hook_seconds: int
    nodes: tuple[Node, ...]
    witness: Node | None
    backup: Backup | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    warnings: tuple[str, ...] = ()
    """Valid but probably unintended (file:line: field: message): `validate` shows them, nothing refuses them."""

    @property
    def primary(self) -> Node:
        return self.nodes[0]

    @property
    def members(self) -> tuple[Node, ...]:
        """Data nodes and the witness: everyone repmgr knows about."""
        return self.nodes + ((self.witness,) if self.witness else ())

    @property
    def reconnect_attempts(self) -> int:
        """repmgrd's tries before declaring the primary gone. The first failed check (≤ 1 s), the attempts
        (each up to connect_timeout 2 s + 1 s apart) and the promotion (≈ 3 s) add up to detection_seconds."""
        return max(1, (self.detection_seconds - 4) // 3)

    @property
    def fence_seconds(self) -> float:
        """An isolated primary stops this long after it last heard a quorum. A standby promotes no sooner than
        detection_seconds after it last heard the primary, which may be up to one probe interval (1 s) plus a
        probe's own duration before the isolation began; the rest of FENCE_GAP (≥ 1 s) is the margin by which
        the fence precedes any promotion, tick (0.25 s) and the stop itself included."""
        return max(1.5, self.detection_seconds - FENCE_GAP)

    def member(self, name: str) -> Node:
        for node in self.members:
            if node.name == name:
                return node
        raise SpecError([f"no node named {name!r} in cluster {self.cluster!r}; "
                         f"nodes: {', '.join(n.name for n in self.members)}"])


def _format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Lines:
    """Maps field paths to the line they are written on, from PyYAML's node tree."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def of(self, path: tuple[str | int, ...]) -> int | None:
        node = self.root
        line = node.start_mark.line + 1 if node else None
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == part:
                        child = value
                        line = key.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
                line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line


class _Problems:
    def __init__(self, source: str, lines: _Lines):
        self.source, self.lines, self.items = source, lines, []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        line = self.lines.of(path)
        where = f"{self.source}:{line}" if line else self.source
        self.items.append(f"{where}: {_format_path(path)}: {message}")


def _duplicate_problems(node: yaml.Node | None, path: tuple[str | int, ...], problems: _Problems) -> None:
    """YAML lets a later key silently replace an earlier one; in a cluster spec that hides a mistake."""
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key, value in node.value:
            if key.value in first_line:
                problems.add((*path, key.value), f"given twice (first on line {first_line[key.value]}); "
                             "keep one")
            first_line.setdefault(key.value, key.start_mark.line + 1)
            _duplicate_problems(value, (*path, key.value), problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _duplicate_problems(item, (*path, index), problems)


def _schema_problems(data: Any, problems: _Problems) -> None:
    from jsonschema import Draft202012Validator  # heavy import, only when validating

    validator = Draft202012Validator(SCHEMA)
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = allowed_keys(path)
            for key in sorted(set(error.instance) - set(allowed)):
                hint = difflib.get_close_matches(key, allowed, n=1)
                suffix = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"
                problems.add(path + (key,), f"unknown key{suffix}")
        elif error.validator == "required":
            missing = error.message.split("'")[1]
            problems.add(path + (missing,), "missing required key")
        elif error.validator == "enum":
            problems.add(path, f"{error.instance!r} is not supported; use one of "
                               f"{', '.join(map(str, error.validator_value))}")
        elif error.validator == "pattern":
            problems.add(path, f"{error.instance!r} is not valid (must match {error.validator_value})")
        else:
            problems.add(path, error.message)


def _multiline_problems(value: Any, path: tuple[str | int, ...], problems: _Problems) -> None:
    """JSON Schema patterns let a trailing newline through (Python's `$`); no spec value may span lines."""
    if isinstance(value, dict):
        for key, item in value.items():
            _multiline_problems(item, path + (key,), problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _multiline_problems(item, path + (i,), problems)
    elif isinstance(value, str) and ("\n" in value or "\r" in value):
        problems.add(path, f"{value!r} must be a single line")


def _reserved_why(key: str, name: str) -> str | None:
    """Why PostgreSQL or pgdock already owns `name` as the spec's database or user, or None."""
    if name in RESERVED_NAMES:
        return RESERVED_NAMES[name]
    if key == "user" and (name in ("public", "none") or name.startswith("pg_")):
        return "PostgreSQL refuses it as a role name"
    return None


def _semantic_problems(data: dict[str, Any], problems: _Problems) -> None:
    _multiline_problems(data, (), problems)
    for key in ("database", "user"):
        name = data["postgres"].get(key)
        if isinstance(name, str) and (why := _reserved_why(key, name)):
            problems.add(("postgres", key), f"{name!r} is reserved ({why}); choose another name")
    nodes = data.get("nodes") or []
    seen_names: dict[str, int] = {}
    seen_endpoints: dict[tuple[str, int], int] = {}
    seen_ids: dict[int, int] = {}
    seen_ssh: dict[tuple[str, int], str] = {}
    members = [(("nodes", i), n) for i, n in enumerate(nodes)]
    if isinstance(data.get("witness"), dict):
        members.append((("witness",), data["witness"]))
    endpoints = [(m.get("address"), m.get("port", 5432)) for _, m in members]
    for where, member in members:
        ssh = (member.get("address"), member.get("ssh_port", 2222))
        if endpoints.count((ssh[0], member.get("port", 5432))) > 1:
            continue  # reported below as a shared address and port
        if ssh in seen_ssh:
            problems.add(where + ("ssh_port",), f"{ssh[0]}:{ssh[1]} is also the sshd of {seen_ssh[ssh]}; "
                                                "nodes sharing a host need their own ssh_port")
        seen_ssh.setdefault(ssh, _format_path(where))
    for i, node in enumerate(nodes):
        name, address = node.get("name"), node.get("address")
        if name in seen_names:
            problems.add(("nodes", i, "name"), f"duplicate node name {name!r} (also nodes[{seen_names[name]}])")
        seen_names.setdefault(name, i)
        endpoint = (address, node.get("port", 5432))
        if endpoint in seen_endpoints:
            problems.add(("nodes", i, "address"), f"address {address}:{endpoint[1]} is also used by "
                                                  f"nodes[{seen_endpoints[endpoint]}]; give each node its own "
                                                  "address or port")
        seen_endpoints.setdefault(endpoint, i)
        node_id = node.get("id", i + 1)
        if node_id in seen_ids:
            problems.add(("nodes", i, "id"), f"repmgr id {node_id} is also used by nodes[{seen_ids[node_id]}]")
        seen_ids.setdefault(node_id, i)
    if nodes and not any(n.get("priority", 100) > 0 for n in nodes if isinstance(n.get("priority", 100), int)):
        problems.add(("nodes",), "no data node can be promoted: give at least one a priority above 0")
    witness = data.get("witness")
    if isinstance(witness, dict):
        if witness.get("name") in seen_names:
            problems.add(("witness", "name"), f"{witness['name']!r} is already the name of a data node")
        if (witness.get("address"), witness.get("port", 5432)) in seen_endpoints:
            problems.add(("witness", "address"), "the witness must not share address and port with a data node")
        if witness.get("id", WITNESS_DEFAULT_ID) in seen_ids:
            problems.add(("witness", "id"), "the witness id is also a data node's id")
    schedule = (data.get("backup") or {}).get("schedule")
    if isinstance(schedule, str) and (why := cron_problem(schedule)):
        problems.add(("backup", "schedule"), f"bad cron expression {schedule!r}: {why}")


def _placement_warnings(spec: Spec, warnings: _Problems) -> None:
    """A node that can become primary and has its location to itself is never failed over.

    repmgr promotes a standby only if it, or a member it can still reach (standby or witness), is in the
    failed primary's location; otherwise it assumes a network split and waits. With nobody else in that
    location this holds even when only the primary's server died. Deliberate across data centres
    sometimes, so a warning, not an error. Priority-0 nodes other than the first never become primary.
    """
    per_location = Counter(m.location for m in spec.members)
    for i, node in enumerate(spec.nodes):
        loc = node.location
        if len(per_location) > 1 and per_location[loc] == 1 and (i == 0 or node.priority > 0):
            warnings.add(("nodes", i, "location"), (
                f"{node.name} is the only member in location {loc!r}: when it is primary and goes down or is "
                f"cut off, repmgr finds no member of {loc!r} and cancels the failover (\"assuming network "
                f"split\"); put the witness or another data node in {loc!r}, or give every member the same "
                "location (a witness in a third site then keeps the majority)"))


def _node(raw: dict[str, Any], index: int, *, witness: bool) -> Node:
    return Node(
        name=raw["name"],
        address=raw["address"],
        context=raw.get("context", raw["name"]),
        port=raw.get("port", 5432),
        ssh_port=raw.get("ssh_port", 2222),
        location=raw.get("location", "default"),
        id=raw.get("id", WITNESS_DEFAULT_ID if witness else index + 1),
        priority=0 if witness else raw.get("priority", 100),
        witness=witness,
    )


def _build(data: dict[str, Any]) -> Spec:
    pg = data["postgres"]
    backup = data.get("backup")
    s3 = backup["s3"] if backup else None
    return Spec(
        cluster=data["cluster"],
        pg_version=pg["version"],
        database=pg.get("database", "app"),
        user=pg.get("user", "app"),
        parameters=dict(sorted((pg.get("parameters") or {}).items())),
        replication_mode=(data.get("replication") or {}).get("mode", "async"),
        detection_seconds=(data.get("failover") or {}).get("detection_seconds", 5),
        hook_seconds=(data.get("failover") or {}).get("hook_seconds", 60),
        nodes=tuple(_node(n, i, witness=False) for i, n in enumerate(data["nodes"])),
        witness=_node(data["witness"], 0, witness=True) if data.get("witness") else None,
        backup=Backup(
            s3=S3(
                bucket=s3["bucket"],
                prefix=s3.get("prefix", ""),
                region=s3.get("region", "us-east-1"),
                endpoint=s3.get("endpoint"),
                path_style=s3.get("path_style", False),
                ca_bundle=s3.get("ca_bundle"),
            ),
            schedule=backup.get("schedule", "0 3 * * *"),
            retention_days=backup.get("retention_days", 7),
        ) if backup else None,
        raw=data,
    )


def parse(text: str, source: str = "cluster.yaml") -> Spec:
    """Validates spec text; raises SpecError listing every problem found."""
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: invalid YAML: {reason}"]) from None
    problems = _Problems(source, _Lines(tree))
    if not isinstance(data, dict):
        problems.add((), "the spec must be a mapping with at least 'cluster', 'postgres' and 'nodes'")
        raise SpecError(problems.items)
    _duplicate_problems(tree, (), problems)
    _schema_problems(data, problems)
    if not problems.items:
        _semantic_problems(data, problems)
    if problems.items:
        raise SpecError(problems.items)
    spec = _build(data)
    warnings = _Problems(source, problems.lines)
    _placement_warnings(spec, warnings)
    return replace(spec, warnings=tuple(warnings.items))


def load(path: Path) -> Spec:
    """Reads and validates a spec file; a missing or unreadable file is a usage error too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read the spec: {exc.strerror or exc}. "
                         "Create one with `pgdock-gen init`."]) from None
    return parse(text, str(path))
