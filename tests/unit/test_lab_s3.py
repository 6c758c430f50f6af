"""The lab's S3 server speaks TLS with a certificate from the lab's CA (issue 14, step 1 of
docs/backup-engine-plan.md: pgBackRest talks to S3 over TLS only). The e2e backup tests run every
backup and restore through it; these check what the lab hands out before anything runs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from pgdock_gen import contract, credentials, lab, spec


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "_subnet", lambda client, network, name: "172.28.7.0/24")


def test_the_lab_points_backups_at_its_s3_server_over_https_trusting_its_ca(
        tmp_path: Path, shop_spec_text: str, offline: None) -> None:
    spec_path = tmp_path / "cluster.yaml"
    spec_path.write_text(shop_spec_text)
    the_lab = lab.prepare(spec_path, spec.load(spec_path), client=object(), s3=True)
    s3 = the_lab.lab_spec.backup.s3
    assert s3.endpoint == f"https://172.28.7.230:{contract.LAB_S3_PORT}"
    secrets = the_lab.repo / "secrets"
    assert s3.ca_bundle == str(secrets / contract.SECRET_S3_CA)  # this machine's boto3 verifies with it
    assert (secrets / contract.SECRET_S3_CA).read_bytes() == (secrets / "tls" / "ca.crt").read_bytes()
    env = (the_lab.repo / "nodes" / the_lab.lab_spec.primary.name / "env").read_text()
    assert f"{contract.ENV_S3_ENDPOINT}=https://172.28.7.230:" in env
    # the nodes get the CA with their secrets (barman-cloud's ca_bundle, pgBackRest's repo1-storage-ca-file)
    bundle = credentials.node_bundle(the_lab.lab_spec, the_lab.lab_spec.primary, secrets)
    assert bundle[contract.SECRET_S3_CA] == (secrets / "tls" / "ca.crt").read_bytes()


def test_the_s3_server_certificate_names_every_address_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    key, cert_pem = credentials.server_certificate(tls, "c", "c-s3", ["172.28.7.230", "172.28.9.230", "172.28.7.230"])
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.IPAddress)) == [ipaddress.ip_address("172.28.7.230"),
                                                                 ipaddress.ip_address("172.28.9.230")]
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    assert load_pem_private_key(key, None).public_key().public_numbers() == cert.public_key().public_numbers()
    # a second certificate (a restored lab joined) comes from the same CA, not a new one
    credentials.server_certificate(tls, "c", "c-s3", ["172.28.7.230"])
    assert x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes()) == ca
