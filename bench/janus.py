"""Janus 1.1 as the C reference SFU: a private config, the Streaming plugin and HTTP only.

The mountpoint is declared in the Streaming plugin's config (an RTP VP8 input on a UDP port
of 127.0.0.1); viewers use the HTTP API on 127.0.0.1. libnice never gathers loopback
candidates (``ice_enforce_list = "lo"`` yields none), so Janus announces the host's own
interface addresses and the viewers answer with theirs: the kernel delivers that traffic
locally, nothing leaves the machine.
Janus is installed with ``apt-get install -y janus`` when missing (``ensure_janus``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

from bench.common import free_port, spawn

MOUNTPOINT = 1
# Every plugin but Streaming: fewer threads and sockets competing with the relay being measured.
UNUSED_PLUGINS = ",".join(f"libjanus_{name}.so" for name in (
    "audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "textroom", "videocall", "videoroom",
    "voicemail"))


def ensure_janus(install: bool = True) -> str | None:
    """Path of the janus binary, installing the Debian package if allowed; None if absent."""
    found = shutil.which("janus")
    if found or not install:
        return found
    try:
        subprocess.run(["apt-get", "install", "-y", "janus"], check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return shutil.which("janus")


def write_config(folder: Path, http_port: int, rtp_port: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{folder}"
    plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
    events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
    loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
    debug_level = 3
    session_timeout = 0
}}
media: {{
    rtp_port_range = "30000-39999"
}}
nat: {{
    nice_debug = false
    ignore_mdns = true
}}
plugins: {{
    disable = "{UNUSED_PLUGINS}"
}}
transports: {{
    disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}}
events: {{
    broadcast = false
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""
general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
""")
    (folder / "janus.plugin.streaming.jcfg").write_text(f"""
general: {{
}}
bench: {{
    type = "rtp"
    id = {MOUNTPOINT}
    description = "bench clip"
    media = (
        {{ type = "video"; mid = "v"; label = "video"; port = {rtp_port}; pt = 96; codec = "vp8" }}
    )
}}
""")


async def start_janus(binary: str, workdir: Path) -> tuple[asyncio.subprocess.Process, str, int]:
    import httpx

    http_port, rtp_port = free_port(), free_port(socket.SOCK_DGRAM)
    folder = workdir / "janus"
    write_config(folder, http_port, rtp_port)
    proc = await spawn(binary, "-F", str(folder), "-C", str(folder / "janus.jcfg"), "-o",
                       log=workdir / "janus.log")
    url = f"http://127.0.0.1:{http_port}/janus"
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(100):
            if proc.returncode is not None:
                raise RuntimeError(f"janus exited: see {workdir / 'janus.log'}")
            try:
                if (await http.get(url + "/info")).status_code == 200:
                    return proc, url, rtp_port
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"janus did not answer on {url}")
