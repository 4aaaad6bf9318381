"""Janus 1.1 as the C reference SFU: a private config, one plugin and HTTP only, in a lab.

``start_janus(…)`` (plugin "streaming", the default): the mountpoint is declared in the
Streaming plugin's config (an RTP VP8 input on a UDP port of 127.0.0.1); viewers use the HTTP
API on 127.0.0.1. ``plugin="videoroom"``: one VideoRoom room (VP8 only, no recording) for a
WebRTC publisher, plus the Admin API on 127.0.0.1, read once a measurement is over to see
what Janus received (``handle_info``). Every other plugin stays disabled either way.

libnice never gathers loopback candidates (``ice_enforce_list = "lo"`` yields none), and the
host's own interface addresses are off limits to a benchmark, so Janus runs in a lab
(``bench.lab``): a network namespace of the benchmark's own whose one interface, at the
lab's 10.N.0.1, is all Janus may gather on (``ice_enforce_list``). Its 127.0.0.1 is the
namespace's loopback: everything that talks to Janus (the publisher feeding it, its viewers)
runs in the lab too, and its peers gather on the lab's address. Nothing outside talks to
Janus: ``start_janus`` waits for its HTTP port to listen by reading the namespace's TCP table
(``/proc/PID/net/tcp``). Janus is installed with ``apt-get install -y janus`` when missing
(``ensure_janus``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port, spawn
from bench.lab import Lab, tcp_listening

MOUNTPOINT = 1
ROOM = 1
PLUGINS = ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "streaming", "textroom",
           "videocall", "videoroom", "voicemail")
# Above the clip's ~490 kbps even at the first REMB of Janus's ramp-up (a quarter of this):
# Janus sends REMB only with a cap, and the hub sends REMB too, so the cap is kept, never binding.
VIDEOROOM_BITRATE = 4_000_000


@dataclass
class RunningJanus:
    proc: asyncio.subprocess.Process
    url: str  # the HTTP API, on the lab's loopback: for processes in the lab only
    rtp_port: int | None = None  # the Streaming mountpoint's RTP input
    admin_url: str | None = None  # the Admin API (VideoRoom only)


def disabled_plugins(used: str) -> str:
    """Every plugin but ``used``: fewer threads and sockets competing with the relay being measured."""
    return ",".join(f"libjanus_{name}.so" for name in PLUGINS if name != used)


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


def write_config(folder: Path, http_port: int, plugin: str, plugin_config: str, lab_address: str,
                 admin_port: int | None = None) -> None:
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
    interface = "{lab_address}"  # for the SDP: the lab has no default route to guess one from
}}
media: {{
    rtp_port_range = "30000-39999"
}}
nat: {{
    nice_debug = false
    ignore_mdns = true
    ice_enforce_list = "{lab_address}"  # the lab's address, no other
}}
plugins: {{
    disable = "{disabled_plugins(plugin)}"
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
    {admin_section(admin_port)}
}}
""")
    (folder / f"janus.plugin.{plugin}.jcfg").write_text(plugin_config)


def admin_section(port: int | None) -> str:
    if port is None:
        return "admin_http = false"
    return f'admin_http = true\n    admin_port = {port}\n    admin_ip = "127.0.0.1"\n    admin_base_path = "/admin"'


def streaming_config(rtp_port: int) -> str:
    return f"""
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
"""


def videoroom_config() -> str:
    # fir_freq = 0: no periodic FIR/PLI (the hub asks for keyframes only when it needs one)
    return f"""
general: {{
}}
room-{ROOM}: {{
    description = "bench clip"
    publishers = 1
    bitrate = {VIDEOROOM_BITRATE}
    fir_freq = 0
    videocodec = "vp8"
    record = false
}}
"""


async def start_janus(binary: str, workdir: Path, lab: Lab, plugin: str = "streaming") -> RunningJanus:
    """Janus in ``lab`` with ``plugin`` alone: "streaming" (one RTP mountpoint) or "videoroom"
    (one room). The ports are free on the host's loopback, so in the new namespace too."""
    http_port = free_port()
    folder = workdir / "janus"
    rtp_port = admin_port = None
    if plugin == "streaming":
        rtp_port = free_port(socket.SOCK_DGRAM)
        write_config(folder, http_port, plugin, streaming_config(rtp_port), lab.address)
    else:
        admin_port = free_port()
        write_config(folder, http_port, plugin, videoroom_config(), lab.address, admin_port)
    proc = await spawn(binary, "-F", str(folder), "-C", str(folder / "janus.jcfg"), "-o",
                       log=workdir / "janus.log", netns=lab.netns)
    await wait_listening(proc, [p for p in (http_port, admin_port) if p is not None], workdir)
    if os.path.realpath(f"/proc/{proc.pid}/exe") != os.path.realpath(binary):
        raise RuntimeError(f"pid {proc.pid} is not Janus: its CPU would not be Janus's")
    admin_url = f"http://127.0.0.1:{admin_port}/admin" if admin_port else None
    return RunningJanus(proc, f"http://127.0.0.1:{http_port}/janus", rtp_port, admin_url)


async def wait_listening(proc: asyncio.subprocess.Process, ports: list[int], workdir: Path) -> None:
    """Until Janus listens on its HTTP ``ports``: it starts its transports after its plugins,
    so the mountpoint or the room exists by then."""
    for _ in range(100):
        if proc.returncode is not None:
            raise RuntimeError(f"janus exited: see {workdir / 'janus.log'}")
        if all(tcp_listening(proc.pid, port) for port in ports):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"janus did not listen on {ports}: see {workdir / 'janus.log'}")
