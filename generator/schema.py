"""The JSON Schema of `cluster.yaml`: the one description of the spec's shape.

It drives validation (`spec.load`), `pgdock-gen schema` (editor completion) and the
"did you mean" hints, so a key added here is known everywhere at once.
"""

from __future__ import annotations

import json
from typing import Any

from .contract import (
    BACKUP_ENGINES,
    DEFAULT_API_PORT,
    DEFAULT_BACKUP_ENGINE,
    DEFAULT_BACKUP_JOBS,
    DEFAULT_POOL_MODE,
    DEFAULT_POOLER_PORT,
    PGBACKREST_COMPRESS_TYPES,
    POOL_MODES,
)

NAME_PATTERN = "^[a-z][a-z0-9-]*$"
SUPPORTED_PG_VERSIONS = (15, 17)
"""Majors Debian ships with repmgr: bookworm has 15, trixie has 17 (see base-image/)."""
DEFAULT_DETECTION_SECONDS = 5
"""failover.detection_seconds when the spec does not say: measured in bench/ (kill-primary, soak)."""
DEFAULT_SHM_SIZE = "256m"
DEFAULT_MAX_WAL_KEEP = "16GB"
DEFAULT_PROXY_PORT = 5000
DEFAULT_PROXY_READONLY_PORT = 5001
DEFAULT_MAX_LAG_SECONDS = 30
DEFAULT_MAX_PAUSED_MINUTES = 60
UPGRADE_METHODS = ("link", "copy", "clone")
"""pg_upgrade's transfer modes (--link, --copy, --clone), as `upgrade.method` names them."""
DEFAULT_UPGRADE_METHOD = "link"
MAX_DATA_NODES = 64
"""More would not make a cluster safer; the limit keeps any spec quick to check."""

# Values that end up in config files, shell commands (archive_command) and URIs are limited to characters
# that mean nothing special in any of them: no quotes, spaces, `$`, `;`, `%` (archive_command's own escape).
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = rf"{_LABEL}(?:\.{_LABEL})*"
"""An RFC 1123 host name (an IPv4 address has its shape too; spec.py tells the two apart)."""
_IPV6 = "[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
"""The characters of an IPv6 literal; spec.py checks it is one."""
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._-]+"
"""A path segment of plain characters, neither `.` nor `..`."""
_IDENTIFIER = "[A-Za-z_][A-Za-z0-9_]*"
PARAMETER_NAME_PATTERN = "^[a-z_][a-z0-9_]*(?:\\.[a-z_][a-z0-9_]*)*$"

_NAME = {"type": "string", "pattern": NAME_PATTERN, "maxLength": 30}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_UNPRIVILEGED_PORT = {**_PORT, "minimum": 1024}
"""HAProxy runs as an unprivileged user in its container, on the app host's network: no port below 1024."""
_ADDRESS = {
    "type": "string",
    "maxLength": 253,
    "pattern": f"^(?:{_HOST_NAME}|{_IPV6})$",
    "patternErrorMessage": "use an IP address (v4 or v6) or a host name (letters, digits, '-', dot-separated)",
    "description": "IP address or DNS name that peers and clients use",
}


