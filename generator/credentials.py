"""Creates a cluster's secrets once and keeps them: passwords, SSH keys, TLS.

pg-dock committed one private SSH key for every node and used trust auth; here
every cluster gets its own material in `secrets/` (git-ignored, mode 0600), and
re-rendering never replaces what exists, so rendered config stays byte-identical.
Node certificates are re-issued only when a node's name or address changed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets as random
from collections.abc import Iterable
from pathlib import Path

from . import contract
from .errors import UsageError
from .spec import Node, Spec

PASSWORDS = contract.PASSWORD_FILES
WITNESS_PASSWORDS = ("superuser", "repmgr")
"""The witness's own database (initdb, local logins) and repmgr; it neither replicates nor serves the app."""
DATA_NODE_ONLY = (contract.SECRET_SSH_KEY, contract.SECRET_KNOWN_HOSTS, contract.SECRET_HETZNER_ENV,
                  contract.SECRET_S3_ENV, contract.SECRET_S3_CA)
"""What the witness never uses: it opens no ssh connection (a switchover's --siblings-follow reaches it, so
it keeps its host key and the public key), archives nothing and never takes the failover IP."""
_VALIDITY = dt.timedelta(days=3650)
_CLOCK_SKEW = dt.timedelta(days=1)
"""Certificates are valid from a day before they are made: a node whose clock lags the machine that
rendered the repo must not reject them as not yet valid."""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def new_password() -> str:
    """URL-safe, no quotes or backslashes: safe in .pgpass, conninfo and env files."""
    return random.token_urlsafe(32)


def write_password(directory: Path, role: str, value: str) -> None:
    """Replaces a password file whole (written beside, then renamed): never half written."""
    path = directory / "passwords" / role
    fresh = path.with_name(f".{role}.new")
    _write_private(fresh, (value + "\n").encode())
    fresh.replace(path)


def _ensure_password(path: Path) -> None:
    if not path.exists():
        _write_private(path, (new_password() + "\n").encode())


def _openssh_ed25519() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public


def _ensure_ssh_key(private_path: Path, comment: str) -> bytes:
    public_path = private_path.with_suffix(".pub")
    if not private_path.exists() or not public_path.exists():
        private, public = _openssh_ed25519()
        _write_private(private_path, private)
        _write_private(public_path, public + f" {comment}\n".encode())
    return public_path.read_bytes().split(b" ")[:2]


def _known_hosts(spec: Spec, host_keys: dict[str, list[bytes]]) -> bytes:
    lines = []
    for node in spec.members:
        algo, key = host_keys[node.name]
        names = sorted({f"[{node.address}]:{node.ssh_port}", f"[{node.name}]:{node.ssh_port}"})
        lines.append(f"{','.join(names)} {algo.decode()} {key.decode()}\n")
    return "".join(lines).encode()


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ensure_ca(tls: Path, cluster: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_path, cert_path = tls / "ca.key", tls / "ca.crt"
    if not key_path.exists() or not cert_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"pgdock {cluster} CA"))
            .issuer_name(_name(f"pgdock {cluster} CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    return key, x509.load_pem_x509_certificate(cert_path.read_bytes())


def _alt_names(node: Node) -> list:
    from cryptography import x509

    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    names: list = [x509.DNSName(node.name), x509.DNSName("localhost"), loopback]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(node.address)))
    except ValueError:
        names.append(x509.DNSName(node.address))
    return names


def _cert_matches(path: Path, wanted: Iterable) -> bool:
    from cryptography import x509

    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(have) == set(wanted)


def reissue_node_certificates(spec: Spec, directory: Path) -> None:
    """New keys and certificates for every member, signed by the cluster's CA (`pgdock-gen rotate`)."""
    tls = directory / "tls"
    for node in spec.members:
        (tls / f"{node.name}.crt").unlink(missing_ok=True)
    ca_key, ca_cert = _ensure_ca(tls, spec.cluster)
    for node in spec.members:
        _ensure_node_cert(tls, node, ca_key, ca_cert)


def _ensure_node_cert(tls: Path, node: Node, ca_key, ca_cert) -> None:
    alt_names = _alt_names(node)
    cert_path, key_path = tls / f"{node.name}.crt", tls / f"{node.name}.key"
    if key_path.exists() and _cert_matches(cert_path, alt_names):
        return
    key_pem, cert_pem = _issue(ca_key, ca_cert, node.name, alt_names)
    _write_private(key_path, key_pem)
    _write_private(cert_path, cert_pem)


def _issue(ca_key, ca_cert, common_name: str, alt_names: list) -> tuple[bytes, bytes]:
    """A new key and its certificate (PEM), signed by the cluster's CA, for `alt_names`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def server_certificate(tls: Path, cluster: str, name: str, addresses: Iterable[str]) -> tuple[bytes, bytes]:
    """A key and certificate (PEM) for a service reached at `addresses`, signed by the CA in `tls` (made
    when missing): the lab's S3 server speaks TLS as real stores do, and the nodes trust it through the
    cluster's CA. Nothing is written: the caller hands the pair to the service."""
    from cryptography import x509

    ca_key, ca_cert = _ensure_ca(tls, cluster)
    alt_names = [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(set(addresses))]
    return _issue(ca_key, ca_cert, name, alt_names)


