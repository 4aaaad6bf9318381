"""Join latency: a WHEP viewer's request → its first decoded frame; a dead station → `offline`.

1. **Viewer join.** A live aiortc publisher (640×360 @ 15 fps test pattern, aiortc's own VP8
   encoder, so it answers the hub's PLI with a keyframe) publishes one station over WHIP in
   its own process. Then, one after another, ``--joins`` viewers each create a peer
   connection, POST the WHEP offer, and decode until the first picture; the time from
   creating the offer to that picture is one join (phases: HTTP answer, ICE+DTLS connected,
   first frame). The viewer closes and the next one starts ``--gap`` s later (default 0.6 s,
   longer than the hub's 0.5 s between keyframe requests: independent joins; 0.1 s makes each
   join's keyframe request fall inside that interval, i.e. a join storm).
   The hub's CPU per join (``threads_cpu_ns`` over the joins, less what the publisher alone
   costs it, read over ``BASELINE_S`` before): the offer, ICE, the DTLS handshake, forwarding
   until the first picture, the close. It sets how many joins a second a busy hub can take
   (``media.public_joins_per_s``).
2. **Presence latency.** Stations (heartbeat ``hb_s``, timeout ``timeout_s``) and one
   watcher; a handful of station sockets are **killed** (TCP reset, no close frame: a
   crashed agent) and a handful go **silent** (socket left open, no more messages: a cut
   link). For each, the time from the kill to the watcher's ``reconnecting`` and
   ``offline`` events, on one clock. The goal is ``offline`` within timeout_s + 1 s.

    python -m bench.join_latency [--joins 50] [--hb-s 1 --timeout-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgpack

from bench.common import (
    Worker,
    fmt,
    install_cleanup,
    log,
    mint_tokens,
    percentile,
    start_hub,
    stop,
    summary,
    temp_dir,
    threads_cpu_ns,
    write_result,
)
from bench.media_peers import CountingViewer

STATION = "35.09.01.2001"
BASELINE_S = 5.0  # the hub with the publisher alone, read before the joins


async def viewer_joins(base: str, joins: int, gap: float) -> list[dict[str, float]]:
    out = []
    for i in range(joins):
        t0 = time.monotonic()
        viewer = CountingViewer(decode=True)
        try:
            await viewer.whep(base, STATION)
            answered = time.monotonic()
            while viewer.pc.connectionState != "connected":
                if viewer.pc.connectionState in ("failed", "closed") or time.monotonic() - t0 > 20:
                    raise RuntimeError(f"join {i}: {viewer.pc.connectionState}")
                await asyncio.sleep(0.002)
            connected = time.monotonic()
            await asyncio.wait_for(viewer.first.wait(), 20)
            assert viewer.first_frame_at is not None
            out.append({"answer_ms": (answered - t0) * 1e3, "connected_ms": (connected - t0) * 1e3,
                        "first_frame_ms": (viewer.first_frame_at - t0) * 1e3})
        except Exception as exc:
            log(f"join {i} failed: {exc!r}")
            out.append({"failed": 1.0})
        finally:
            await viewer.close()
        await asyncio.sleep(gap)  # the hub ends the old session on DTLS close
    return out


async def hub_cpu_per_join(pid: int, joining: Any) -> dict[str, Any]:
    """Run ``joining`` (``viewer_joins``); the hub's CPU per join, less its rate before them."""
    a, t0 = threads_cpu_ns(pid), time.monotonic()
    await asyncio.sleep(BASELINE_S)
    b, t1 = threads_cpu_ns(pid), time.monotonic()
    joins = await joining
    c, t2 = threads_cpu_ns(pid), time.monotonic()
    same_threads = a[1] == b[1] == c[1]  # a thread that ended took its time with it
    baseline_per_s = (b[0] - a[0]) / 1e6 / (t1 - t0)
    during_ms = (c[0] - b[0]) / 1e6
    done = sum("failed" not in j for j in joins)
    per_join = (during_ms - baseline_per_s * (t2 - t1)) / done if done and same_threads else None
    return {"joins": joins, "per_join": per_join, "baseline_per_s": baseline_per_s, "during_ms": during_ms,
            "seconds": t2 - t1}


async def presence(port: int, tokens: dict[str, str], kill: list[str], silent: list[str]) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    url = f"ws://127.0.0.1:{port}/ws"
    msgpack_only = [Subprotocol("jaga.v1.msgpack")]
    seen: dict[tuple[str, str], float] = {}
    watcher = await connect(f"{url}/watch", subprotocols=msgpack_only, compression=None)

    async def watch() -> None:
        async for frame in watcher:
            message = msgpack.unpackb(frame)
            if message.get("t") == "presence":
                seen.setdefault((message["id"], message["state"]), time.time())

    watching = asyncio.ensure_future(watch())
    stations = {}
    beats: dict[str, asyncio.Task[Any]] = {}

    async def beat(sid: str, conn: Any) -> None:
        while True:
            await conn.send(msgpack.packb({"t": "hb", "camera": "ok"}))
            await asyncio.sleep(hb_s)

    async def drain(conn: Any) -> None:
        try:
            async for _ in conn:
                pass
        except Exception:
            pass

    drains = []
    for sid in kill + silent:
        conn = await connect(f"{url}/station", subprotocols=msgpack_only, compression=None, ping_interval=None)
        await conn.send(msgpack.packb({"t": "hello", "station": sid, "token": tokens[sid], "agent": "bench"}))
        await conn.recv()
        stations[sid] = conn
        beats[sid] = asyncio.ensure_future(beat(sid, conn))
        drains.append(asyncio.ensure_future(drain(conn)))
    deadline = time.monotonic() + 10
    while not all((sid, "online") in seen for sid in stations) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(2 * hb_s)
    killed_at: dict[str, float] = {}
    for sid in kill + silent:  # spread over one heartbeat so the tick phase varies
        await asyncio.sleep(hb_s / len(stations))
        beats[sid].cancel()
        killed_at[sid] = time.time()
        if sid in kill:
            stations[sid].transport.abort()
    deadline = time.monotonic() + timeout_s + 10
    while not all((sid, "offline") in seen for sid in stations) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    result: dict[str, Any] = {}
    for name, group in (("killed", kill), ("silent", silent)):
        rec = [seen.get((s, "reconnecting"), float("nan")) - killed_at[s] for s in group]
        off = [seen.get((s, "offline"), float("nan")) - killed_at[s] for s in group]
        result[name] = {"reconnecting_s": rec, "offline_s": off,
                        "missing_offline": sum(1 for s in group if (s, "offline") not in seen)}
    watching.cancel()
    for task in [*drains, *beats.values()]:
        task.cancel()
    await watcher.close()
    for conn in stations.values():
        conn.transport.abort()
    return result


