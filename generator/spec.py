"""Loads `cluster.yaml` into a typed model, reporting every problem at once.

Shape rules live in `schema.SCHEMA` (checked with jsonschema); rules that span
several fields (unique names, a witness named like a node, ...) or need to know
pgdock (reserved role and database names) live here. Each problem names the file,
the line and the field path, so a user fixes them all in one pass instead of one
per run. Valid specs that likely defeat their purpose (a primary alone in its
location) get warnings in the same format, in `Spec.warnings`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from .contract import (
    COMPRESSION_FLAGS,
    DEFAULT_API_PORT,
    DEFAULT_BACKUP_ENGINE,
    DEFAULT_BACKUP_JOBS,
    DEFAULT_COMPRESSION_BY_ENGINE,
    DEFAULT_POOL_MODE,
    DEFAULT_POOLER_PORT,
)
from .cron import cron_problem, longest_gap
from .errors import SpecError
from .schema import (
    DEFAULT_DETECTION_SECONDS,
    DEFAULT_MAX_LAG_SECONDS,
    DEFAULT_MAX_PAUSED_MINUTES,
    DEFAULT_MAX_WAL_KEEP,
    DEFAULT_PROXY_PORT,
    DEFAULT_PROXY_READONLY_PORT,
    DEFAULT_SHM_SIZE,
    DEFAULT_UPGRADE_METHOD,
    SCHEMA,
    allowed_keys,
)

MAX_SPEC_BYTES = 1_000_000
"""A spec is a page or two; anything near this size is a mistake or an attack, refused before parsing."""
MAX_DEPTH = 16
"""The spec nests 4 levels deep; deeper YAML is refused before it is built (deep nesting crashes parsers)."""
MAX_VALUES = 10_000
"""Keys, values and lists in one spec: 64 nodes and hundreds of parameters need a few thousand; the limit
keeps checking any spec well under a second."""

WITNESS_DEFAULT_ID = 1000
ELECTION_RERUN_SECONDS = 2
"""After the promotion gate said no, repmgrd holds its election again this much later."""
FENCE_GAP = 2.5
"""Seconds between an isolated primary's fence and the earliest promotion: see Spec.fence_seconds."""
"""repmgr node ids of data nodes count from 1; the witness sits well apart so adding nodes never collides."""

RESERVED_NAMES: dict[str, str] = {
    "postgres": "initdb's superuser and maintenance database",
    "template0": "a template database initdb creates",
    "template1": "a template database initdb creates",
    "repmgr": "repmgr's superuser and metadata database, created on every node's first start",
    "replicator": "the streaming replication role, created on the primary's first start",
    "pgdock_pooler": "the role the nodes' PgBouncer looks up clients' secrets as (pooler)",
}
"""Roles and databases a node has before the spec's own are created (initdb, base-image/agent): reusing
one fails the primary's first start. pgdock quotes names (sql.Identifier), so only an exact match
clashes; the schema's pattern admits lowercase names only, so no other spelling can get through either."""

HBA_KEYWORDS = ("all", "samehost", "samenet")
"""Words pg_hba.conf reads as a set of hosts, not a host: an address spelled so would open the cluster."""

