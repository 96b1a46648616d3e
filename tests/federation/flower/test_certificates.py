"""TLS certificates and SuperNode keys as flwr 1.42 wants them (flower_1.42_facts.md §4), and the config
checks that keep TLS the default."""

from __future__ import annotations

import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedjax_rhd.federation.flower import certificates
from fedjax_rhd.federation.flower.backend import FlowerConfig


def test_ca_and_server_certificate_chain_and_cover_the_names(tmp_path):
    ca_path = certificates.make_ca(tmp_path / "ca")
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)  # self-signed
    files = certificates.make_server_certificate(
        tmp_path / "ca", ["127.0.0.1", "localhost", "m.org"], tmp_path / "s"
    )
    server = x509.load_pem_x509_certificate(files.cert.read_bytes())
    server.verify_directly_issued_by(ca)  # raises unless the CA signed it
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "m.org"]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert files.ca.read_bytes() == ca_path.read_bytes()  # the CA travels with the server's files
    for key in (tmp_path / "ca" / certificates.CA_KEY, files.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()


def test_node_key_is_openssh_ec_on_a_nist_curve(tmp_path):
    private, public = certificates.make_node_key(tmp_path)
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ")
    key = serialization.load_ssh_private_key(
        private.read_bytes(), password=None
    )  # OpenSSH, as Flower loads it
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    pem = certificates.public_key_pem(public)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert (
        serialization.load_pem_public_key(pem.encode()).public_numbers() == key.public_key().public_numbers()
    )


def test_command_line(tmp_path, capsys):
    assert certificates.main(["ca", "--out", str(tmp_path / "tls")]) == 0
    args = ["server", "--ca", str(tmp_path / "tls"), "--host", "127.0.0.1", "--out", str(tmp_path / "tls")]
    assert certificates.main(args) == 0
    assert (tmp_path / "tls" / certificates.SERVER_CERT).is_file()
    assert certificates.main(["node-key", "--out", str(tmp_path / "site")]) == 0
    assert "send this one to the manager" in capsys.readouterr().out
    missing = ["server", "--ca", str(tmp_path / "nothing"), "--host", "h", "--out", str(tmp_path / "x")]
    assert certificates.main(missing) == 2
    assert f"{tmp_path / 'nothing' / certificates.CA_CERT}: no CA there" in capsys.readouterr().err


def test_tls_is_the_default_and_plaintext_must_be_asked_for():
    assert FlowerConfig(mode="deployment").insecure is False
    with pytest.raises(ValueError, match="backend.superlink over TLS needs backend.root_certificates"):
        FlowerConfig(mode="deployment", superlink="10.0.0.5:9092")
    FlowerConfig(mode="deployment", superlink="10.0.0.5:9092", insecure=True)  # plaintext, asked for
    with pytest.raises(ValueError, match="backend.node_auth needs TLS"):
        FlowerConfig(mode="deployment", insecure=True)
    FlowerConfig(mode="deployment", insecure=True, node_auth=False)
