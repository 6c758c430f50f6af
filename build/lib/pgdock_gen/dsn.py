"""Client connection strings that follow the primary: libpq multi-host URIs.

This replaces the client-side balancers pg-dock's users needed (makara): libpq
tries each host and keeps the one that is writable (or a standby for readers),
so after a failover a reconnect finds the new primary by itself.
"""

from __future__ import annotations

from urllib.parse import quote

from .spec import Spec


def uri(spec: Spec, *, readonly: bool = False, connect_timeout: int = 3) -> str:
    hosts = ",".join(f"{node.uri_host}:{node.port}" for node in spec.nodes)
    params = {"target_session_attrs": "read-write"}
    if readonly:
        params = {"target_session_attrs": "prefer-standby", "load_balance_hosts": "random"}
    params |= {"connect_timeout": str(connect_timeout), "sslmode": "verify-full", "sslrootcert": "secrets/tls/ca.crt"}
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
    return f"postgresql://{quote(spec.user)}@{hosts}/{quote(spec.database)}?{query}"
