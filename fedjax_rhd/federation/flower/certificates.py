"""TLS certificates and SuperNode keys for a Flower deployment, made with ``cryptography`` alone.

flwr 1.42 (``shared/docs/flower_1.42_facts.md`` §4): the SuperLink serves its one port with
``--ssl-ca-certfile``, ``--ssl-certfile`` and ``--ssl-keyfile``; SuperNodes and the ``flwr`` CLI
trust only the CA they are given (``--root-certificates``, ``root-certificates`` in
``config.toml``); the server certificate's subject alternative names must cover every address the
SuperLink is reached at (its own SuperExec and ServerApp use the address it listens on).
SuperNode authentication needs an EC key on a NIST curve in **OpenSSH** format (PEM or ed25519
keys are refused); the SuperLink accepts only public keys registered with
``flwr supernode register``.

``LocalDeployment`` makes a CA, a server certificate and one key pair per node for every run
(``TlsFiles``); for a real deployment the same functions run from the command line::

    python -m fedjax_rhd.federation.flower.certificates ca --out tls/
    python -m fedjax_rhd.federation.flower.certificates server --ca tls/ --host manager.example.org --out tls/
    python -m fedjax_rhd.federation.flower.certificates node-key --out site1/   # at each hospital
    python -m fedjax_rhd.federation.flower.certificates register --superlink 127.0.0.1:9091 \
        --ca tls/ca.crt --key site1/node.key.pub --name site1                  # at the manager
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
NODE_KEY, NODE_PUBLIC_KEY = "node.key", "node.key.pub"
CURVE = ec.SECP384R1  # a NIST curve, as Flower's SuperNode authentication requires
VALID_DAYS = 365


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """The files a TLS SuperLink is started with; SuperNodes and the CLI need only ``ca``."""

    ca: Path
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private keys: owner only
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    # a minute of slack for hosts whose clocks differ a little
    return builder.not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(
        now + datetime.timedelta(days=VALID_DAYS)
    )


def make_ca(folder: Path, common_name: str = "fedjax-rhd federation CA") -> Path:
    """Write a self-signed CA certificate (``ca.crt``) and its private key (``ca.key``, mode 0600).

    Returns:
        The certificate's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(CURVE())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    )
    cert = _validity(builder).sign(key, hashes.SHA384())
    _write_private(folder / CA_KEY, key.private_bytes(*_pem_private()))
    (folder / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return folder / CA_CERT


def _pem_private() -> tuple[serialization.Encoding, serialization.PrivateFormat, serialization.NoEncryption]:
    return serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_server_certificate(ca_folder: Path, hosts: Sequence[str], out: Path) -> TlsFiles:
    """Write a server certificate signed by the CA in ``ca_folder``, valid for every name in ``hosts``.

    Args:
        ca_folder: Holds ``ca.crt`` and ``ca.key`` (``make_ca``).
        hosts: IP addresses and DNS names the SuperLink is reached at (the first is its common name).
        out: Where ``server.pem`` and ``server.key`` (mode 0600) go.

    Returns:
        The CA, certificate and key paths.

    Raises:
        FileNotFoundError: ``ca_folder`` lacks the CA.
        ValueError: No host given.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    ca_folder, out = Path(ca_folder), Path(out)
    for name in (CA_CERT, CA_KEY):
        if not (ca_folder / name).is_file():
            raise FileNotFoundError(f"{ca_folder / name}: no CA there (make one with the `ca` command)")
    ca_cert = x509.load_pem_x509_certificate((ca_folder / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_folder / CA_KEY).read_bytes(), password=None)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(CURVE())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in dict.fromkeys(hosts)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    cert = _validity(builder).sign(ca_key, hashes.SHA384())  # type: ignore[arg-type]
    _write_private(out / SERVER_KEY, key.private_bytes(*_pem_private()))
    (out / SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if (out / CA_CERT).resolve() != (ca_folder / CA_CERT).resolve():
        (out / CA_CERT).write_bytes((ca_folder / CA_CERT).read_bytes())
    return TlsFiles(out / CA_CERT, out / SERVER_CERT, out / SERVER_KEY)


def make_node_key(folder: Path) -> tuple[Path, Path]:
    """Write a SuperNode's key pair in OpenSSH format: ``node.key`` (mode 0600) and ``node.key.pub``.

    The public key is what the manager registers (``flwr supernode register``); the private key stays
    at the site (``flower-supernode --auth-supernode-private-key``).

    Returns:
        ``(private key path, public key path)``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(CURVE())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    _write_private(folder / NODE_KEY, private)
    (folder / NODE_PUBLIC_KEY).write_bytes(public + b"\n")
    return folder / NODE_KEY, folder / NODE_PUBLIC_KEY


def public_key_pem(public_key_path: Path) -> str:
    """The OpenSSH public key at ``public_key_path`` as PEM (SubjectPublicKeyInfo), the form Flower's
    SuperLink logs a refused key in."""
    key = serialization.load_ssh_public_key(Path(public_key_path).read_bytes())
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def register(superlink: str, ca: Path, public_key: Path, name: str) -> int:
    """Register a site's public key at a TLS SuperLink (``flwr supernode register``); return its node id.

    Runs the ``flwr`` CLI with a throw-away ``FLWR_HOME`` whose one connection trusts ``ca``.
    """
    import tempfile

    from fedjax_rhd.federation.flower.flwr_cli import FlwrCli, flower_env

    with tempfile.TemporaryDirectory(prefix="fedjax_rhd_register_") as tmp:
        cli = FlwrCli(flower_env(Path(tmp) / "flwr_home"), Path(tmp))
        cli.write_connection(superlink, root_certificates=Path(ca))
        return cli.register_node(Path(public_key), name=name)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fedjax_rhd.federation.flower.certificates {ca,server,node-key,register} ...``."""
    parser = argparse.ArgumentParser(description="Certificates and node keys for a Flower deployment.")
    sub = parser.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("ca", help="a CA for the federation (ca.crt, ca.key): once, at the manager")
    ca.add_argument("--out", type=Path, required=True)
    server = sub.add_parser("server", help="the SuperLink's certificate (server.pem, server.key)")
    server.add_argument("--ca", type=Path, required=True, help="the folder of ca.crt and ca.key")
    server.add_argument("--host", action="append", required=True, help="a name or address (repeatable)")
    server.add_argument("--out", type=Path, required=True)
    node = sub.add_parser("node-key", help="a SuperNode's key pair (node.key, node.key.pub): at each site")
    node.add_argument("--out", type=Path, required=True)
    reg = sub.add_parser("register", help="register a site's node.key.pub at the SuperLink: at the manager")
    reg.add_argument("--superlink", required=True, help="host:port of the SuperLink (its own address)")
    reg.add_argument("--ca", type=Path, required=True, help="the federation's ca.crt")
    reg.add_argument("--key", type=Path, required=True, help="the site's node.key.pub")
    reg.add_argument("--name", required=True, help="the site's name in `flwr supernode ls`")
    args = parser.parse_args(argv)
    try:
        if args.command == "ca":
            print(make_ca(args.out))
        elif args.command == "server":
            files = make_server_certificate(args.ca, args.host, args.out)
            print(f"{files.cert}\n{files.key}\n{files.ca}")
        elif args.command == "node-key":
            private, public = make_node_key(args.out)
            print(f"{private}\n{public}  <- send this one to the manager to register")
        else:
            node_id = register(args.superlink, args.ca, args.key, args.name)
            print(f"registered {args.key} as {args.name!r}: node id {node_id}")
    except (OSError, ValueError, RuntimeError) as err:
        print(f"certificates: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
