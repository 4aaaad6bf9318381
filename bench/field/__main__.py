"""``python -m bench.field``: weak-link scenarios with a real agent, measured as viewers see them.

Each scenario runs in its own network lab (``tests.netlab``: a namespace behind a delayed,
lossy, rate-limited link made in user space) with a fresh hub on the lab's host address:

  a  the agent inside, behind 1 Mbps up / 4 Mbps down, 5 % loss each way, 200 ms RTT, for the
     window; then a 30 s outage; the recovery is measured (live again, frames again, rejoins,
     the ledger's gaps)
  b  the agent warms up on link a, then gets 150 kbps up (4 Mbps down), 2 % loss, 300 ms RTT
     for the window; then link a again: how long until video is back
  c  the agent on the host (good link); one viewer inside behind a phone-like link (700 kbps
     each way, 3 % loss, 300 ms RTT), one on the host

Viewers decode every frame (``bench.field.viewer``); the station is polled every 0.5 s
(``GET /api/v1/stations/{id}``). Printed: live share, ``media`` shares (when the hub reports
``media``), viewer median fps, worst 5 s fps, longest freeze, thumbnails, recovery times.
Needs root, ``/dev/net/tun`` and ``ip netns`` (the lab's own check says what is missing).

    python -m bench.field [--scenarios a,b,c] [--quick] [--repeats N] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench.common import install_cleanup, log, summary, write_result
from bench.field.run import run_scenario
from tests.netlab import lab_unavailable_reason

# The hub's media counters (``/metrics``) shown per window: keyframes, their requests, fallbacks.
HUB_COUNTERS = ("keyframes_received", "keyframe_requests", "viewer_keyframe_requests", "packets_retransmitted",
                "dropped_packets", "video_fallbacks", "video_recoveries")
WINDOWS = {"full": "a 600 s + 30 s outage + 90 s after; b 300 s + 120 s after; c 300 s",
           "quick": "a 60 s + 30 s outage + 45 s after; b 45 s + 90 s after; c 45 s"}


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def num(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def spread(values: list[float | None], digits: int = 1, unit: str = "", scale: float = 1.0) -> str:
    """One repeat: the value; more: median (min–max)."""
    s = summary([None if v is None else v * scale for v in values])
    if s["median"] is None:
        return "–"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}{unit}"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def media_text(windows: list[dict[str, Any]]) -> str:
    names = sorted({name for w in windows for name in w["media"]})
    if not names:
        return "(no `media` field)"
    return " / ".join(f"{name} {spread([w['media'].get(name, 0.0) for w in windows], 0, ' %', 100)}"
                      for name in names)


def window_rows(label: str, windows: list[dict[str, Any]], viewers: list[str]) -> list[str]:
    rows = []
    for viewer in viewers:
        v = [w[viewer] for w in windows]
        rows.append(f"| {label} | {viewer} | {spread([w['seconds'] for w in windows], 0, ' s')} "
                    f"| {spread([w['live_fraction'] for w in windows], 0, ' %', 100)} | {media_text(windows)} "
                    f"| {spread([x['median_fps'] for x in v])} | {spread([x['worst_5s_fps'] for x in v])} "
                    f"| {spread([x['longest_freeze_s'] for x in v], 1, ' s')} "
                    f"| {spread([w['thumbs'] for w in windows], 0)} |")
    return rows


def link_rows(label: str, results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for direction in ("up", "down"):
        used = [r["link_used"][direction] for r in results]
        dropped = {k: spread([u["dropped"][k] for u in used], 0) for k in ("queue", "loss")}
        rows.append(f"| {label} | {direction} | {spread([u['kbps'] for u in used], 0, ' kbps')} "
                    f"| {dropped['queue']} | {dropped['loss']} |")
    return rows


def render(by_scenario: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| scenario | viewer | window | live | media | median fps | worst 5 s fps | longest freeze | thumbs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, results in by_scenario.items():
        viewers = ["host", "phone"] if name == "c" else ["host"]
        lines += window_rows(name, [r["window"] for r in results], viewers)
        if name == "a":
            lines += window_rows("a after outage", [r["outage"]["after"] for r in results], ["host"])
        if name == "b":
            lines += window_rows("b back on link a", [r["recovery"]["after"] for r in results], ["host", "fresh"])
    lines += ["", "| scenario | link direction | carried | queue drops | loss drops |", "|---|---|---|---|---|"]
    for name, results in by_scenario.items():
        lines += link_rows(name, results)
    lines += ["", "| scenario | window | " + " | ".join(HUB_COUNTERS) + " |", "|---|---|" + "---|" * len(HUB_COUNTERS)]
    for name, results in by_scenario.items():
        windows = [("window", [r["hub_media"] for r in results])]
        if name == "a":
            windows.append(("after outage", [r["outage"]["hub_media"] for r in results]))
        if name == "b":
            windows.append(("back on link a", [r["recovery"]["hub_media"] for r in results]))
        for label, counted in windows:
            lines.append(f"| {name} | {label} | "
                         + " | ".join(spread([c.get(k, 0.0) for c in counted], 0) for k in HUB_COUNTERS) + " |")
    lines += ["", "| scenario | figure | value |", "|---|---|---|"]
    for name, results in by_scenario.items():
        lines.append(f"| {name} | start → live / first frame | "
                     f"{spread([r['startup']['to_live_s'] for r in results], 1, ' s')} / "
                     f"{spread([r['startup']['to_first_frame_s'] for r in results], 1, ' s')} |")
        if name == "a":
            o = [r["outage"] for r in results]
            lines += [
                f"| a | outage: not live after | {spread([x['not_live_after_cut_s'] for x in o], 1, ' s')} |",
                f"| a | link back → live | {spread([x['live_again_after_s'] for x in o], 1, ' s')} |",
                f"| a | link back → first frame / video (≥ 7.5 fps over 2 s) | "
                f"{spread([x['first_frame_after_s'] for x in o], 1, ' s')} / "
                f"{spread([x['video_back_after_s'] for x in o], 1, ' s')} |",
                f"| a | frames again without re-joining | {', '.join(str(x['frames_without_rejoin']) for x in o)} |",
                f"| a | viewer joins (whole run) | {', '.join(str(x['viewer_joins']) for x in o)} |",
                f"| a | ledger gaps over the outage (intervals) / daily `interruptions` added | "
                f"{', '.join(str(x['ledger_gaps']) for x in o)} / {spread([x['interruptions'] for x in o], 0)} |",
            ]
        if name == "b":
            rec = [r["recovery"] for r in results]
            lines += [
                f"| b | link a again → video (≥ 7.5 fps over 2 s) | "
                f"{spread([x['video_back_after_s'] for x in rec], 1, ' s')} |",
                f"| b | link a again → video for a viewer joining then | "
                f"{spread([x['fresh_viewer_video_after_s'] for x in rec], 1, ' s')} |",
                f"| b | link a again → live with `media` video | "
                f"{spread([x['live_video_after_s'] for x in rec], 1, ' s')} |",
                f"| b | viewer joins (whole run) | {', '.join(str(x['viewer_joins']) for x in rec)} |",
            ]
        if name == "c":
            lines.append(f"| c | phone viewer: audio frames / joins | "
                         f"{', '.join(str(r['phone']['audio_frames']) for r in results)} / "
                         f"{', '.join(str(r['phone']['joins']) for r in results)} |")
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.field", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="a,b,c", help="comma-separated: a, b, c (default all)")
    parser.add_argument("--quick", action="store_true", help=f"short windows ({WINDOWS['quick']})")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each scenario (interleaved)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the tables")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (hub, agent, viewer logs)")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in ("a", "b", "c")]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    reason = lab_unavailable_reason()
    if reason:
        print(f"bench.field: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    by_scenario: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    notes = []
    for repeat in range(args.repeats):
        for name in scenarios:
            log(f"field scenario {name}, repeat {repeat + 1}/{args.repeats}")
            try:
                by_scenario[name].append(await run_scenario(name, args.quick, args.keep) | {"repeat": repeat})
            except Exception as exc:
                log(f"scenario {name} repeat {repeat + 1} failed: {exc!r}")
                notes.append(f"{name} repeat {repeat + 1}: {exc!r}")
    by_scenario = {k: v for k, v in by_scenario.items() if v}
    table = render(by_scenario) if by_scenario else "no scenario completed"
    path = write_result("field", {"args": vars(args), "windows": WINDOWS["quick" if args.quick else "full"],
                                  "results": by_scenario, "table": table, "notes": notes,
                                  "elapsed_s": time.monotonic() - started})
    if args.json:
        print(json.dumps({"results": by_scenario, "notes": notes}, indent=1))
    else:
        print(table)
        for note in notes:
            print("note:", note)
    log(f"wrote {path} in {time.monotonic() - started:.0f} s")
    return 0 if not notes else 1


if __name__ == "__main__":
    install_cleanup()
    sys.exit(asyncio.run(main()))
