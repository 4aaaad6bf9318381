"""The shipped nginx configuration itself, in front of a real hub: TLS with HTTP/2, the
redirect from plain HTTP, headers (the hub's own kept, HSTS added), WHIP/WHEP answers and
preflights passed unchanged, request bodies as the hub limits them."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import httpx

from tests.kit import timeout
from tests.proxy.conftest import Proxied
from tests.proxy.tls import SERVER_ADDRESS, Tls

STATION = "35.09.01.2001"
ICE = "stun:stun.jaga.test:3478"  # announced in Link headers only: no peer connection here


def alpn(tls: Tls, port: int) -> str | None:
    """The protocol a client offering h2 and http/1.1 gets, after verifying with the CA."""
    context = tls.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((SERVER_ADDRESS, port), timeout=timeout(5)) as raw, \
            context.wrap_socket(raw, server_hostname=SERVER_ADDRESS) as wrapped:
        return wrapped.selected_alpn_protocol()


async def test_tls_http2_redirect_and_headers(proxied: Callable[..., Awaitable[Proxied]], tls: Tls) -> None:
    deployment = await proxied(media={"ice_servers": [ICE]})
    nginx = deployment.nginx
    checked = subprocess.run(nginx.command("-t", "-q"), capture_output=True, text=True, timeout=timeout(20))
    assert checked.returncode == 0 and "warn" not in checked.stderr, checked.stderr
    assert await asyncio.to_thread(alpn, tls, nginx.https_port) == "h2"

    async with httpx.AsyncClient(base_url=deployment.url, verify=tls.client_context()) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.http_version == "HTTP/1.1"
        assert page.headers["strict-transport-security"] == "max-age=31536000"
        assert "default-src 'self'" in page.headers["content-security-policy"]  # the hub's, untouched
        assert page.headers.get_list("content-security-policy") == [page.headers["content-security-policy"]]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        assert page.headers["server"] == "nginx"  # no version (server_tokens off)
        assert (await http.get("/healthz")).json() is not None

        # WHIP/WHEP preflight and errors come from the hub, every header kept.
        preflight = await http.options(f"/whep/{STATION}")
        assert preflight.status_code == 204
        assert preflight.headers["link"] == f'<{ICE}>; rel="ice-server"'
        assert preflight.headers["accept-post"] == "application/sdp"
        assert "ETag" in preflight.headers["access-control-expose-headers"]

        # Bodies: the hub's own limit answers (413 from the hub, JSON), not nginx's page.
        big_offer = "v=0\r\n" + "a=x\r\n" * 5000
        refused = await http.post(f"/whep/{STATION}", content=big_offer, headers={"Content-Type": "application/sdp"})
        assert refused.status_code == 413 and refused.json()["error"]["code"]

    async with httpx.AsyncClient() as plain:
        moved = await plain.get(f"http://{SERVER_ADDRESS}:{nginx.http_port}/wall?x=1")
    assert moved.status_code == 301 and moved.headers["location"] == f"https://{SERVER_ADDRESS}/wall?x=1"

    # The certificate really is checked: without the CA, no connection.
    async with httpx.AsyncClient(base_url=deployment.url, verify=ssl.create_default_context()) as stranger:
        try:
            await stranger.get("/healthz")
            raise AssertionError("a client without the CA connected")
        except httpx.ConnectError as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
