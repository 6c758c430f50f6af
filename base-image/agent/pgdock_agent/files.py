"""Files the node's programs read: secrets copied where each program wants them, and config versions
installed into a live volume."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from . import contract
from .node import SECRETS, env, password
from .peers import peers
from .postgres import HOME

TLS = Path(contract.TLS)


def write_owned(path: Path, content: str | bytes, mode: int = 0o600, owner: str = "postgres") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if owner == "postgres" and os.getuid() == 0:
        shutil.chown(path.parent, "postgres", "postgres")
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    os.chmod(path, mode)
    if os.getuid() == 0:
        shutil.chown(path, owner, owner)


def install_secrets() -> None:
    """Copies the node's secrets (a read-only volume) to where each program wants them, with strict modes.
    The witness receives fewer (no replication password, no ssh client key: credentials.node_bundle), so
    what is missing is left out rather than an error."""
    if not (SECRETS / contract.SECRET_PASSWORDS).is_dir():
        raise SystemExit(f"pgdock-agent: no secrets in {SECRETS}; deliver them first "
                         "(pgdock-gen lab up / pgdock-gen deploy do)")
    lines = [f"*:*:*:{role}:{password(secret)}" for role, secret in
             (("postgres", "superuser"), ("repmgr", "repmgr"), ("replicator", "replication"))
             if (SECRETS / contract.SECRET_PASSWORDS / secret).exists()]
    write_owned(HOME / ".pgpass", "\n".join(lines) + "\n")
    for source, target in ((contract.SECRET_CA_CERT, "ca.crt"), (contract.SECRET_NODE_CERT, "server.crt"),
                           (contract.SECRET_NODE_KEY, "server.key")):
        write_owned(TLS / target, (SECRETS / source).read_bytes())
    ssh = HOME / ".ssh"
    write_owned(ssh / "authorized_keys", authorized_key((SECRETS / contract.SECRET_SSH_PUB).read_text()))
    if (SECRETS / contract.SECRET_SSH_KEY).exists():  # an ssh client: switchover and rejoin reach the peers
        write_owned(ssh / "id_ed25519", (SECRETS / contract.SECRET_SSH_KEY).read_bytes())
        write_owned(ssh / "known_hosts", (SECRETS / contract.SECRET_KNOWN_HOSTS).read_bytes(), 0o644)
        hosts = "".join(f"Host {p.address} {p.name}\n  Port {p.ssh_port}\n" for p in peers())
        write_owned(ssh / "config", hosts + "Host *\n  IdentityFile ~/.ssh/id_ed25519\n")
    os.chmod(ssh, 0o700)
    write_s3_config()
    if os.getuid() == 0:
        write_owned(Path("/etc/ssh/pgdock_host_ed25519_key"), (SECRETS / contract.SECRET_SSH_HOST_KEY).read_bytes(),
                    owner="root")


def authorized_key(public_key: str) -> str:
    """The cluster key, usable only from members and only to run commands (`restrict` turns off forwarding,
    agents and terminals). This node's own address and loopback are members too: nodes sharing a server
    reach each other from the address they connect to (the kernel picks it as the source)."""
    sources = ",".join([p.address for p in peers()] + [env(contract.ENV_ADDRESS), "127.0.0.1", "::1"])
    return f'restrict,from="{sources}" {public_key.strip()}\n'


def write_s3_config() -> None:
    """~/.aws for barman-cloud (archive_command, backups, restores), and pgBackRest's config file when it is
    the engine: keys from the secret s3.env,
    endpoint details from the env file. Checksums only when required: many S3-compatible stores
    reject the ones boto3 adds by default since 1.36."""
    source = SECRETS / contract.SECRET_S3_ENV
    if not source.exists():
        return
    values = dict(line.split("=", 1) for line in source.read_text().splitlines() if "=" in line
                  and not line.startswith("#"))
    keys = {k: values.get(k, "").strip().strip("'\"") for k in
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    write_owned(HOME / ".aws" / "credentials", "[default]\n" + "".join(
        f"{k.lower()} = {v}\n" for k, v in keys.items() if v))
    style = "path" if os.environ.get(contract.ENV_S3_PATH_STYLE) == "true" else "auto"
    config = (f"[default]\nregion = {env(contract.ENV_S3_REGION, 'us-east-1')}\n"
              f"s3 =\n  addressing_style = {style}\n"
              "request_checksum_calculation = when_required\nresponse_checksum_validation = when_required\n")
    if (SECRETS / contract.SECRET_S3_CA).exists():
        config += f"ca_bundle = {SECRETS / contract.SECRET_S3_CA}\n"
    write_owned(HOME / ".aws" / "config", config)
    if os.environ.get(contract.ENV_BACKUP_ENGINE) == "pgbackrest":
        with_ca = (SECRETS / contract.SECRET_S3_CA).exists()
        write_owned(Path(contract.PGBACKREST_CONFIG), pgbackrest_config(keys, with_ca))


def pgbackrest_config(keys: dict[str, str], with_ca: bool) -> str:
    """pgBackRest's config file: only what the env file must not carry (the S3 keys), and the store's CA."""
    names = {"AWS_ACCESS_KEY_ID": "repo1-s3-key", "AWS_SECRET_ACCESS_KEY": "repo1-s3-key-secret",
             "AWS_SESSION_TOKEN": "repo1-s3-token"}
    lines = [f"{names[k]}={v}" for k, v in keys.items() if v and k in names]
    if with_ca:
        lines.append(f"repo1-storage-ca-file={SECRETS / contract.SECRET_S3_CA}")
    return "[global]\n" + "".join(f"{line}\n" for line in lines)


def tree_digest(source: Path) -> str:
    """A name for a config version: the hash of its files' paths, modes and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source)}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def install_version(source: Path, store: Path, keep: int = contract.CONFIG_VERSIONS_KEPT) -> str:
    """Config carrier's job: a complete copy of `source` becomes a version folder of its own, then `current`
    is pointed at it by one rename. A carrier killed midway leaves `current` on the old version, whole (a
    file-by-file swap left a mix of two versions). The newest `keep` other versions stay for rollbacks."""
    versions = store / contract.CONFIG_VERSIONS
    name = tree_digest(source)
    final = versions / name
    versions.mkdir(parents=True, exist_ok=True)
    if not final.is_dir():
        staging = versions / f".incoming-{name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, symlinks=True)
        os.replace(staging, final)
    os.utime(final)  # the newest use first when old versions are pruned
    link = store / f".{contract.CONFIG_CURRENT}-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(f"{contract.CONFIG_VERSIONS}/{name}")
    os.replace(link, store / contract.CONFIG_CURRENT)
    others = sorted((p for p in versions.iterdir() if p.name != name), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in others if p.name.startswith(".incoming-")] + [p for p in others
                                                                        if not p.name.startswith(".")][keep:]:
        shutil.rmtree(old, ignore_errors=True)
    print(f"installed config version {name} into {store} and made it current")
    return name


def install_config(source: Path, target: Path) -> None:
    """The secrets volume's update: make `target` hold exactly `source`'s files, in place (files gone from
    the source are removed too). Each file is swapped in whole (write beside it, then rename), so a running
    node reading one never finds it empty or half written; config uses `install_version` instead."""
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    for rel in sorted(wanted):
        dest, origin = target / rel, (source / rel).stat()
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = (source / rel).read_bytes()
        if dest.exists() and dest.read_bytes() == data:
            os.chmod(dest, origin.st_mode & 0o777)
            continue
        fresh = dest.with_name(f".pgdock-new-{dest.name}")
        fresh.write_bytes(data)
        os.chmod(fresh, origin.st_mode & 0o777)
        if os.getuid() == 0:
            os.chown(fresh, origin.st_uid, origin.st_gid)
        os.replace(fresh, dest)
    for path in sorted(target.rglob("*"), reverse=True):
        rel = path.relative_to(target)
        if path.is_file() and rel not in wanted and not rel.parts[0].startswith(".pgdock"):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()) and not rel.parts[0].startswith(".pgdock"):
            path.rmdir()
    print(f"installed {len(wanted)} files into {target}")