def _node(*, data: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": {**_NAME, "description": "unique node name, also the container hostname"},
        "address": _ADDRESS,
        "context": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.+-]*$",
                    "patternErrorMessage": "a Docker context name: letters, digits, '_', '.', '+', '-'",
                    "description": "docker context (default: the name)"},
        "port": {**_PORT, "default": 5432, "description": "PostgreSQL port on the host"},
        "ssh_port": {**_PORT, "default": 2222, "description": "sshd port used by repmgr switchover"},
        "api_port": {**_PORT, "default": DEFAULT_API_PORT,
                     "description": "the agent's health API (/primary, /replica, /health, /status, /metrics) on the "
                                    "node's address: for HAProxy's checks and Prometheus"},
        "location": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "default": "default"},
        "id": {"type": "integer", "minimum": 1, "maximum": 2147483647, "description": "repmgr node_id"},
    }
    if data:
        props["priority"] = {
            "type": "integer",
            "minimum": 0,
            "maximum": 1000,
            "default": 100,
            "description": "promotion priority; 0 = never promoted",
        }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "address"],
        "properties": props,
    }


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "pgdock cluster spec (cluster.yaml)",
    "type": "object",
    "additionalProperties": False,
    "required": ["cluster", "postgres", "nodes"],
    "properties": {
        "cluster": {**_NAME, "description": "cluster name; prefixes containers, volumes and images"},
        "postgres": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version"],
            "properties": {
                "version": {"type": "integer", "enum": list(SUPPORTED_PG_VERSIONS)},
                "database": {**_NAME, "pattern": "^[a-z_][a-z0-9_]*$", "default": "app"},
                "user": {**_NAME, "pattern": "^[a-z_][a-z0-9_]*$", "default": "app"},
                "parameters": {
                    "type": "object",
                    "default": {},
                    "propertyNames": {
                        "pattern": PARAMETER_NAME_PATTERN, "maxLength": 63,
                        "patternErrorMessage": "a PostgreSQL setting name: lowercase letters, digits and '_', "
                                               "'.' between the parts of a custom setting",
                    },
                    "properties": {
                        "shared_preload_libraries": {
                            "type": "string",
                            "pattern": rf"^\s*(?:{_IDENTIFIER}(?:\s*,\s*{_IDENTIFIER})*)?\s*$",
                            "patternErrorMessage": "library names (letters, digits, '_') separated by commas; "
                                                   "repmgr is always loaded first",
                        },
                    },
                    "additionalProperties": {
                        "type": ["string", "integer", "number", "boolean"],
                        "pattern": "^[^\\x00-\\x1f\\x7f]*$",
                        "patternErrorMessage": "control characters (tab, newline, NUL, ...) have no place in a "
                                               "setting",
                    },
                    "description": "extra postgresql.conf settings: name -> value; settings pgdock relies on are "
                                   "refused, shared_preload_libraries is added to repmgr",
                },
                "max_wal_keep": {
                    "type": "string", "pattern": "^[1-9][0-9]{0,6}(MB|GB)$", "default": DEFAULT_MAX_WAL_KEEP,
                    "patternErrorMessage": "a size in MB or GB, like 16GB",
                    "description": "the most WAL a node keeps for lagging standbys (max_slot_wal_keep_size) and "
                                   "for an unreachable archive (older WAL is given up, with an event and a status "
                                   "warning): keep it well under the data volume's free space",
                },
                "shm_size": {
                    "type": "string", "pattern": "^[1-9][0-9]{0,5}[kmg]$", "default": DEFAULT_SHM_SIZE,
                    "patternErrorMessage": "a size like 256m or 1g (a number and k, m or g)",
                    "description": "the container's /dev/shm (Docker's default, 64m, is too small for parallel "
                                   "queries on large shared_buffers)",
                },
            },
        },
        "replication": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mode": {"enum": ["async", "sync"], "default": "async"},
            },
        },
        "failover": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "detection_seconds": {
                    "type": "integer", "minimum": 4, "maximum": 300, "default": DEFAULT_DETECTION_SECONDS,
                    "description": "how long the primary must be silent to a standby before that standby may be "
                                   "promoted; an isolated primary fences itself 2.5 s sooner",
                },
                "hook_seconds": {
                    "type": "integer", "minimum": 1, "maximum": 3600, "default": 60,
                    "description": "time budget of each failover hook run (hetzner.sh, hook.sh); hooks run after "
                                   "the event, detached, and never delay a fence or a promotion",
                },
            },
        },
        "nodes": {"type": "array", "minItems": 1, "maxItems": MAX_DATA_NODES, "items": _node(data=True)},
        "witness": _node(data=False),
        "proxy": {
            "type": "object",
            "additionalProperties": False,
            "description": "render proxy/: HAProxy for application hosts, routing by each node's health API",
            "properties": {
                "port": {**_UNPRIVILEGED_PORT, "default": DEFAULT_PROXY_PORT,
                         "description": "reaches the writable primary (checked with GET /primary)"},
                "readonly_port": {**_UNPRIVILEGED_PORT, "default": DEFAULT_PROXY_READONLY_PORT,
                                  "description": "reaches a streaming standby (GET /replica), the primary only "
                                                 "while no standby is healthy"},
                "via_pooler": {"type": "boolean", "default": False,
                               "description": "send `port` to the nodes' PgBouncer (needs `pooler`) instead of "
                                              "the primary's PostgreSQL: every pooler forwards to the primary"},
            },
        },
        "pooler": {
            "type": "object",
            "additionalProperties": False,
            "description": "PgBouncer on every data node, forwarding to the current primary (TLS, SCRAM via "
                           "auth_query: no password in its files); switchover pauses it instead of failing "
                           "transactions",
            "properties": {
                "port": {**_UNPRIVILEGED_PORT, "default": DEFAULT_POOLER_PORT,
                         "description": "PgBouncer's port on each data node's address"},
                "pool_mode": {"enum": list(POOL_MODES), "default": DEFAULT_POOL_MODE,
                              "description": "transaction: a server connection per transaction (most "
                                             "clients); session: per client session"},
            },
        },
        "upgrade": {
            "type": "object",
            "additionalProperties": False,
            "description": "how `pgdock-gen upgrade` moves the data to a new PostgreSQL major",
            "properties": {
                "method": {"enum": list(UPGRADE_METHODS), "default": DEFAULT_UPGRADE_METHOD,
                           "description": "pg_upgrade's transfer mode: link (fast, hard links; the old cluster "
                                          "is unusable once the new one started; standbys are brought over by "
                                          "rsync --hard-links), copy (a full copy: the old data directory stays "
                                          "a working rollback until `upgrade --finish`; needs the data's size "
                                          "free; standbys are cloned again) or clone (copy-on-write reflinks: "
                                          "as fast as link with copy's rollback, on file systems that have "
                                          "them, e.g. XFS or Btrfs)"},
            },
        },
        "monitoring": {
            "type": "object",
            "additionalProperties": False,
            "description": "render monitoring/: prometheus.yml scraping every node's /metrics, and alerts.yml",
            "properties": {
                "max_lag_seconds": {"type": "integer", "minimum": 1, "maximum": 86400,
                                    "default": DEFAULT_MAX_LAG_SECONDS,
                                    "description": "alert when a standby's replay lags more than this"},
                "max_paused_minutes": {"type": "integer", "minimum": 1, "maximum": 10080,
                                       "default": DEFAULT_MAX_PAUSED_MINUTES,
                                       "description": "alert when maintenance mode (pause) lasts longer"},
            },
        },
        "backup": {
            "type": "object",
            "additionalProperties": False,
            "required": ["s3"],
            "properties": {
                "s3": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["bucket"],
                    "properties": {
                        "bucket": {
                            "type": "string",
                            "pattern": r"^(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                            "patternErrorMessage": "an S3 bucket name: 3-63 lowercase letters, digits, '.' and "
                                                   "'-', starting and ending with a letter or digit, no '..', "
                                                   "not an IP address",
                        },
                        "prefix": {
                            "type": "string",
                            "default": "",
                            "maxLength": 512,
                            "pattern": f"^(?:/?{_SEGMENT}(?:/{_SEGMENT})*/?)?$",
                            "patternErrorMessage": "path segments of letters, digits, '.', '_' and '-' separated "
                                                   "by '/'",
                        },
                        "region": {
                            "type": "string",
                            "default": "us-east-1",
                            "pattern": "^[A-Za-z0-9_-]{1,64}$",
                            "patternErrorMessage": "a region name: letters, digits, '_' and '-'",
                        },
                        "endpoint": {
                            "type": "string",
                            "maxLength": 512,
                            "pattern": rf"^(?:lab|https?://(?:{_HOST_NAME}|\[{_IPV6}\])(?::[0-9]{{1,5}})?"
                                       r"(?:/[A-Za-z0-9._~/-]*)?)$",
                            "patternErrorMessage": "an http(s) URL: http[s]://HOST[:PORT][/PATH], the path of "
                                                   "letters, digits, '.', '_', '~', '-' and '/' (or `lab`)",
                        },
                        "path_style": {"type": "boolean", "default": False},
                        "ca_bundle": {"type": "string", "description": "CA file for self-signed stores"},
                    },
                },
                "server": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63,
                           "description": "the folder of this cluster's backups and WAL under the prefix (default: "
                                          "the cluster's name); a major upgrade needs a new one, so WAL of two "
                                          "PostgreSQL versions never mix in one archive"},
                "schedule": {"type": "string", "default": "0 3 * * *",
                             "description": "when base backups run (UTC): 5-field cron or @daily etc., "
                                            "checked with croniter as the backup sidecar reads it"},
                "retention_days": {"type": "integer", "minimum": 1, "maximum": 3650, "default": 7},
                "engine": {"enum": list(BACKUP_ENGINES), "default": DEFAULT_BACKUP_ENGINE,
                           "description": "barman (barman-cloud) or pgbackrest (pgBackRest: parallel, zstd/lz4, "
                                          "asynchronous archiving; its S3 endpoint must be https)"},
                "compression": {"enum": list(PGBACKREST_COMPRESS_TYPES),
                                "description": "of base backups and WAL in S3: gzip (barman's default, at level 1: "
                                               "fast, and as small as level 9 on PostgreSQL pages), bzip2 (slow, "
                                               "smaller), none, or with pgbackrest zstd (its default) and lz4"},
                "jobs": {"type": "integer", "minimum": 1, "maximum": 32, "default": DEFAULT_BACKUP_JOBS,
                         "description": "parallel uploads of a base backup, WAL files archived at once and WAL "
                                        "files a restore fetches ahead"},
            },
        },
    },
}


SCHEMA_FILE = "cluster.schema.json"
"""The schema's file in a cluster repo, beside cluster.yaml: the starter spec's first line
(`# yaml-language-server: $schema=./cluster.schema.json`) points editors at it, offline and at the version
that rendered the repo."""


def document() -> str:
    """The schema as a file: what `render` writes to SCHEMA_FILE and `pgdock-gen schema` prints."""
    return json.dumps(SCHEMA, indent=2) + "\n"


def allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    """Keys the schema allows at the object reached by `path`, for "did you mean" hints."""
    node: dict[str, Any] = SCHEMA
    for part in path:
        node = node["items"] if isinstance(part, int) else node.get("properties", {}).get(part, {})
    return sorted(node.get("properties", {}))
