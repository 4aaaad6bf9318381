"""The recorder end to end: a real aiortc publisher → the relay → StreamRecorder → part files
→ ``finish`` → one file, checked with FFmpeg's ``ffprobe`` (skipped where it is missing;
CI installs Debian's ``ffmpeg``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hub.media import MediaRelay
from hub.media.recorder import FinishedFile, PartWriter, RecorderError, StreamRecorder, finish, part_suffix
from hub.media.station_stream import StationStream
from tests.kit import timeout, wait_until
from tests.media.conftest import RecordedEvents
from tests.media.peers import Publisher, wait_for_state

STATION = "opd-rekam"
FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe (Debian's ffmpeg) is not installed")


def probe(path: Path) -> dict[str, Any]:
    assert FFPROBE is not None
    done = subprocess.run([FFPROBE, "-v", "error", "-show_format", "-show_streams", "-show_packets", "-of", "json",
                           str(path)], capture_output=True, text=True, timeout=timeout(30), check=True)
    info: dict[str, Any] = json.loads(done.stdout)
    info["codecs"] = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    kinds = {s["index"]: s["codec_type"] for s in info["streams"]}
    info["times"] = {kind: [float(p["pts_time"]) for p in info["packets"] if kinds[p["stream_index"]] == kind]
                     for kind in kinds.values()}
    info["bytes"] = {kind: sum(int(p["size"]) for p in info["packets"] if kinds[p["stream_index"]] == kind)
                     for kind in kinds.values()}
    return info


def decode_errors(path: Path) -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return ""
    # Decode everything, keep each frame's own time (passthrough): a publisher on a loaded
    # machine may send two frames within one output tick, which the null muxer would report
    # as non-monotonic — about its own time base, not about the file.
    done = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=timeout(60))
    return "\n".join(line for line in done.stderr.splitlines()
                     if "non monotonically increasing dts to muxer" not in line)


class PayloadCounter:
    """A second tap: the video payload bytes the relay forwarded while recording."""

    def __init__(self) -> None:
        self.video_bytes = 0

    def __call__(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
        if kind == "video":
            self.video_bytes += len(payload)


async def live_stream(relay: MediaRelay, events: RecordedEvents, count: int = 1) -> StationStream:
    await events.wait_until(lambda: len(events.started) >= count and relay.stream(STATION) is not None,
                            "the station to be live")
    stream = relay.stream(STATION)
    assert stream is not None
    return stream


async def record(stream: StationStream, path: Path, seconds: float, start_time_s: float = 0.0,
                 errors: list[Exception] | None = None) -> StreamRecorder:
    recorder = StreamRecorder(stream, path, start_time_s, (errors if errors is not None else []).append)
    recorder.start()
    await wait_until(lambda: recorder.writer.last_time_s >= start_time_s + seconds, seconds + 10,
                     f"{seconds} s recorded")
    return recorder


@needs_ffprobe
async def test_vp8_and_opus_recorded_into_one_webm(relay: MediaRelay, events: RecordedEvents, tmp_path: Path) -> None:
    publisher = await Publisher.start(relay, STATION, video="VP8")
    stream = await live_stream(relay, events)
    assert stream.codecs() == {"video": "video/vp8", "audio": "audio/opus"}
    counter = PayloadCounter()
    errors: list[Exception] = []
    started = time.monotonic()
    recorder = StreamRecorder(stream, tmp_path / "part-1.webm", 0.0, errors.append)
    recorder.start()
    stream.add_tap(counter)
    await wait_until(lambda: recorder.writer.last_time_s >= 5.0, 15, "5 s recorded")
    stream.remove_tap(counter)
    last = recorder.stop()
    elapsed = time.monotonic() - started
    await publisher.close()
    assert errors == []
    assert part_suffix("video/vp8") == ".webm"

    done = finish([tmp_path / "part-1.webm"], tmp_path / "rec.webm")
    assert isinstance(done, FinishedFile)
    assert (done.video_codec, done.audio_codec) == ("video/vp8", "audio/opus")
    assert done.bytes == (tmp_path / "rec.webm").stat().st_size
    info = probe(done.path)
    assert info["codecs"] == {"video": "vp8", "audio": "opus"}
    duration = float(info["format"]["duration"])
    assert abs(duration - elapsed) <= 1.0, (duration, elapsed)
    assert abs(done.duration_s - duration) <= 0.2
    assert last == pytest.approx(recorder.writer.last_time_s)
    # the video is the publisher's, byte for byte less the RTP payload descriptors
    video_kbps = info["bytes"]["video"] * 8 / duration / 1000
    sent_kbps = counter.video_bytes * 8 / duration / 1000
    print(f"\nrecorded {duration:.2f} s of {elapsed:.2f} s: video {video_kbps:.0f} kbit/s "
          f"(publisher {sent_kbps:.0f} kbit/s), {done.bytes} bytes")
    assert 0.85 * sent_kbps <= video_kbps <= 1.1 * sent_kbps
    assert info["times"]["video"][0] < 0.5 and info["times"]["audio"][0] < 0.5  # starts at once
    assert decode_errors(done.path) == ""


@needs_ffprobe
async def test_a_publisher_reconnect_is_a_second_part_stitched_with_the_gap_kept(
        relay: MediaRelay, events: RecordedEvents, tmp_path: Path) -> None:
    first = await Publisher.start(relay, STATION)
    recorder = await record(await live_stream(relay, events), tmp_path / "part-1.webm", 3.0)
    part1_end = recorder.stop()
    await first.close()
    await events.wait_until(lambda: events.stopped == [STATION], "the publisher gone")

    outage_s = 4.0  # the service opens the next part at the wall-clock time since the start
    second = await Publisher.start(relay, STATION, pattern="B")
    recorder = await record(await live_stream(relay, events, count=2), tmp_path / "part-2.webm", 3.0,
                            start_time_s=part1_end + outage_s)
    recorder.stop()
    await second.close()

    done = finish([tmp_path / "part-1.webm", tmp_path / "part-2.webm"], tmp_path / "rec.webm")
    info = probe(done.path)
    video = info["times"]["video"]
    jumps = [b - a for a, b in zip(video, video[1:], strict=False)]
    assert max(jumps) == pytest.approx(outage_s, abs=0.3)  # the outage, kept
    assert sorted(jumps)[-2] < 0.5  # no other hole
    assert float(info["format"]["duration"]) == pytest.approx(part1_end + outage_s + 3.0, abs=1.0)
    assert decode_errors(done.path) == ""


@needs_ffprobe
async def test_a_replaced_publisher_continues_the_same_part_on_the_arrival_clock(
        relay: MediaRelay, events: RecordedEvents, tmp_path: Path) -> None:
    old = await Publisher.start(relay, STATION, pattern="A")
    stream = await live_stream(relay, events)
    recorder = await record(stream, tmp_path / "part-1.webm", 2.0)
    new = await Publisher.start(relay, STATION, pattern="B")  # make-before-break: same stream
    await wait_for_state(old.pc, "closed")
    written = recorder.writer.frames_written
    await wait_until(lambda: recorder.writer.frames_written > written + 60, 10, "the new publisher recorded")
    recorder.stop()
    await new.close()
    done = finish([tmp_path / "part-1.webm"], tmp_path / "rec.webm")
    info = probe(done.path)
    video = info["times"]["video"]
    assert max(b - a for a, b in zip(video, video[1:], strict=False)) < 1.5
    assert decode_errors(done.path) == ""


@needs_ffprobe
async def test_a_part_cut_short_as_kill_9_leaves_it_is_finished_up_to_its_last_packet(
        relay: MediaRelay, events: RecordedEvents, tmp_path: Path) -> None:
    publisher = await Publisher.start(relay, STATION)
    recorder = await record(await live_stream(relay, events), tmp_path / "part-1.webm", 5.0)
    # what is on disk right now is what a kill -9 would leave
    crashed = tmp_path / "crashed.webm"
    shutil.copyfile(tmp_path / "part-1.webm", crashed)
    at_kill = recorder.writer.last_time_s
    recorder.stop()
    await publisher.close()
    done = finish([crashed], tmp_path / "rec.webm")
    assert at_kill - 2.0 <= done.duration_s <= at_kill + 0.2, (done.duration_s, at_kill)
    assert decode_errors(done.path) == ""
    # and cut at arbitrary bytes (a write torn half-way)
    data = (tmp_path / "part-1.webm").read_bytes()
    for fraction in (0.31, 0.5, 0.77, 0.999):
        cut = tmp_path / f"cut-{fraction}.webm"
        cut.write_bytes(data[:int(len(data) * fraction)])
        finished = finish([cut], tmp_path / f"rec-{fraction}.webm")
        assert finished.duration_s > 5.0 * fraction - 2.0
        assert decode_errors(finished.path) == ""


@needs_ffprobe
async def test_h264_and_opus_recorded_into_one_mp4(relay: MediaRelay, events: RecordedEvents, tmp_path: Path) -> None:
    publisher = await Publisher.start(relay, STATION, video="H264")
    stream = await live_stream(relay, events)
    assert stream.codecs()["video"] == "video/h264"
    part = tmp_path / f"part-1{part_suffix('video/h264')}"
    started = time.monotonic()
    recorder = await record(stream, part, 3.0)
    part1_end = recorder.stop()
    elapsed = time.monotonic() - started
    crashed = tmp_path / "crashed.mp4"
    shutil.copyfile(part, crashed)
    recorder = await record(stream, tmp_path / "part-2.mp4", 2.0, start_time_s=part1_end + 2.0)
    recorder.stop()
    await publisher.close()

    done = finish([part, tmp_path / "part-2.mp4"], tmp_path / "rec.mp4")
    assert (done.video_codec, done.audio_codec) == ("video/h264", "audio/opus")
    info = probe(done.path)
    assert info["codecs"] == {"video": "h264", "audio": "opus"}
    assert float(info["format"]["duration"]) == pytest.approx(elapsed + 2.0 + 2.0, abs=1.0)
    data = done.path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # seekable before the whole file is there
    assert decode_errors(done.path) == ""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(crashed.read_bytes()[: int(crashed.stat().st_size * 0.6)])
    assert finish([cut], tmp_path / "rec-cut.mp4").duration_s > 0.5


def test_finish_without_media_raises(tmp_path: Path) -> None:
    (tmp_path / "empty.webm").write_bytes(b"")
    with pytest.raises(RecorderError):
        finish([tmp_path / "empty.webm", tmp_path / "missing.webm"], tmp_path / "out.webm")
    assert not (tmp_path / "out.webm").exists()


def test_part_writer_drops_everything_before_the_first_keyframe(tmp_path: Path) -> None:
    from tests.media.rtp_samples import encoded_frames

    writer = PartWriter(tmp_path / "p.webm", "video/vp8", "audio/opus", 10.0)
    video = encoded_frames("VP8", 20, keyframe_every=15)
    writer.write("audio", b"\xfc\xff\xfe", True, 10.0)
    for data, keyframe, time_s in video[1:]:  # from the first delta frame: 15 is the next keyframe
        writer.write("video", data, keyframe, 10.0 + time_s)
    assert writer.frames_written == 5 and writer.opened
    writer.close()
    assert writer.bytes_written == (tmp_path / "p.webm").stat().st_size