_MANAGED: dict[str, tuple[str, ...]] = {
    "TLS with the cluster's own certificates for every remote connection": (
        "ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file", "ssl_crl_dir",
        "ssl_passphrase_command"),
    "scram-sha-256 only": ("password_encryption",),
    "each node's `port`": ("port",),
    "peers, the agent and the backup sidecar connect there": ("listen_addresses", "unix_socket_directories"),
    "files pgdock renders and mounts": ("hba_file", "ident_file", "data_directory", "config_file"),
    "directives that read other files into postgresql.conf": ("include", "include_dir", "include_if_exists"),
    "names the node as <cluster>-<node>": ("cluster_name",),
    "`postgres.max_wal_keep` bounds the WAL a node keeps": ("max_slot_wal_keep_size", "wal_keep_size"),
    "`backup.s3` sets continuous archiving and restores": (
        "archive_mode", "archive_command", "archive_library", "restore_command"),
    "repmgr and pgdock-agent set a standby's upstream and recovery": (
        "primary_conninfo", "primary_slot_name", "recovery_target", "recovery_target_name", "recovery_target_time",
        "recovery_target_xid", "recovery_target_lsn", "recovery_target_inclusive", "recovery_target_timeline",
        "recovery_target_action"),
    "standbys answer reads and repmgr's checks": ("hot_standby",),
    "pg_rewind needs it to turn a former primary into a standby": ("wal_log_hints",),
    "`replication.mode`": ("synchronous_standby_names",),
}
MANAGED_PARAMETERS: dict[str, str] = {name: why for why, names in _MANAGED.items() for name in names}
"""postgresql.conf settings pgdock relies on, with why: `postgres.parameters` may not set them (they would
win, being rendered last). shared_preload_libraries is merged instead (`Spec.preload_libraries`);
max_wal_senders and max_replication_slots may only grow (`Spec.replication_capacity`); wal_level may be
raised to logical."""


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
    api_port: int = DEFAULT_API_PORT

    @property
    def hba_address(self) -> str:
        """The address as pg_hba.conf wants it: a host CIDR for an IP, the name otherwise."""
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return self.address
        return f"{ip}/{ip.max_prefixlen}"

    @property
    def uri_host(self) -> str:
        """The address as a URI's host wants it: an IPv6 literal in brackets."""
        return f"[{self.address}]" if ":" in self.address else self.address


@dataclass(frozen=True)
class S3:
    bucket: str
    prefix: str
    region: str
    endpoint: str | None
    path_style: bool
    ca_bundle: str | None


BACKUP_SLACK = dt.timedelta(hours=2)
"""How long a base backup may take after it came due: the sidecar logs it when it is done."""


@dataclass(frozen=True)
class Backup:
    s3: S3
    server: str
    """barman-cloud's server name: the folder under s3.prefix holding this cluster's base backups and WAL."""
    schedule: str
    retention_days: int
    engine: str
    """barman or pgbackrest (contract.BACKUP_ENGINES)."""
    compression: str
    jobs: int

    @cached_property
    def longest_gap(self) -> dt.timedelta:
        """The longest time between two runs of the schedule (croniter asked once per spec)."""
        return longest_gap(self.schedule)

    @property
    def max_age(self) -> dt.timedelta:
        """How old the newest base backup may be before something is wrong: the schedule's longest gap between
        two runs plus BACKUP_SLACK (monitoring/alerts.yml)."""
        return self.longest_gap + BACKUP_SLACK


@dataclass(frozen=True)
class Proxy:
    """HAProxy on the application hosts (proxy/): `port` reaches the primary, `readonly_port` a standby."""

    port: int
    readonly_port: int
    via_pooler: bool = False
    """`port` goes to the data nodes' PgBouncer (each forwards to the primary) instead of the primary itself."""


@dataclass(frozen=True)
class Pooler:
    """PgBouncer on every data node (pgdock_agent.pooler), forwarding to whichever node is primary."""

    port: int
    pool_mode: str


@dataclass(frozen=True)
class Monitoring:
    """Prometheus' scrape config and alert rules (monitoring/)."""

    max_lag_seconds: int
    max_paused_minutes: int


