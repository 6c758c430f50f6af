"""Client connection strings that follow the primary: libpq multi-host URIs, or the cluster's HAProxy.

This replaces the client-side balancers pg-dock's users needed (makara): libpq
tries each host and keeps the one that is writable (or a standby for readers),
so after a failover a reconnect finds the new primary by itself. Drivers without
`target_session_attrs` go through HAProxy instead (`proxy` in the spec), which asks
every node's health API where the primary is.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

from .errors import UsageError
from .spec import Spec

CA_FILE = "secrets/tls/ca.crt"
"""The cluster CA, relative to the cluster repo (where operators run pgdock-gen); the lab passes its own, absolute."""


def _uri(spec: Spec, hosts: str, params: dict[str, str], sslmode: str, connect_timeout: int, ca_file: str) -> str:
    params = params | {"connect_timeout": str(connect_timeout), "sslmode": sslmode, "sslrootcert": ca_file}
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
    return f"postgresql://{quote(spec.user)}@{hosts}/{quote(spec.database)}?{query}"


def uri(spec: Spec, *, readonly: bool = False, connect_timeout: int = 3, ca_file: str = CA_FILE) -> str:
    hosts = ",".join(f"{node.uri_host}:{node.port}" for node in spec.nodes)
    params = {"target_session_attrs": "read-write"}
    if readonly:
        params = {"target_session_attrs": "prefer-standby", "load_balance_hosts": "random"}
    return _uri(spec, hosts, params, "verify-full", connect_timeout, ca_file)


PROXY_NAME = "localhost"
"""The name a URI through HAProxy checks the node's certificate against: every node's certificate carries it
(credentials.py), so `verify-full` holds through a proxy that may hand the connection to any node."""


def proxy_uri(spec: Spec, host: str = PROXY_NAME, *, readonly: bool = False, connect_timeout: int = 3,
              ca_file: str = CA_FILE) -> str:
    """The URI through the HAProxy on `host` (an app host running proxy/): localhost, or the proxy host's IP
    address, dialled with `hostaddr` while the certificate is checked against PROXY_NAME. Through a proxy the
    name dialled is the proxy's, not the node's; what the check proves is a node certified by this cluster's CA."""
    if spec.proxy is None:
        raise UsageError(f"cluster {spec.cluster!r} has no proxy: add `proxy: {{}}` to the spec and render")
    params = {}
    if host != PROXY_NAME:
        try:
            params = {"hostaddr": str(ipaddress.ip_address(host))}
        except ValueError:
            raise UsageError(f"--proxy {host!r}: give localhost or the proxy host's IP address (the URI dials it "
                             f"and checks the node's certificate by the name {PROXY_NAME}, which every node's "
                             "certificate carries)") from None
    port = spec.proxy.readonly_port if readonly else spec.proxy.port
    return _uri(spec, f"{PROXY_NAME}:{port}", params, "verify-full", connect_timeout, ca_file)
