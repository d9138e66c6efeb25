"""HTTPS served by `triggerhub up --tls-cert/--tls-key`: a private CA made here with the openssl CLI,
the CLI and the manifest client verifying against it, webhooks over TLS, certificate reloading,
and no plain HTTP on the TLS port."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.plugins.cli import HubProcess, free_port
from tests.plugins.services import PROJECT_ROOT
from tests.plugins.tls import Pair, issue, make_ca
from triggerhub import errors
from triggerhub.api.tls import ReloadingCertificate, tls_paths
from triggerhub.config import load_config
from triggerhub.manifests.client import ClientTls, HttpWhiskClient

RELOAD_TIMEOUT_S = 10.0
TOKEN = "tls-webhook-token"


def der(pem_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


@dataclass
class TlsHub:
    hub: HubProcess
    ca: Pair
    served: Pair  # the files the hub was started with (replaced in place by the reload test)
    folder: Path

    def peer_certificate(self) -> bytes:
        """The DER certificate a new connection is served (verified against the test CA)."""
        context = ssl.create_default_context(cafile=self.ca.cert)
        with socket.create_connection(("127.0.0.1", self.hub.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return bytes(tls.getpeercert(binary_form=True) or b"")


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsHub]:
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder, "test-ca")
    served = issue(folder, ca, "hub")
    hub = HubProcess(folder / "home", free_port(), ["--tls-cert", str(served.cert), "--tls-key", str(served.key)],
                     cacert=ca.cert)
    hub.home.mkdir()
    hub.start()
    try:
        yield TlsHub(hub, ca, served, folder)
    finally:
        hub.stop()


def unverified_line(port: int) -> str:
    return (f"error: cannot verify the TLS certificate of 127.0.0.1:{port} (unable to get local issuer certificate): "
            "pass --cacert FILE (or set TRIGGERHUB_CACERT) with the CA that signed it, or -i/--insecure to skip "
            "verification\n")


def test_cli_verifies_the_certificate_against_cacert(tls_hub: TlsHub, tmp_path: Path) -> None:
    hub = tls_hub.hub
    source = tmp_path / "hello.js"
    source.write_text("function main() { return {hello: 'tls'}; }\n")
    created = hub.cli("--cacert", str(tls_hub.ca.cert), "action", "create", "hello", str(source))
    assert created.stdout.strip() == "ok: created action hello"
    invoked = hub.cli("--cacert", str(tls_hub.ca.cert), "action", "invoke", "hello", "--result")
    assert invoked.stdout.strip() == '{"hello": "tls"}'

    refused = hub.cli("action", "invoke", "hello", "--result", check=False)
    assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", unverified_line(hub.port))

    insecure = hub.cli("-i", "action", "invoke", "hello", "--result", check=False)
    assert insecure.returncode == 0, insecure.stderr
    assert insecure.stdout.strip() == '{"hello": "tls"}'
    assert insecure.stderr == ("warning: --insecure: the hub's TLS certificate is not verified; anyone on the path "
                               "can read and change this session, credentials included\n")


def test_deploy_verifies_the_certificate(tls_hub: TlsHub) -> None:
    hub = tls_hub.hub
    manifest = PROJECT_ROOT / "tests" / "fixtures" / "manifests" / "02_inline_code.yaml"
    target = ("deploy", "-m", str(manifest), "--apihost", hub.apihost, "--auth", hub.auth)
    refused = hub.cli(*target, check=False)
    assert (refused.returncode, refused.stderr) == (1, unverified_line(hub.port))
    deployed = hub.cli("--cacert", str(tls_hub.ca.cert), *target)
    assert deployed.returncode == 0, deployed.stderr
    invoked = hub.cli("--cacert", str(tls_hub.ca.cert), "action", "invoke", "inline/greet", "-p", "name", "tls", "--result")
    assert invoked.stdout.strip() == '{"msg": "hi tls"}'


def test_client_trust_comes_from_flags_then_environment() -> None:
    env = {"TRIGGERHUB_CACERT": "/env/ca.pem", "TRIGGERHUB_INSECURE": "true"}
    assert ClientTls.from_settings(env=env) == ClientTls(cacert="/env/ca.pem", insecure=True)
    assert ClientTls.from_settings(cacert="/flag/ca.pem", insecure=False, env=env) == ClientTls("/flag/ca.pem", False)
    assert ClientTls.from_settings(env={}) == ClientTls(cacert=None, insecure=False)


async def test_manifest_client_verifies_the_certificate(tls_hub: TlsHub) -> None:
    hub = tls_hub.hub
    async with HttpWhiskClient(hub.apihost, hub.auth, trust=ClientTls(cacert=str(tls_hub.ca.cert))) as client:
        assert await client.get("/namespaces") == ["guest"]
    with pytest.raises(errors.Unavailable) as refused:
        async with HttpWhiskClient(hub.apihost, hub.auth, trust=ClientTls()) as client:
            await client.get("/namespaces")
    assert str(refused.value) == unverified_line(hub.port).removeprefix("error: ").rstrip("\n")


async def test_webhook_delivery_over_https_is_accepted(tls_hub: TlsHub) -> None:
    hub = tls_hub.hub
    context = ssl.create_default_context(cafile=tls_hub.ca.cert)
    headers = {"Authorization": "Basic " + base64.b64encode(hub.auth.encode()).decode()}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=headers) as session:
        api = f"{hub.apihost}/api/v1/namespaces"
        async with session.put(f"{api}/_/actions/echo", json={"exec": {"kind": "python:default", "code": "def main(args):\n    return args\n"}}) as response:
            assert response.status == 200, await response.text()
        async with session.put(f"{api}/_/triggers/pushed", json={"annotations": [{"key": "feed", "value": "/whisk.system/webhook/webhook"}]}) as response:
            assert response.status == 200, await response.text()
        async with session.post(f"{api}/whisk.system/actions/webhook/webhook?blocking=true", json={
                "lifecycleEvent": "CREATE", "triggerName": "/_/pushed", "authKey": hub.auth, "verify": "token",
                "secret": TOKEN}) as response:
            assert response.status == 200, await response.text()
        async with session.put(f"{api}/_/rules/on-pushed", json={"trigger": "pushed", "action": "echo"}) as response:
            assert response.status == 200, await response.text()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as anonymous:
            async with anonymous.post(f"{hub.apihost}/hooks/guest/pushed", json={"over": "tls"},
                                      headers={"X-Webhook-Token": TOKEN}) as response:
                assert response.status == 202, await response.text()
        async with asyncio.timeout(20):
            while True:
                async with session.get(f"{api}/_/activations", params={"name": "echo", "docs": "true"}) as response:
                    listing = await response.json()
                if listing:
                    break
                await asyncio.sleep(0.05)
    assert len(listing) == 1
    assert listing[0]["response"]["result"]["over"] == "tls"


async def test_web_action_over_https(tls_hub: TlsHub) -> None:
    hub = tls_hub.hub
    context = ssl.create_default_context(cafile=tls_hub.ca.cert)
    headers = {"Authorization": "Basic " + base64.b64encode(hub.auth.encode()).decode()}
    web = [{"key": "web-export", "value": True}]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.put(f"{hub.apihost}/api/v1/namespaces/_/actions/page", headers=headers, json={
                "exec": {"kind": "python:default", "code": "def main(args):\n    return {'scheme': 'tls', 'n': args.get('n')}\n"},
                "annotations": web}) as response:
            assert response.status == 200, await response.text()
        async with session.get(f"{hub.apihost}/api/v1/web/guest/default/page.json", params={"n": "7"}) as response:
            assert response.status == 200, await response.text()
            assert await response.json() == {"scheme": "tls", "n": "7"}


def test_replaced_certificate_reaches_new_connections_without_restart(tls_hub: TlsHub) -> None:
    assert tls_hub.peer_certificate() == der(tls_hub.served.cert)
    renewed = issue(tls_hub.folder, tls_hub.ca, "hub-renewed")
    pid = tls_hub.hub.process.pid if tls_hub.hub.process else None
    # Overwritten in place, key first: for a moment the pair does not match, and the hub must keep
    # serving the old certificate until the new one is complete.
    tls_hub.served.key.write_bytes(renewed.key.read_bytes())
    assert tls_hub.peer_certificate() == der(tls_hub.served.cert)
    tls_hub.served.cert.write_bytes(renewed.cert.read_bytes())
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while (seen := tls_hub.peer_certificate()) != der(renewed.cert) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == der(renewed.cert)
    assert tls_hub.hub.process is not None and tls_hub.hub.process.pid == pid and tls_hub.hub.process.poll() is None


def test_plain_http_to_the_tls_port_is_not_served(tls_hub: TlsHub) -> None:
    with socket.create_connection(("127.0.0.1", tls_hub.hub.port), timeout=5) as raw:
        raw.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
    assert not received.startswith(b"HTTP/"), received
    assert b"pong" not in received


def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    config = load_config(env={"TRIGGERHUB_TLS_CERT": str(tmp_path / "hub.crt")})
    with pytest.raises(errors.ConfigError) as one_missing:
        tls_paths(config.api)
    assert str(one_missing.value) == ("TRIGGERHUB_TLS_CERT is set but TRIGGERHUB_TLS_KEY is not: HTTPS needs both the "
                                      "certificate chain and its private key (flags --tls-cert and --tls-key)")
    ca = make_ca(tmp_path, "ca")
    other = make_ca(tmp_path, "other")
    with pytest.raises(errors.ConfigError) as mismatched:
        ReloadingCertificate(ca.cert, other.key)
    assert str(mismatched.value).startswith(f"cannot load the TLS certificate {ca.cert} with the key {other.key}: ")
    assert str(mismatched.value).endswith("; give a PEM certificate chain and the PEM private key that matches it")


@pytest.mark.kafka
@pytest.mark.postgres
def test_distributed_controller_serves_https(deployment, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    served = issue(tmp_path, ca, "controller")
    controller = deployment.start("controller", extra_env={"TRIGGERHUB_TLS_CERT": str(served.cert),
                                                           "TRIGGERHUB_TLS_KEY": str(served.key)})
    assert controller.ready_line.startswith("triggerhub controller listening on https://127.0.0.1:")
    apihost = controller.ready_line.rsplit(" ", 1)[-1]
    context = ssl.create_default_context(cafile=ca.cert)
    with urllib.request.urlopen(f"{apihost}/ping", timeout=10, context=context) as response:
        assert (response.status, response.read()) == (200, b"pong")
