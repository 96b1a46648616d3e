"""The nginx proxy of docs/deployment.md §6 passes the Fleet API and refuses the Control API.

The route list is checked against the installed flwr (cheap); the proxy itself runs in front of a
real TLS SuperLink with node authentication, where nginx is installed (``FEDJAX_RHD_CI_NGINX=1 .ci/run``
installs it where it can): a Control API call through the proxy is refused while the same call straight to the
SuperLink is answered, and a registered SuperNode that connects through the proxy is activated.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fedjax_rhd.federation.flower import certificates, fleet_proxy
from fedjax_rhd.federation.flower.processes import ACTIVATED, LocalDeployment, NodeLaunch, free_port

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _source(module: str) -> str:
    """An installed flwr module's source, read without importing anything of flwr (its packages import
    all of FastAPI: seconds)."""
    spec = importlib.util.find_spec("flwr")  # a top-level package: found, not imported
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    return path.read_text(encoding="utf-8")


def test_fleet_methods_are_the_installed_flowers_fleet_routes():
    router = _source("flwr.superlink.routers.fleet.router")
    assert 'prefix="/v1/fleet"' in router
    routes = re.findall(r'@router\.(\w+)\("/([^"]+)"', router)
    assert routes == [("post", m) for m in fleet_proxy.FLEET_METHODS]
    # what a SuperNode calls is among them (flwr/supernode/fleet_http_client.py)
    called = set(re.findall(r'path="(/v1/[^"]+)"', _source("flwr.supernode.fleet_http_client")))
    assert called and called <= {f"/v1/fleet/{m}" for m in fleet_proxy.FLEET_METHODS}
    # and the Control API sits on the same server under its own prefix (flwr/superlink/main.py)
    assert 'prefix="/v1/control"' in _source("flwr.superlink.routers.control.router")


def test_render_fills_every_placeholder_and_refuses_bad_values(tmp_path):
    tls = certificates.TlsFiles(tmp_path / "ca.crt", tmp_path / "server.pem", tmp_path / "server.key")
    path = fleet_proxy.write_config(tmp_path / "nginx", listen="9092", superlink="127.0.0.1:9091", tls=tls)
    text = path.read_text()
    assert "{{" not in text and "proxy_pass https://superlink;" in text and "server 127.0.0.1:9091;" in text
    with pytest.raises(ValueError, match="whitespace"):
        fleet_proxy.write_config(tmp_path / "n2", listen="9092; evil", superlink="127.0.0.1:1", tls=tls)
    with pytest.raises(ValueError, match="no value"):
        fleet_proxy.render({"listen": "1"})


def _post(url: str, ca: Path) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(ca))
    return httpx.post(url, content=b"", verify=context, timeout=20.0)


@pytest.mark.slow  # a SuperLink, two SuperNodes and nginx: about a minute on 2 cores
@pytest.mark.skipif(NGINX is None, reason="no nginx (FEDJAX_RHD_CI_NGINX=1 .ci/run installs it)")
def test_through_the_proxy_control_is_refused_and_a_supernode_is_served(tmp_path):
    deployment = LocalDeployment(tmp_path / "run", [NodeLaunch(0, 1, tmp_path / "node0")])
    (tmp_path / "node0").mkdir()
    with deployment:
        port = free_port()
        conf = fleet_proxy.write_config(
            tmp_path / "nginx", listen=f"127.0.0.1:{port}", superlink=deployment.superlink_address,
            tls=deployment.tls, daemon=False,
        )  # fmt: skip
        nginx = subprocess.Popen([NGINX, "-p", str(conf.parent), "-c", str(conf)], stderr=subprocess.PIPE)
        supernode = None
        try:
            deadline = time.monotonic() + 20
            while True:  # until nginx accepts TLS on its port
                try:
                    refused = _post(f"https://127.0.0.1:{port}/v1/control/list-runs", deployment.tls.ca)
                    break
                except httpx.TransportError:
                    assert nginx.poll() is None, nginx.stderr.read().decode()
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.1)
            assert refused.status_code == 403
            for path in (
                "/v1/control/start-run",
                "/v1/control/register-node",
                "/v1/runtime/get-nodes",
                "/docs",
            ):
                assert _post(f"https://127.0.0.1:{port}{path}", deployment.tls.ca).status_code == 403, path
            # the same Control call straight to the SuperLink is answered by Flower (not refused)
            direct = _post(f"https://{deployment.superlink_address}/v1/control/list-runs", deployment.tls.ca)
            assert direct.status_code != 403
            # a registered SuperNode that knows only the proxy's address is activated through it
            key, public = certificates.make_node_key(tmp_path / "proxied")
            node_id = certificates.register(
                deployment.superlink_address, deployment.tls.ca, public, "proxied"
            )
            log = tmp_path / "proxied.log"
            with log.open("wb") as out:
                supernode = subprocess.Popen(
                    [shutil.which("flower-supernode", path=deployment.env["PATH"]), "--superlink",
                     f"127.0.0.1:{port}", "--port", str(free_port()), "--root-certificates",
                     str(deployment.tls.ca), "--auth-supernode-private-key", str(key)],
                    env=deployment.env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            deadline = time.monotonic() + 60
            while ACTIVATED not in log.read_text(errors="replace"):
                assert supernode.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "the proxied SuperNode was not activated"
                time.sleep(0.2)
            assert node_id in deployment.online_nodes()
            access = (conf.parent / "access.log").read_text()
            assert (
                "POST /v1/fleet/activate-node" in access
                and 'POST /v1/control/list-runs HTTP/1.1" 403' in access
            )
        finally:
            if supernode is not None and supernode.poll() is None:
                supernode.send_signal(signal.SIGTERM)
                try:
                    supernode.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    supernode.kill()
            nginx.send_signal(signal.SIGQUIT)  # graceful stop of a foreground nginx
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
