"""The JSON Schema of `cluster.yaml`: the one description of the spec's shape.

It drives validation (`spec.load`), `pgdock-gen schema` (editor completion) and the
"did you mean" hints, so a key added here is known everywhere at once.
"""

from __future__ import annotations

from typing import Any

NAME_PATTERN = "^[a-z][a-z0-9-]*$"
SUPPORTED_PG_VERSIONS = (15, 17)
"""Majors Debian ships with repmgr: bookworm has 15, trixie has 17 (see base-image/)."""

_NAME = {"type": "string", "pattern": NAME_PATTERN, "maxLength": 30}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_ADDRESS = {
    "type": "string",
    "minLength": 1,
    "pattern": r"^[A-Za-z0-9.:-]+$",
    "description": "IP address or DNS name that peers and clients use",
}


def _node(*, data: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": {**_NAME, "description": "unique node name, also the container hostname"},
        "address": _ADDRESS,
        "context": {"type": "string", "minLength": 1, "description": "docker context (default: the name)"},
        "port": {**_PORT, "default": 5432, "description": "PostgreSQL port on the host"},
        "ssh_port": {**_PORT, "default": 2222, "description": "sshd port used by repmgr switchover"},
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
                    "propertyNames": {"pattern": "^[a-z_][a-z0-9_.]*$"},
                    "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
                    "description": "extra postgresql.conf settings: name -> value",
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
                    "type": "integer", "minimum": 4, "maximum": 300, "default": 5,
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
        "nodes": {"type": "array", "minItems": 1, "items": _node(data=True)},
        "witness": _node(data=False),
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
                        "bucket": {"type": "string", "pattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
                        "prefix": {"type": "string", "default": ""},
                        "region": {"type": "string", "default": "us-east-1"},
                        "endpoint": {"type": "string", "pattern": "^(https?://.+|lab)$"},
                        "path_style": {"type": "boolean", "default": False},
                        "ca_bundle": {"type": "string", "description": "CA file for self-signed stores"},
                    },
                },
                "schedule": {"type": "string", "default": "0 3 * * *", "description": "cron syntax"},
                "retention_days": {"type": "integer", "minimum": 1, "maximum": 3650, "default": 7},
            },
        },
    },
}


def allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    """Keys the schema allows at the object reached by `path`, for "did you mean" hints."""
    node: dict[str, Any] = SCHEMA
    for part in path:
        node = node["items"] if isinstance(part, int) else node.get("properties", {}).get(part, {})
    return sorted(node.get("properties", {}))
