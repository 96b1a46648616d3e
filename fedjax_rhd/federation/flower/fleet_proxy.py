"""An nginx reverse proxy that exposes only a SuperLink's Fleet API to the sites.

flwr 1.42's SuperLink serves its Fleet, Control and Runtime APIs as one HTTPS server on one port,
told apart by path (``/v1/fleet/*``, ``/v1/control/*``, ``/v1/runtime/*``; ``flwr/superlink/main.py``).
The Control API has no authentication in the open-source release, so a site that can reach it can
submit an app every SuperNode runs, or register a key (``shared/docs/flower_1.42_facts.md`` trap 11).
The SuperLink therefore listens on loopback, and this proxy, on the address the sites reach, passes
``POST /v1/fleet/<method>`` for the Fleet methods in :data:`FLEET_METHODS` and answers 403 to
anything else (``deploy/nginx/fleet-proxy.conf.template``; ``docs/deployment.md`` §6).

Render a configuration for a site-facing nginx instance::

    python -m fedjax_rhd.federation.flower.fleet_proxy render --listen 0.0.0.0:9092 \\
        --superlink 127.0.0.1:9091 --tls ~/fedjax-rhd/tls --prefix ~/fedjax-rhd/nginx
    nginx -p ~/fedjax-rhd/nginx -c ~/fedjax-rhd/nginx/fleet-proxy.conf
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from fedjax_rhd.federation.flower import certificates

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "nginx" / "fleet-proxy.conf.template"
CONFIG_NAME = "fleet-proxy.conf"
# The Fleet API's routes in flwr 1.42 (flwr/superlink/routers/fleet/router.py), all POST; a test checks
# this list against the installed flwr, so a Flower upgrade that adds one is noticed.
FLEET_METHODS = (
    "register-node", "activate-node", "deactivate-node", "unregister-node", "send-node-heartbeat",
    "pull-messages", "push-messages", "get-run", "get-fab", "push-object", "pull-object",
    "confirm-message-received",
)  # fmt: skip
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render(values: dict[str, str], template: Path = TEMPLATE) -> str:
    """The template with every ``{{name}}`` replaced by ``values[name]``.

    Raises:
        FileNotFoundError: no template at ``template``.
        ValueError: a placeholder without a value, a value no placeholder uses, or a value that would
            break the nginx syntax (whitespace, ``;``, braces or quotes).
    """
    text = Path(template).read_text(encoding="utf-8")
    wanted = set(_PLACEHOLDER.findall(text))
    if missing := sorted(wanted - set(values)):
        raise ValueError(f"{template}: no value for {missing}")
    if unused := sorted(set(values) - wanted):
        raise ValueError(f"{template}: no placeholder for {unused}")
    for name, value in values.items():
        if not value or re.search(r"[\s;{}'\"]", value):
            raise ValueError(f"{name}={value!r}: empty, or holds whitespace, ';', braces or quotes")
    # the fleet route list in the template must be the one this module knows
    route = re.search(r"\^/v1/fleet/\(([^)]*)\)\$", text)
    if route is None or tuple(route.group(1).split("|")) != FLEET_METHODS:
        raise ValueError(f"{template}: its /v1/fleet/ route does not list exactly {FLEET_METHODS}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def write_config(
    prefix: Path,
    *,
    listen: str,
    superlink: str,
    tls: certificates.TlsFiles,
    superlink_name: str = "localhost",
    daemon: bool = True,
    template: Path = TEMPLATE,
) -> Path:
    """Render the proxy's configuration into ``prefix/fleet-proxy.conf`` and make its folders.

    Args:
        prefix: The nginx instance's own folder (pid file, logs, temporary files, the configuration).
        listen: ``host:port`` (or a port) the sites connect to.
        superlink: ``host:port`` of the SuperLink, normally ``127.0.0.1:<port>``.
        tls: The SuperLink's CA, certificate and key (``certificates.make_server_certificate``); the
            proxy presents the same certificate and checks the SuperLink's against the CA.
        superlink_name: The name the proxy checks the SuperLink's certificate for (in its SAN).
        daemon: ``False`` keeps nginx in the foreground (a process to wait on and stop).
        template: The configuration template.
    """
    prefix = Path(prefix).resolve()
    for name in _TEMP_DIRS:
        (prefix / name).mkdir(parents=True, exist_ok=True)
    values = {
        "prefix": str(prefix), "listen": str(listen), "superlink": superlink,
        "superlink_name": superlink_name, "certificate": str(Path(tls.cert).resolve()),
        "certificate_key": str(Path(tls.key).resolve()), "ca_certificate": str(Path(tls.ca).resolve()),
        "daemon": "on" if daemon else "off",
    }  # fmt: skip
    path = prefix / CONFIG_NAME
    path.write_text(render(values, template), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fedjax_rhd.federation.flower.fleet_proxy render ...``."""
    parser = argparse.ArgumentParser(description="An nginx proxy that exposes only a SuperLink's Fleet API.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("render", help="write <prefix>/fleet-proxy.conf for `nginx -p <prefix> -c ...`")
    cmd.add_argument("--listen", required=True, help="host:port the sites connect to, e.g. 0.0.0.0:9092")
    cmd.add_argument("--superlink", required=True, help="the SuperLink's own host:port, e.g. 127.0.0.1:9091")
    cmd.add_argument("--tls", type=Path, required=True, help="the folder of ca.crt, server.pem, server.key")
    cmd.add_argument("--prefix", type=Path, required=True, help="the nginx instance's folder")
    cmd.add_argument("--superlink-name", default="localhost", help="a name in the SuperLink certificate")
    args = parser.parse_args(argv)
    tls = certificates.TlsFiles(
        args.tls / certificates.CA_CERT,
        args.tls / certificates.SERVER_CERT,
        args.tls / certificates.SERVER_KEY,
    )
    try:
        for path in (tls.ca, tls.cert, tls.key):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: not found (make it with fedjax_rhd.federation.flower.certificates)"
                )
        print(
            write_config(
                args.prefix,
                listen=args.listen,
                superlink=args.superlink,
                tls=tls,
                superlink_name=args.superlink_name,
            )
        )
    except (OSError, ValueError) as err:
        print(f"fleet_proxy: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