def _half_pairs(folder: Path) -> list[Path]:
    """Private keys without their public half and the reverse: the missing half cannot be derived back."""
    return sorted([key.with_suffix(".pub") for key in folder.glob("*_ed25519") if not key.with_suffix(".pub").exists()]
                  + [pub.with_suffix("") for pub in folder.glob("*.pub") if not pub.with_suffix("").exists()])


def lost_pieces(directory: Path) -> list[Path]:
    """What an existing secrets set lacks that cannot be made anew without breaking the cluster that uses
    it: a password its databases already know, the CA that signed its node certificates, half a key pair.
    Pieces that can be made anew consistently (a new node's certificate or host key) are not lost."""
    if not directory.is_dir():
        return []
    passwords = [directory / "passwords" / role for role in PASSWORDS]
    lost = [path for path in passwords if not path.exists()] if any(p.exists() for p in passwords) else []
    tls = directory / "tls"
    if any(cert.name != "ca.crt" for cert in tls.glob("*.crt")):
        lost += [path for path in (tls / "ca.key", tls / "ca.crt") if not path.exists()]
    return lost + _half_pairs(directory / "ssh") + _half_pairs(directory / "ssh" / "host_keys")


def check_complete(directory: Path) -> None:
    """Refuses (exit 2, nothing written) to fill gaps in an existing secrets set with new material: a new
    repmgr password or CA would render a repo the running cluster does not accept."""
    lost = lost_pieces(directory)
    if lost:
        listing = "\n".join(f"  {path}" for path in lost)
        raise UsageError(f"{directory}: these secrets are missing, and new ones would not match the cluster that "
                         f"uses the others:\n{listing}\nRestore them from your backup of secrets/ (it is not in "
                         "git); for a cluster that was never deployed, remove secrets/ and render again.")


def ensure(spec: Spec, directory: Path) -> None:
    """Creates whatever secret of `spec` is missing under `directory`; never rotates existing ones, and
    refuses to fill the gaps of an incomplete set (check_complete)."""
    check_complete(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    for role in PASSWORDS:
        _ensure_password(directory / "passwords" / role)
    _ensure_ssh_key(directory / "ssh" / "id_ed25519", f"pgdock-{spec.cluster}")
    host_keys = {
        node.name: _ensure_ssh_key(directory / "ssh" / "host_keys" / f"{node.name}_ed25519",
                                   f"{node.name}.{spec.cluster}")
        for node in spec.members
    }
    _write_private(directory / "ssh" / "known_hosts", _known_hosts(spec, host_keys))
    ca_key, ca_cert = _ensure_ca(directory / "tls", spec.cluster)
    for node in spec.members:
        _ensure_node_cert(directory / "tls", node, ca_key, ca_cert)


def password(directory: Path, role: str) -> str:
    return (directory / "passwords" / role).read_text().strip()


def node_bundle(spec: Spec, node: Node, directory: Path) -> dict[str, bytes]:
    """The secrets one node receives, under the names the base image's agent expects.

    A node gets its own TLS key and SSH host key, never another node's; `*.env`
    files at the top of `secrets/` (hetzner.env, webhook.env, s3.env) and the S3
    store's CA (`s3-ca.crt`) go to every node, and `secrets/nodes/<name>/*.env`
    override them for one node. The witness gets only what it uses: its
    WITNESS_PASSWORDS and nothing of DATA_NODE_ONLY.
    """
    roles = WITNESS_PASSWORDS if node.witness else PASSWORDS
    bundle = {f"passwords/{role}": (directory / "passwords" / role).read_bytes() for role in roles}
    ssh, tls = directory / "ssh", directory / "tls"
    bundle |= {
        contract.SECRET_SSH_KEY: (ssh / "id_ed25519").read_bytes(),
        contract.SECRET_SSH_PUB: (ssh / "id_ed25519.pub").read_bytes(),
        contract.SECRET_KNOWN_HOSTS: (ssh / "known_hosts").read_bytes(),
        contract.SECRET_SSH_HOST_KEY: (ssh / "host_keys" / f"{node.name}_ed25519").read_bytes(),
        contract.SECRET_CA_CERT: (tls / "ca.crt").read_bytes(),
        contract.SECRET_NODE_CERT: (tls / f"{node.name}.crt").read_bytes(),
        contract.SECRET_NODE_KEY: (tls / f"{node.name}.key").read_bytes(),
    }
    for folder in (directory, directory / "nodes" / node.name):
        bundle |= {env.name: env.read_bytes() for env in sorted(folder.glob("*.env"))}
    if (directory / contract.SECRET_S3_CA).exists():
        bundle[contract.SECRET_S3_CA] = (directory / contract.SECRET_S3_CA).read_bytes()
    if node.witness:
        bundle = {name: data for name, data in bundle.items() if name not in DATA_NODE_ONLY}
    return bundle