@dataclass(frozen=True)
class Spec:
    cluster: str
    pg_version: int
    database: str
    user: str
    parameters: dict[str, Any]
    """postgres.parameters but shared_preload_libraries, sorted by name."""
    shm_size: str
    max_wal_keep: str
    """postgres.max_wal_keep, like 16GB: see max_wal_keep_mb."""
    preload_libraries: tuple[str, ...]
    """repmgr first, then the spec's own shared_preload_libraries."""
    replication_mode: str
    detection_seconds: int
    hook_seconds: int
    nodes: tuple[Node, ...]
    witness: Node | None
    backup: Backup | None
    proxy: Proxy | None
    monitoring: Monitoring | None
    pooler: Pooler | None
    upgrade_method: str
    """upgrade.method: pg_upgrade's transfer mode (link, copy or clone)."""
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
    def replication_capacity(self) -> int:
        return replication_capacity(len(self.nodes))

    @property
    def max_wal_keep_mb(self) -> int:
        """The bound on pg_wal: slots may hold no more (max_slot_wal_keep_size), an archive outage no more
        (archive.py gives WAL up past it), and wal_keep_size is a quarter of it at most."""
        number, unit = int(self.max_wal_keep[:-2]), self.max_wal_keep[-2:]
        return number * (1024 if unit == "GB" else 1)

    @property
    def wal_keep_mb(self) -> int:
        """wal_keep_size: 1 GB for standbys without a slot, at most a quarter of the bound."""
        return min(1024, self.max_wal_keep_mb // 4)

    @property
    def election_rerun_seconds(self) -> int:
        return ELECTION_RERUN_SECONDS

    @property
    def fence_seconds(self) -> float:
        """An isolated primary stops this long after it last heard a quorum. A standby promotes no sooner than
        detection_seconds after it last heard the primary, which may be up to one probe interval (0.5 s) plus a
        probe's own duration before the isolation began; the rest of FENCE_GAP (≥ 1 s) is the margin by which
        the fence precedes any promotion, tick (0.25 s) and the stop itself included."""
        return max(1.5, self.detection_seconds - FENCE_GAP)

    def member(self, name: str) -> Node:
        for node in self.members:
            if node.name == name:
                return node
        raise SpecError([f"no node named {name!r} in cluster {self.cluster!r}; "
                         f"nodes: {', '.join(n.name for n in self.members)}"])


def replication_capacity(data_nodes: int) -> int:
    """max_wal_senders and max_replication_slots pgdock sets: one per standby, two for a clone or pg_rewind,
    and room to spare; postgres.parameters may raise them, never lower them."""
    return max(16, data_nodes + 2)


def _format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Lines:
    """Maps field paths to the line they are written on, from PyYAML's node tree (indexed once, so a spec
    with thousands of problems is reported as fast as one with a single problem)."""

    def __init__(self, root: yaml.Node | None):
        self.lines: dict[tuple[Any, ...], int] = {}
        if root is not None:
            self.lines[()] = root.start_mark.line + 1
            self._index(root, ())

    def _index(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    self.lines[(*path, key.value)] = key.start_mark.line + 1  # the last of a twice-given key
                    self._index(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                self._index(item, (*path, index))

    def of(self, path: tuple[str | int, ...]) -> int | None:
        """The line of `path`, or of the nearest field above it that is written down."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


class _Problems:
    def __init__(self, source: str, lines: _Lines):
        self.source, self.lines, self.items = source, lines, []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        line = self.lines.of(path)
        where = f"{self.source}:{line}" if line else self.source
        self.items.append(f"{where}: {_format_path(path)}: {message}")


def _key_problems(node: yaml.Node | None, path: tuple[str | int, ...], problems: _Problems) -> bool:
    """Keys given twice (YAML lets the later one silently win; in a cluster spec that hides a mistake) and
    keys that are not text (`on:` is a boolean in YAML). Returns whether a key is not text: the schema
    cannot judge such a document."""
    untyped = False
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key, value in node.value:
            if key.tag != "tag:yaml.org,2002:str":
                problems.add((*path, str(key.value)), "a key must be text; write it in quotes")
                untyped = True
                continue
            if key.value in first_line:
                problems.add((*path, key.value), f"given twice (first on line {first_line[key.value]}); "
                             "keep one")
            first_line.setdefault(key.value, key.start_mark.line + 1)
            untyped |= _key_problems(value, (*path, key.value), problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            untyped |= _key_problems(item, (*path, index), problems)
    return untyped


def _schema_problems(data: Any, problems: _Problems) -> None:
    from jsonschema import Draft202012Validator  # heavy import, only when validating

    validator = Draft202012Validator(SCHEMA)
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(error.absolute_path)
        if "propertyNames" in error.schema_path:
            path += (error.instance,)  # the key itself is wrong: point at it
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
        elif error.validator == "pattern" and "patternErrorMessage" in error.schema:
            problems.add(path, f"{error.instance!r} is not valid: {error.schema['patternErrorMessage']}")
        elif error.validator == "pattern":
            problems.add(path, f"{error.instance!r} is not valid (must match {error.validator_value})")
        elif error.validator == "maxItems":
            problems.add(path, f"{len(error.instance)} given; at most {error.validator_value} are supported")
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


def _address_why(address: str) -> str | None:
    """Why an address that passed the schema's pattern is no IP address or host name, or None."""
    if address.lower() in HBA_KEYWORDS:
        return "is a pg_hba.conf keyword (it would admit a whole set of hosts)"
    if ":" in address or address.rsplit(".", 1)[-1].isdigit():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return "is not a valid IP address"
    return None


def _parameter_why(name: str, value: Any, data_nodes: int) -> str | None:
    """Why postgres.parameters may not set `name` to `value` (the schema checked names and characters)."""
    if name in MANAGED_PARAMETERS:
        return f"managed by pgdock ({MANAGED_PARAMETERS[name]}); remove it"
    if name in ("max_wal_senders", "max_replication_slots"):
        least = replication_capacity(data_nodes)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            return (f"must be a whole number of at least {least} (one per standby, two for a clone or "
                    "pg_rewind; pgdock sets that many)")
    if name == "wal_level" and value != "logical":
        return "managed by pgdock (replica, which standbys and pg_rewind need); only 'logical' may raise it"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a number PostgreSQL accepts"
    return None


def _semantic_problems(data: dict[str, Any], problems: _Problems) -> None:
    _multiline_problems(data, (), problems)
    for key in ("database", "user"):
        name = data["postgres"].get(key)
        if isinstance(name, str) and (why := _reserved_why(key, name)):
            problems.add(("postgres", key), f"{name!r} is reserved ({why}); choose another name")
    nodes = data.get("nodes") or []
    for name, value in (data["postgres"].get("parameters") or {}).items():
        if why := _parameter_why(name, value, len(nodes)):
            problems.add(("postgres", "parameters", name), why)
    seen_names: dict[str, int] = {}
    seen_endpoints: dict[tuple[str, int], int] = {}
    seen_ids: dict[int, int] = {}
    seen_ssh: dict[tuple[str, int], str] = {}
    members = [(("nodes", i), n) for i, n in enumerate(nodes)]
    if isinstance(data.get("witness"), dict):
        members.append((("witness",), data["witness"]))
    endpoints = Counter((m.get("address"), m.get("port", 5432)) for _, m in members)
    for where, member in members:
        if why := _address_why(member["address"]):
            problems.add(where + ("address",), f"{member['address']!r} {why}; use an IP address or a host name")
        ssh = (member.get("address"), member.get("ssh_port", 2222))
        if endpoints[(ssh[0], member.get("port", 5432))] > 1:
            continue  # reported below as a shared address and port
        if ssh in seen_ssh:
            problems.add(where + ("ssh_port",), f"{ssh[0]}:{ssh[1]} is also the sshd of {seen_ssh[ssh]}; "
                                                "nodes sharing a host need their own ssh_port")
        seen_ssh.setdefault(ssh, _format_path(where))
    _api_port_problems(members, endpoints, problems)
    _pooler_problems(data, members, problems)
    _proxy_problems(data.get("proxy"), problems)
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
    _engine_problems(data.get("backup") or {}, problems)


def _engine_problems(backup: dict[str, Any], problems: _Problems) -> None:
    """What the chosen backup engine cannot do: barman-cloud has no zstd or lz4 for base backups, and
    pgBackRest talks to S3 over TLS only, at a host (and port), not a path."""
    engine = backup.get("engine", DEFAULT_BACKUP_ENGINE)
    if engine == "barman" and backup.get("compression") not in (None, *COMPRESSION_FLAGS):
        problems.add(("backup", "compression"), f"{backup['compression']} needs `engine: pgbackrest` (barman-cloud "
                                                "compresses with gzip, bzip2 or none)")
    endpoint = (backup.get("s3") or {}).get("endpoint")
    if engine == "pgbackrest" and isinstance(endpoint, str) and endpoint != "lab" and not re.fullmatch(
            r"https://[^/]+/?", endpoint):
        problems.add(("backup", "s3", "endpoint"), f"{endpoint!r}: pgBackRest needs https://HOST[:PORT], "
                                                   "without a path")


def _api_port_problems(members: list[tuple[tuple[str | int, ...], dict[str, Any]]],
                       endpoints: Counter[tuple[Any, Any]], problems: _Problems) -> None:
    """Each member's health API needs a port of its own on its address: not another member's api_port, nor any
    member's PostgreSQL or sshd port there (its own included). Members that share address and port are already
    reported as such."""
    taken: dict[tuple[Any, Any], str] = {}
    for where, member in members:
        for key, default in (("port", 5432), ("ssh_port", 2222)):
            taken.setdefault((member.get("address"), member.get(key, default)), _format_path(where + (key,)))
    for where, member in members:
        address = member.get("address")
        if endpoints[(address, member.get("port", 5432))] > 1:
            continue
        api = (address, member.get("api_port", DEFAULT_API_PORT))
        if api in taken:
            problems.add(where + ("api_port",), f"{address}:{api[1]} is also {taken[api]}; nodes sharing a host need "
                                                "their own api_port")
        taken.setdefault(api, _format_path(where + ("api_port",)))


POOLER_MIN_VERSION = 17
"""PgBouncer's auth_dbname (1.20) is what lets one auth function serve every database: Debian bookworm, the
suite of PostgreSQL 15 here, ships 1.18."""


def _pooler_problems(data: dict[str, Any], members: list[tuple[tuple[str | int, ...], dict[str, Any]]],
                     problems: _Problems) -> None:
    """PgBouncer listens on each data node's address: its port must be free there (no member's PostgreSQL, sshd
    or health API port on that address), and it needs Debian trixie's PgBouncer."""
    pooler = data.get("pooler")
    if not isinstance(pooler, dict):
        if isinstance(data.get("proxy"), dict) and data["proxy"].get("via_pooler"):
            problems.add(("proxy", "via_pooler"), "needs a `pooler:` section (PgBouncer on the data nodes)")
        return
    if data["postgres"].get("version") != POOLER_MIN_VERSION:
        problems.add(("pooler",), f"needs postgres.version {POOLER_MIN_VERSION}: PgBouncer's auth_dbname, "
                                  "which pgdock's auth setup relies on, is missing from bookworm's PgBouncer")
    port = pooler.get("port", DEFAULT_POOLER_PORT)
    taken = {(m.get("address"), m.get(key, default)): _format_path(where + (key,)) for where, m in members
             for key, default in (("port", 5432), ("ssh_port", 2222), ("api_port", DEFAULT_API_PORT))}
    for where, member in members:
        if where[0] == "nodes" and (member.get("address"), port) in taken:
            problems.add(("pooler", "port"), f"{member.get('address')}:{port} is also "
                                             f"{taken[(member.get('address'), port)]}; PgBouncer needs a port "
                                             "of its own on every data node's address")
            return


def _proxy_problems(proxy: Any, problems: _Problems) -> None:
    if not isinstance(proxy, dict):
        return
    port = proxy.get("port", DEFAULT_PROXY_PORT)
    if proxy.get("readonly_port", DEFAULT_PROXY_READONLY_PORT) == port:
        problems.add(("proxy", "readonly_port"), f"{port} is also proxy.port; the read-only port needs its own")


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
        api_port=raw.get("api_port", DEFAULT_API_PORT),
        location=raw.get("location", "default"),
        id=raw.get("id", WITNESS_DEFAULT_ID if witness else index + 1),
        priority=0 if witness else raw.get("priority", 100),
        witness=witness,
    )


def _build(data: dict[str, Any]) -> Spec:
    pg = data["postgres"]
    backup = data.get("backup")
    s3 = backup["s3"] if backup else None
    proxy, monitoring, pooler = data.get("proxy"), data.get("monitoring"), data.get("pooler")
    parameters = dict(sorted((pg.get("parameters") or {}).items()))
    libraries = [lib.strip() for lib in parameters.pop("shared_preload_libraries", "").split(",")]
    return Spec(
        cluster=data["cluster"],
        pg_version=pg["version"],
        database=pg.get("database", "app"),
        user=pg.get("user", "app"),
        shm_size=pg.get("shm_size", DEFAULT_SHM_SIZE),
        max_wal_keep=pg.get("max_wal_keep", DEFAULT_MAX_WAL_KEEP),
        parameters=parameters,
        preload_libraries=tuple(dict.fromkeys(["repmgr", *filter(None, libraries)])),
        replication_mode=(data.get("replication") or {}).get("mode", "async"),
        detection_seconds=(data.get("failover") or {}).get("detection_seconds", DEFAULT_DETECTION_SECONDS),
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
            server=backup.get("server", data["cluster"]),
            schedule=backup.get("schedule", "0 3 * * *"),
            retention_days=backup.get("retention_days", 7),
            engine=backup.get("engine", DEFAULT_BACKUP_ENGINE),
            compression=backup.get("compression", DEFAULT_COMPRESSION_BY_ENGINE[backup.get("engine",
                                                                                           DEFAULT_BACKUP_ENGINE)]),
            jobs=backup.get("jobs", DEFAULT_BACKUP_JOBS),
        ) if backup else None,
        proxy=Proxy(port=proxy.get("port", DEFAULT_PROXY_PORT),
                    readonly_port=proxy.get("readonly_port", DEFAULT_PROXY_READONLY_PORT),
                    via_pooler=proxy.get("via_pooler", False),
                    ) if proxy is not None else None,
        pooler=Pooler(port=pooler.get("port", DEFAULT_POOLER_PORT),
                      pool_mode=pooler.get("pool_mode", DEFAULT_POOL_MODE)) if pooler is not None else None,
        monitoring=Monitoring(max_lag_seconds=monitoring.get("max_lag_seconds", DEFAULT_MAX_LAG_SECONDS),
                              max_paused_minutes=monitoring.get("max_paused_minutes", DEFAULT_MAX_PAUSED_MINUTES),
                              ) if monitoring is not None else None,
        upgrade_method=(data.get("upgrade") or {}).get("method", DEFAULT_UPGRADE_METHOD),
        raw=data,
    )


def _size_problem(source: str, size: int) -> None:
    if size > MAX_SPEC_BYTES:
        raise SpecError([f"{source}: larger than {MAX_SPEC_BYTES} bytes, which no cluster spec needs"])


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it: a large spec parses in a fraction of a second."""


def _compose(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML node tree (for line numbers) and the data built from that same tree. Anchors and aliases
    (they let a few hundred bytes expand into billions of values), deep nesting and masses of values are
    refused first, from libyaml's event stream, before anything is built."""
    depth = values = 0
    for event in yaml.parse(text, Loader=_Loader):
        where = f"{source}:{event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise SpecError([f"{where}: YAML anchors and aliases (&name, *name, <<) are not supported; "
                             "write the values out"])
        if isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.CollectionStartEvent) and (depth := depth + 1) > MAX_DEPTH:
            raise SpecError([f"{where}: nested deeper than {MAX_DEPTH} levels; a cluster spec needs 4"])
        if isinstance(event, yaml.NodeEvent) and (values := values + 1) > MAX_VALUES:
            raise SpecError([f"{where}: more than {MAX_VALUES} keys and values; a cluster spec needs a few "
                             "hundred"])
    loader = _Loader(text)
    try:
        tree = loader.get_single_node()
        return tree, loader.construct_document(tree) if tree is not None else None
    finally:
        loader.dispose()


def parse(text: str, source: str = "cluster.yaml") -> Spec:
    """Validates spec text; raises SpecError listing every problem found."""
    _size_problem(source, len(text.encode("utf-8", "surrogatepass")))
    try:
        tree, data = _compose(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. a control character
            line = text.count("\n", 0, exc.position) + 1
        else:
            line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{source}{f':{line}' if line else ''}: invalid YAML: {reason}"]) from None
    problems = _Problems(source, _Lines(tree))
    if not isinstance(data, dict):
        problems.add((), "the spec must be a mapping with at least 'cluster', 'postgres' and 'nodes'")
        raise SpecError(problems.items)
    if _key_problems(tree, (), problems):
        raise SpecError(problems.items)
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
    """Reads and validates a spec file; a missing, unreadable, huge or non-UTF-8 file is a usage error too."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError([f"{path}: cannot read the spec: {exc.strerror or exc}. "
                         "Create one with `pgdock-gen init`."]) from None
    _size_problem(str(path), len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError([f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                         "save the file as UTF-8"]) from None
    return parse(text, str(path))
