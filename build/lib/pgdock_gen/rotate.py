"""`pgdock-gen rotate`: new passwords and node certificates for a running cluster, no restart.

Order matters because a role has one password at a time: the new secret is written to the repo's
`secrets/` first (so it is never lost), then set in the database (ALTER ROLE on the primary, which
replicates it to the standbys, and on the witness, which has a database of its own), then handed to
every node, whose agent installs it where its programs read it (.pgpass, TLS files) and reloads
PostgreSQL and repmgrd. Connections that are open stay open across the change (PostgreSQL checks a
password only at login): the agents' probes, repmgrd and replication keep running meanwhile. Node
certificates are issued anew by the cluster's CA, which stays, so every node keeps trusting the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import contract, credentials, docker, volumes
from .cluster import Running, Target
from .errors import PgdockError, UsageError

DATABASE_ROLES = {"superuser": "postgres", "repmgr": "repmgr", "replication": "replicator"}
"""The database role behind each password file; `app` is the spec's user."""
Progress = Callable[[str], None]


def _alter_role(target: Target, role: str, password: str) -> None:
    """ALTER ROLE through psql's stdin, as the postgres OS user over the socket: the password appears in
    no command line, and the statement is not logged."""
    sql = (f"SET log_statement = 'none';\nSET log_min_duration_statement = -1;\n"
           f"ALTER ROLE \"{role}\" PASSWORD '{password.replace(chr(39), chr(39) * 2)}';\n")
    result = docker.exec_input(target.context, target.container,
                               ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(contract.SOCKET_DIR), "-p",
                                str(target.node.port), "-U", "postgres", "-d", "postgres", "-f", "-"],
                               "postgres", sql.encode())
    if result.returncode != 0:
        why = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        raise PgdockError(f"setting the new password of {role} on {target.node.name} failed: {why[0]}")


def _reload(target: Target) -> None:
    """The agent installs the node's secrets anew and reloads PostgreSQL and repmgrd."""
    docker.call(f"reloading {target.node.name}", target.client.execute, target.container, ["pgdock-agent", "reload"])


def rotate(running: Running, secrets_dir: Path, *, passwords: tuple[str, ...], certificates: bool,
           progress: Progress) -> list[str]:
    """Rotates the given passwords (names from credentials.PASSWORDS) and/or every node certificate;
    returns what the operator must still do (applications use the new app password)."""
    unknown = [name for name in passwords if name not in credentials.PASSWORDS]
    if unknown or not (passwords or certificates):
        raise UsageError(f"nothing to rotate: pick passwords among {', '.join(credentials.PASSWORDS)} "
                         f"(unknown: {', '.join(unknown) or 'none'}) and/or --certificates")
    spec, targets = running.spec, running.targets()
    rows = {row.name: row for row in running.status()}
    down = [name for name, row in rows.items() if row.role in ("down", "unreachable") or not row.reachable]
    primary = next((name for name, row in rows.items() if row.role == "primary"), None)
    if down or primary is None:
        raise PgdockError(f"rotate needs every node up and a primary; {', '.join(down) or 'no primary'}: see "
                          "`pgdock-gen status`")
    credentials.check_complete(secrets_dir)
    fresh = {name: credentials.new_password() for name in passwords}
    for name, value in fresh.items():  # first into the repo: whatever fails later, the new value is kept
        credentials.write_password(secrets_dir, name, value)
    if certificates:
        credentials.reissue_node_certificates(spec, secrets_dir)
    by_name = {t.node.name: t for t in targets}
    for name, value in fresh.items():
        role = spec.user if name == "app" else DATABASE_ROLES[name]
        holders = [primary] + [t.node.name for t in targets
                               if t.node.witness and name in credentials.WITNESS_PASSWORDS]
        for holder in holders:
            progress(f"{holder}: new password for {role}")
            _alter_role(by_name[holder], role, value)
    for target in targets:
        progress(f"{target.node.name}: installing the new secrets")
        volumes.deliver_secrets(target.client, spec, target.node, secrets_dir)
        _reload(target)
    running.wait_healthy(timeout=120, progress=progress)
    return ([f"applications log in with the new password in {secrets_dir / 'passwords' / 'app'}"]
            if "app" in fresh else [])
