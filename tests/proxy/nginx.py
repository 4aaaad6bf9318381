"""The shipped ``deploy/nginx/jaga.conf``, rendered with a test's values and run by a real nginx.

:func:`render` fills the file's ``@NAME@`` placeholders exactly as its header tells an
operator to (plain substitution), and fails if the file has a placeholder the test does not
know or if one is left: the test runs the shipped file, never a copy. :class:`Nginx` wraps it
in the smallest main configuration (pid, logs and temp folders in the test's folder, the file
``include``d inside ``http { }`` as Debian's nginx.conf includes sites-enabled/) and runs
``nginx -p DIR -c DIR/nginx.conf -e DIR/error.log -g 'daemon off; pid …;'`` on free ports of
127.0.0.1 (HTTPS and the plain-HTTP redirect), chosen by binding port 0.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.kit import REPO, free_port, timeout, wait_until
from tests.proxy.tls import SERVER_ADDRESS, Tls

SHIPPED = REPO / "deploy" / "nginx" / "jaga.conf"
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def require_nginx() -> str:
    if NGINX is not None:
        return NGINX
    message = "nginx is not installed (Debian: nginx-light)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def render(values: Mapping[str, str]) -> str:
    """The shipped file with ``@NAME@`` replaced by ``values[NAME]``; every placeholder of
    the file must be given, and only those."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert set(PLACEHOLDER.findall(text)) == {f"@{name}@" for name in values}, "placeholders changed"
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((SERVER_ADDRESS, port)) == 0


class Nginx:
    """nginx from ``deploy/nginx/jaga.conf`` in front of the hub at ``127.0.0.1:hub_port``."""

    def __init__(self, home: Path, tls: Tls, hub_port: int) -> None:
        self.home = home
        self.tls = tls
        self.hub_port = hub_port
        self.https_port = 0
        self.http_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What browsers and agents use: ``hub.public_url``, the agent's ``hub``."""
        return f"https://{SERVER_ADDRESS}:{self.https_port}"

    @property
    def wss(self) -> str:
        return f"wss://{SERVER_ADDRESS}:{self.https_port}"

    @property
    def error_log(self) -> Path:
        return self.home / "error.log"

    def values(self) -> dict[str, str]:
        return {"SERVER_NAME": SERVER_ADDRESS, "HTTPS_LISTEN": f"{SERVER_ADDRESS}:{self.https_port}",
                "HTTP_LISTEN": f"{SERVER_ADDRESS}:{self.http_port}", "TLS_CERTIFICATE": str(self.tls.certificate),
                "TLS_CERTIFICATE_KEY": str(self.tls.key), "HUB_UPSTREAM": f"127.0.0.1:{self.hub_port}",
                "HLS_CACHE_DIR": str(self.home / "hls-cache")}

    def _write(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "jaga.conf").write_text(render(self.values()), encoding="utf-8")
        temp = "\n".join(f"    {kind}_temp_path {self.home / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = self.home / "nginx.conf"
        # As root, nginx's workers would run as `nobody`, who cannot enter the test's 0700
        # temp folders to write the HLS cache: workers as root here (as the user otherwise).
        user = "user root;\n" if os.geteuid() == 0 else ""
        main.write_text(f"""{user}worker_processes 1;
events {{ worker_connections 512; }}
http {{
    access_log {self.home / "access.log"};
{temp}
    include {self.home / "jaga.conf"};
}}
""", encoding="utf-8")
        return main

    def command(self, *extra: str) -> list[str]:
        return [require_nginx(), "-p", str(self.home), "-c", str(self.home / "nginx.conf"), "-e", str(self.error_log),
                *extra]

    async def start(self) -> None:
        """Start on fresh free ports; a port taken between the probe and nginx's bind: again."""
        for _ in range(5):
            self.https_port, self.http_port = free_port(SERVER_ADDRESS), free_port(SERVER_ADDRESS)
            self._write()
            self.process = subprocess.Popen(
                self.command("-g", f"daemon off; pid {self.home / 'nginx.pid'};"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # its messages: error.log

            def up_or_gone(process: subprocess.Popen[bytes] = self.process) -> bool:
                return process.poll() is not None or (_listens(self.https_port) and _listens(self.http_port))

            await wait_until(up_or_gone, timeout=10, message="nginx to listen", every=0.02)
            if self.process.poll() is None:
                return
        raise RuntimeError(f"nginx did not start: {self.log_text()}")

    def log_text(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown, open WebSockets included
            self.process.wait(timeout(10))
