"""RemoteSuperLink: its address checks, the connection it writes for the flwr CLI, and its errors."""

from __future__ import annotations

import socket
import tomllib

import pytest
from flwr.cli.flower_config import read_superlink_connection

from fedjax_rhd.federation.flower.processes import free_port
from fedjax_rhd.federation.flower.remote import RemoteSuperLink, parse_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("manager.example.org:1", ("manager.example.org", 1)),
        ("[::1]:65535", ("::1", 65535)),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "match"),
    [
        ("http://10.0.0.5:9092", "without a scheme"),
        ("10.0.0.5", "must be 'host:port'"),
        (":9092", "must be 'host:port'"),
        ("10.0.0.5:", "no port in 1-65535"),
        ("10.0.0.5:0", "no port in 1-65535"),
        ("10.0.0.5:65536", "no port in 1-65535"),
        ("10.0.0.5:９０", "no port in 1-65535"),  # full-width digits are not a port
        ("::1:9092", "IPv6 host in brackets"),
        ("[::g]:9092", "malformed IPv6"),
        ("bad_host:9092", "malformed host 'bad_host'"),
        ("a b:9092", "malformed host"),
        (None, "'host:port' string"),
    ],
)
def test_bad_addresses_are_refused_by_name(tmp_path, address, match):
    with pytest.raises(ValueError, match=match):
        RemoteSuperLink(address, tmp_path)
    assert not (tmp_path / "flwr_home").exists()


def test_start_writes_a_connection_flower_reads(tmp_path, monkeypatch):
    with socket.socket() as server:  # a stand-in SuperLink port: start only checks that it accepts
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        superlink = RemoteSuperLink(address, tmp_path / "work")
        assert superlink.env["FLWR_HOME"] == str(tmp_path / "work" / "flwr_home")
        with superlink:
            config_path = tmp_path / "work" / "flwr_home" / "config.toml"
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
            assert config["superlink"] == {
                "default": superlink.connection,
                superlink.connection: {"address": address, "insecure": True},
            }
            # Flower's CLI reads it as the default connection.
            monkeypatch.setenv("FLWR_HOME", superlink.env["FLWR_HOME"])
            connection = read_superlink_connection()
            assert (connection.name, connection.address, connection.insecure) == (
                superlink.connection,
                address,
                True,
            )
            with pytest.raises(RuntimeError, match="already started"):
                superlink.start()
        superlink.stop()  # idempotent; no run was submitted, so nothing to stop
        with pytest.raises(RuntimeError, match="is stopped, not started"):
            superlink.run_status(1)


def test_unreachable_superlink_is_named(tmp_path):
    port = free_port()  # nothing listens there
    superlink = RemoteSuperLink(f"127.0.0.1:{port}", tmp_path)
    with pytest.raises(ConnectionError, match=rf"no SuperLink accepts connections at 127.0.0.1:{port}"):
        superlink.start()
    with pytest.raises(RuntimeError, match="is new, not started"):
        superlink.stop_run(1)
    superlink.stop()  # a no-op before start


def test_submit_checks_the_app_before_contacting_anyone(tmp_path):
    superlink = RemoteSuperLink("127.0.0.1:9", tmp_path)
    with pytest.raises(FileNotFoundError, match="no pyproject.toml"):
        superlink.submit(tmp_path / "nowhere", {})
