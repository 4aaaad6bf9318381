"""How far behind live an LL-HLS and a plain HLS player are, on loopback.

    python -m bench.hls_latency --seconds 30

A hub and one H.264 agent as in :mod:`bench.hls_load` (no nginx). One player follows the LL
playlist at the live edge straight from the hub (blocking requests, the preload-hinted part),
and measures, against the hub's own ``EXT-X-PROGRAM-DATE-TIME`` (the wall clock when a
segment's first frame reached the hub; same machine, same clock):

- **part lag**: when the player had a part, after the hub received the last frame in it
  (receipt − (part's date-time + its duration));
- **segment lag**: when a playlist first listed a segment as complete, after its last frame.

What a player then shows is arithmetic on the playlist (RFC 8216bis §4.4.3.8, 6.3.3): an LL
player starts ``PART-HOLD-BACK`` (3 part targets, 1.5 s) behind the end of the playlist, a
plain one ``HOLD-BACK`` (3 target durations, 6 s) behind the end of the last complete segment,
whose age when the player starts is on average half a segment plus the segment lag. So
behind the hub's arrival: LL ≈ PART-HOLD-BACK + part lag; plain ≈ HOLD-BACK + segment lag +
segment/2. Capture and WebRTC ingest (the agent's encoder, the network) come on top of both
and are not measured here. Through a cache add its delay (``bench/hls_load.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path
from typing import Any

from bench.common import http_client, install_cleanup, log, percentile, raise_fd_limit, stop, temp_dir, write_result
from bench.hls_load import HINT, PART, STATION, start_station

SERVER_CONTROL = re.compile(r"PART-HOLD-BACK=([0-9.]+)")
TARGET = re.compile(r"#EXT-X-TARGETDURATION:(\d+)")


def timeline(playlist: str) -> tuple[dict[str, tuple[float, float]], dict[int, tuple[float, float]]]:
    """Each listed part's (start date-time, duration) by ``msn.index``; each complete
    segment's (start date-time, duration) by msn."""
    parts: dict[str, tuple[float, float]] = {}
    segments: dict[int, tuple[float, float]] = {}
    start = cursor = pending = 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            stamp = line.partition(":")[2]
            start = cursor = _epoch(stamp)
        elif line.startswith("#EXT-X-PART:"):
            duration = float(re.search(r"DURATION=([0-9.]+)", line).group(1))  # type: ignore[union-attr]
            uri = PART.search(line)
            if uri is not None:
                parts[f"{uri.group(2)}.{uri.group(3)}"] = (cursor, duration)
            cursor += duration
        elif line.startswith("#EXTINF:"):
            duration = float(line.partition(":")[2].rstrip(","))
            pending = duration
        elif line and not line.startswith("#"):
            msn = int(re.search(r"/s(\d+)\.m4s$", line).group(1))  # type: ignore[union-attr]
            segments[msn] = (start, pending)
    return parts, segments


def _epoch(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def follow(http: Any, base: str, seconds: float) -> dict[str, Any]:
    received: dict[str, float] = {}
    listed: dict[int, float] = {}
    initial: set[int] | None = None  # complete before we came: not seen completing
    parts_at: dict[str, tuple[float, float]] = {}
    segments_at: dict[int, tuple[float, float]] = {}
    hold_back = target = 0.0
    last: tuple[int, int] | None = None
    path = f"{base}/index.m3u8"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        answer = await http.get(path)
        now = time.time()
        answer.raise_for_status()
        parts, segments = timeline(answer.text)
        parts_at.update(parts)
        if initial is None:
            initial = set(segments)
        for msn, value in segments.items():
            segments_at.setdefault(msn, value)
            listed.setdefault(msn, now)
        hold_back = float(SERVER_CONTROL.search(answer.text).group(1))  # type: ignore[union-attr]
        target = float(TARGET.search(answer.text).group(1))  # type: ignore[union-attr]
        hint = HINT.search(answer.text)
        assert hint is not None
        missed = [(int(m), int(i), uri) for uri, m, i in PART.findall(answer.text)
                  if last is not None and (int(m), int(i)) > last]
        for msn, index, uri in [*missed, (int(hint.group(2)), int(hint.group(3)), hint.group(1))]:
            part = await http.get(f"{base}/{uri}")
            if part.status_code == 200:
                received.setdefault(f"{msn}.{index}", time.time())
            last = (msn, index)
        assert last is not None
        path = f"{base}/index.m3u8?_HLS_msn={last[0]}&_HLS_part={last[1]}"
    part_lag = [at - sum(parts_at[key]) for key, at in received.items() if key in parts_at]
    segment_lag = [listed[msn] - sum(segments_at[msn]) for msn in listed if msn not in (initial or set())]
    segment_s = [duration for _, duration in segments_at.values()]
    return {"parts": len(part_lag), "segments": len(segment_lag), "part_hold_back_s": hold_back,
            "target_duration_s": target, "part_lag_ms": {q: _ms(percentile(part_lag, q)) for q in (50, 95)},
            "segment_lag_ms": {q: _ms(percentile(segment_lag, q)) for q in (50, 95)},
            "segment_s": percentile(segment_s, 50)}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    install_cleanup()
    workdir = temp_dir("jaga-hls-latency-")
    hub_proc, hub_port, agent, _, _ = await start_station(Path(workdir), with_nginx=False)
    try:
        async with http_client(timeout=30) as http:
            base = f"http://127.0.0.1:{hub_port}/hls/{STATION}"
            await follow(http, base, 4)  # warm-up: packaging starts, the keyframe cadence settles
            result = await follow(http, base, args.seconds)
    finally:
        await agent.close(release="stop")
        await stop(hub_proc)
    segment = result["segment_s"] or 2.0
    ll = result["part_hold_back_s"] + (result["part_lag_ms"][50] or 0) / 1000
    plain = 3 * result["target_duration_s"] + (result["segment_lag_ms"][50] or 0) / 1000 + segment / 2
    result.update({"ll_behind_hub_s": round(ll, 2), "plain_behind_hub_s": round(plain, 2)})
    print(f"\n{result['parts']} parts, {result['segments']} segments followed for {args.seconds:.0f} s")
    print(f"  part lag (had it, after its last frame reached the hub)     p50 {result['part_lag_ms'][50]} ms, "
          f"p95 {result['part_lag_ms'][95]} ms")
    print(f"  segment lag (listed complete, after its last frame)        p50 {result['segment_lag_ms'][50]} ms, "
          f"p95 {result['segment_lag_ms'][95]} ms")
    print(f"  LL player: PART-HOLD-BACK {result['part_hold_back_s']} s + part lag  ≈ {ll:.2f} s behind the hub")
    print(f"  plain player: 3 × {result['target_duration_s']:.0f} s + segment lag + {segment:.2f}/2 s "
          f"≈ {plain:.2f} s behind the hub")
    path = write_result("hls_latency", {"seconds": args.seconds, **result})
    log(f"results: {path}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
