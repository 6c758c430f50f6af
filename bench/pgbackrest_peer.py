"""pgBackRest, the peer of bench/backup.py: the same node, the same S3 server, the same run (issue 14).

pgBackRest talks to S3 over TLS only, so the lab's S3 container gets a second listener: the same moto
package on port 5443 with a certificate from the cluster's CA (the lab's own, in its secrets). Debian
trixie's pgbackrest runs in a throwaway container made from the node's base image (plus the package),
with the node's data and socket volumes and its network: it reads the same files the sidecar reads.

Its own WAL archive is not set up (the node archives with pgdock), so backups run with
--no-archive-check: pgBackRest does not wait for the backup's last WAL file to reach its repository,
which barman-cloud does (~1-2 s of pgdock's figure).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import tempfile
import time
from pathlib import Path

from common import sh

IMAGE = "pgdock-bench/pgbackrest"
TLS_PORT = 5443
BUCKET = "bench-pgbackrest"


def build(base_image: str) -> str:
    """The base image plus Debian's pgbackrest; returns pgbackrest's version."""
    dockerfile = (f"FROM {base_image}\nUSER root\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get "
                  "install -y --no-install-recommends pgbackrest && rm -rf /var/lib/apt/lists/*\n")
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, "-"], input=dockerfile, text=True, check=True,
                   capture_output=True)
    return sh("docker", "run", "--rm", "--entrypoint", "pgbackrest", IMAGE, "version")


def _certificate(ca_dir: Path, address: str, out: Path) -> None:
    """A server certificate for `address`, signed by the lab's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (out / "s3.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    (out / "s3.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


SERVE_TLS = f"""
from werkzeug.serving import WSGIRequestHandler, make_server
from moto.server import DomainDispatcherApplication, create_backend_app
class KeepAlive(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
server = make_server("0.0.0.0", {TLS_PORT}, DomainDispatcherApplication(create_backend_app), threaded=True,
                     request_handler=KeepAlive, ssl_context=("/tmp/s3.crt", "/tmp/s3.key"))
close = server.shutdown_request
def shutdown_request(request):
    try:
        request.unwrap()
    except Exception:
        pass
    close(request)
server.shutdown_request = shutdown_request
server.serve_forever()
"""
"""moto as `python3 -m moto.server -c -k` runs it, but keeping connections open (HTTP/1.1) and ending each
with TLS's close_notify: werkzeug closes the socket without it, which pgBackRest's OpenSSL reports as
"unexpected eof", and closing after every answer cost pgBackRest a retry each (a 30 MB backup took 230 s)."""


def tls_listener(s3_container: str, address: str, ca_dir: Path) -> str:
    """Starts moto on TLS_PORT in the lab's S3 container; returns its endpoint once it answers."""
    with tempfile.TemporaryDirectory() as tmp:
        _certificate(ca_dir, address, Path(tmp))
        for name in ("s3.crt", "s3.key"):
            sh("docker", "cp", str(Path(tmp) / name), f"{s3_container}:/tmp/{name}")
    sh("docker", "exec", "-d", s3_container, "python3", "-c", SERVE_TLS)
    endpoint = f"https://{address}:{TLS_PORT}"
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, verify=str(ca_dir / "ca.crt"), aws_access_key_id="lab",
                      aws_secret_access_key="lab-secret", region_name="us-east-1")
    for _ in range(60):
        try:
            s3.create_bucket(Bucket=BUCKET)
            return endpoint
        except Exception:  # noqa: BLE001 - the listener is starting
            time.sleep(0.5)
    raise RuntimeError(f"moto on {endpoint} did not answer")


def public_ca(ca_dir: Path, out: Path) -> Path:
    """The CA certificate, readable by the container's postgres user (the lab's copy is 0600, root's)."""
    copy = out / "ca.crt"
    copy.write_bytes((ca_dir / "ca.crt").read_bytes())
    copy.chmod(0o644)
    return copy


def run(node: str, sidecar: str, ca_file: Path, address: str, settings: dict[str, str], *args: str,
        volume: str | None = None) -> float:
    """One pgbackrest command beside `node`; returns the seconds it took (raises on failure)."""
    options = {"stanza": "bench", "repo1-type": "s3", "repo1-s3-bucket": BUCKET, "repo1-s3-region": "us-east-1",
               "repo1-s3-endpoint": address, "repo1-s3-uri-style": "path", "repo1-storage-port": str(TLS_PORT),
               "repo1-storage-ca-file": "/tmp/ca.crt", "repo1-s3-key": "lab", "repo1-s3-key-secret": "lab-secret",
               "repo1-path": "/pgbackrest", "pg1-path": "/var/lib/pgdock/data",
               "pg1-socket-path": "/var/run/postgresql",
               "log-level-console": "warn", "lock-path": "/tmp", "log-path": "/tmp", "spool-path": "/tmp", **settings}
    env = [f"--env=PGBACKREST_{k.upper().replace('-', '_')}={v}" for k, v in options.items()]
    mounts = ["-v", f"{ca_file}:/tmp/ca.crt:ro"] + (["-v", f"{volume}:/restore"] if volume else [])
    start = time.perf_counter()
    result = subprocess.run(["docker", "run", "--rm", "--volumes-from", sidecar, "--network", f"container:{node}",
                             "-u", "postgres", *mounts, *env, "--entrypoint", "pgbackrest", IMAGE, *args],
                            capture_output=True, text=True)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"pgbackrest {' '.join(args)} failed: {(result.stderr or result.stdout)[-800:]}")
    return took


def stored(ca_dir: Path, endpoint: str) -> int:
    """Bytes pgBackRest's full backups take in its bucket."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, verify=str(ca_dir / "ca.crt"), aws_access_key_id="lab",
                      aws_secret_access_key="lab-secret", region_name="us-east-1")
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="pgbackrest/backup/"):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total