hb_s = 1.0
timeout_s = 5.0


async def main() -> None:
    global hb_s, timeout_s
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=50)
    parser.add_argument("--hb-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--stations", type=int, default=8, help="killed and as many silenced")
    parser.add_argument("--gap", type=float, default=0.6,
                        help="seconds between one viewer leaving and the next joining; the hub asks a publisher "
                             "for at most one keyframe per 0.5 s, so a gap below that measures folded requests")
    parser.add_argument("--quick", action="store_true", help="20 joins")
    args = parser.parse_args()
    if args.quick:
        args.joins = 20
    hb_s, timeout_s = args.hb_s, args.timeout_s
    started = time.monotonic()
    workdir = temp_dir("bench-join-")
    proc, port, config = await start_hub(workdir, presence={"heartbeat_s": hb_s, "timeout_s": timeout_s},
                                         media={"max_sessions_per_address": 1000})
    from bench.common import station_ids

    ids = [STATION] + [s for s in station_ids() if s != STATION][: 2 * args.stations]
    tokens = await asyncio.to_thread(mint_tokens, config, ids)
    publisher = await Worker.start("-m", "bench.rtcload", "publisher", log=workdir / "pub.log")
    try:
        reply = await publisher.call("publish", timeout=60, base=f"http://127.0.0.1:{port}", station=STATION,
                                     token=tokens[STATION], live=True)
        if not reply["connected"]:
            raise RuntimeError("publisher did not connect")
        await asyncio.sleep(1.0)
        join_cpu_ms = await hub_cpu_per_join(proc.pid, viewer_joins(f"http://127.0.0.1:{port}", args.joins, args.gap))
        joins = join_cpu_ms.pop("joins")
        others = ids[1:]
        pres = await presence(port, tokens, others[: args.stations], others[args.stations:])
    finally:
        try:
            await publisher.call("close", timeout=10)
        except Exception:
            pass
        await publisher.close()
        await stop(proc)
    ok = [j for j in joins if "failed" not in j]
    table = {k: {"p50": percentile([j[k] for j in ok], 50), "p99": percentile([j[k] for j in ok], 99),
                 "max": max((j[k] for j in ok), default=None)} for k in ("answer_ms", "connected_ms", "first_frame_ms")}
    lines = [f"Viewer join over WHEP, {len(ok)}/{len(joins)} joins, {args.gap:g} s apart (ms from offer to …):", "",
             "| phase | p50 | p99 | max |", "|---|---|---|---|"]
    for k, label in (("answer_ms", "SDP answer received"), ("connected_ms", "ICE + DTLS connected"),
                     ("first_frame_ms", "first decoded frame")):
        lines.append(f"| {label} | {fmt(table[k]['p50'])} | {fmt(table[k]['p99'])} | {fmt(table[k]['max'])} |")
    lines += ["", f"The hub's CPU per join (offer to first picture and close, less the publisher's own): "
              f"{fmt(join_cpu_ms['per_join'], 1)} ms (the publisher alone {fmt(join_cpu_ms['baseline_per_s'], 1)} "
              f"ms a second)"]
    lines += ["", f"Presence latency (heartbeat {hb_s:g} s, timeout {timeout_s:g} s; goal: offline ≤ "
              f"{timeout_s + 1:g} s), seconds from the kill:", "",
              "| station socket | n | → reconnecting (median / max) | → offline (median / max) | never offline |",
              "|---|---|---|---|---|"]
    for name, label in (("killed", "killed (TCP reset, no close frame)"), ("silent", "silent (open, no messages)")):
        r, o = pres[name]["reconnecting_s"], pres[name]["offline_s"]
        rs, os_ = summary([x for x in r if x == x]), summary([x for x in o if x == x])
        lines.append(f"| {label} | {len(r)} | {fmt(rs['median'], 2)} / {fmt(rs['max'], 2)} | "
                     f"{fmt(os_['median'], 2)} / {fmt(os_['max'], 2)} | {pres[name]['missing_offline']} |")
    text = "\n".join(lines)
    path = write_result("join_latency", {"args": vars(args), "joins": joins, "join_summary": table,
                                         "join_cpu_ms": join_cpu_ms,
                                         "presence": pres, "table": text, "elapsed_s": time.monotonic() - started})
    print(text)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main())
