"""The HLS packager on real H.264 RTP from aiortc's encoder (the agent's), with a fake stream
and an injected clock: where it cuts parts and segments, that the bytes it writes are the
publisher's H.264 as sent, and what it does on a new publisher or when video stops."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import pytest

from hub.media import cmaf
from hub.media.aac import OpusToAac
from hub.media.hls_packager import HlsPackager, PackagerOptions, PackagingError
from tests.media import rtp_samples

FPS = 15
OPTIONS = PackagerOptions(part_s=0.5, segment_s=2.0, keep_segments=10)


@dataclass
class FakeStream:
    """What the packager needs of a StationStream: taps, codecs, keyframe requests."""

    station_id: str = "35.09.01"
    source_id: str | None = "s1"
    mime: dict[str, str] = field(default_factory=lambda: {"video": "video/H264", "audio": "audio/opus"})
    taps: list[Callable[[str, int, int, int, bytes], None]] = field(default_factory=list)
    keyframe_requests: int = 0

    def add_tap(self, fn: Callable[[str, int, int, int, bytes], None]) -> None:
        self.taps.append(fn)

    def remove_tap(self, fn: Callable[[str, int, int, int, bytes], None]) -> None:
        self.taps.remove(fn)

    def codecs(self) -> dict[str, str]:
        return self.mime

    def request_keyframe(self, urgent: bool = False) -> None:
        self.keyframe_requests += 1

    def send(self, kind: str, packet: tuple[int, int, int, bytes]) -> None:
        for tap in list(self.taps):
            tap(kind, *packet)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def packager_for(stream: FakeStream, clock: Clock, audio: bool = False) -> HlsPackager:
    packager = HlsPackager(stream, OPTIONS, (lambda: OpusToAac()) if audio else None, clock=clock,
                           wall_clock=lambda: 1_787_022_000.0 + clock.now, run="t1")
    packager.start()  # outside an event loop: every packet is processed as it comes
    return packager


def play_video(stream: FakeStream, clock: Clock, sample: rtp_samples.Sample, start_frame: int = 0) -> None:
    for index, group in enumerate(sample.frame_packets):
        clock.now = 100.0 + (start_frame + index) / FPS
        for packet in group:
            stream.send("video", packet)


def sent_access_units(sample: rtp_samples.Sample) -> list[tuple[bytes, bool]]:
    from hub.media import seams_keyframes
    from hub.media.frames import FrameAssembler, annexb_nal_units

    assembler = FrameAssembler("video/h264", seams_keyframes.depayload)
    units = []
    for packet in sample.packets:
        units += [(cmaf.avcc_sample(annexb_nal_units(f.data)), f.keyframe) for f in assembler.push(*packet)]
    return units


def demuxed_video(packager: HlsPackager) -> list[tuple[bytes, bool, int]]:
    segments = [s.msn for s in packager.window.segments if s.complete]
    body = packager.inits[0] + b"".join(packager.segment_bytes(msn) or b"" for msn in segments)
    container: Any = av.open(io.BytesIO(body))
    with container:
        stream = container.streams.video[0]
        return [(bytes(p), p.is_keyframe, int(p.pts)) for p in container.demux(stream) if p.size]


def test_segments_start_at_keyframes_and_parts_stay_within_the_target() -> None:
    stream, clock = FakeStream(), Clock()
    packager = packager_for(stream, clock)
    # keyframes every 2 s, and where x264 sees a scene cut (the pattern changes every 10 frames)
    sample = rtp_samples.video("H264", frames=90, keyframe_every=30)
    play_video(stream, clock, sample)
    segments = [s for s in packager.window.segments if s.complete]
    assert len(segments) >= 2, [(s.msn, s.duration_s) for s in packager.window.segments]
    for segment in segments:
        assert segment.parts[0].independent
        assert 2.0 - 0.5 <= segment.duration_s <= 2.0 + 0.49  # a keyframe from 0.5 s early on
        assert all(part.duration_s <= 0.5 + 1e-6 for part in segment.parts), segment.parts
    assert segments[1].program_time - segments[0].program_time == pytest.approx(segments[0].duration_s)
    assert stream.keyframe_requests >= 2  # at start, and ahead of each segment's end


def test_the_segments_carry_the_publishers_h264_unchanged() -> None:
    stream, clock = FakeStream(), Clock()
    packager = packager_for(stream, clock)
    sample = rtp_samples.video("H264", frames=75, keyframe_every=30)
    play_video(stream, clock, sample)
    sent = sent_access_units(sample)
    demuxed = demuxed_video(packager)
    count = len(demuxed)
    assert count >= 45  # the complete segments: all but the last second or so
    assert [(data, keyframe) for data, keyframe, _ in demuxed] == sent[:count]  # byte for byte: no encoder
    assert [pts for _, _, pts in demuxed] == [round(i * 90000 / FPS) for i in range(count)]


def test_without_keyframes_segments_are_cut_anyway_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    picture = rtp_samples._picture
    def steady(index: int) -> av.VideoFrame:  # the same picture again and again: no scene cuts
        frame = picture(0)
        frame.pts = index * (90000 // FPS)
        return frame

    monkeypatch.setattr(rtp_samples, "_picture", steady)
    stream, clock = FakeStream(), Clock()
    packager = packager_for(stream, clock)
    play_video(stream, clock, rtp_samples.video("H264", frames=120, keyframe_every=1000))
    segments = [s for s in packager.window.segments if s.complete]
    assert len(segments) >= 3
    assert all(s.duration_s <= 2.0 + 0.49 for s in segments)  # rounds to the target duration
    assert segments[0].parts[0].independent and not segments[1].parts[0].independent
    assert stream.keyframe_requests >= 1 + len(segments)  # one asked for each segment


def test_a_new_publisher_starts_a_discontinuity() -> None:
    stream, clock = FakeStream(), Clock()
    packager = packager_for(stream, clock)
    play_video(stream, clock, rtp_samples.video("H264", frames=40, keyframe_every=30))
    stream.source_id = "s2"  # the office reconnected: new numbers, new clock
    play_video(stream, clock, rtp_samples.video("H264", frames=40, keyframe_every=30, first_seq=40000,
                                                first_ts=123456), start_frame=150)
    segments = list(packager.window.segments)
    flags = [s.discontinuity for s in segments]
    assert flags.count(True) == 1, flags
    after = flags.index(True)
    before = segments[after - 1]
    # the 7.4 s without media (frame 40 to 150) is kept between the two
    assert segments[after].program_time - (before.program_time + before.duration_s) >= 7.0
    assert before.duration_s <= 2.0 + 0.49  # the outage is not counted into a part
    assert segments[after].parts[0].independent
    assert "#EXT-X-DISCONTINUITY" in packager.window.render(low_latency=True)


def test_when_video_stops_the_audio_goes_on_in_parts() -> None:
    stream, clock = FakeStream(), Clock()
    packager = packager_for(stream, clock, audio=True)
    play_video(stream, clock, rtp_samples.video("H264", frames=16, keyframe_every=30))
    audio = rtp_samples.audio(frames=150, first_seq=0, first_ts=0)
    for index, packet in enumerate(audio.packets):  # 3 s of sound, no pictures
        clock.now = 100.0 + 16 / FPS + index * 0.02
        stream.send("audio", packet)
    parts = [p for s in packager.window.segments for p in s.parts]
    assert len(parts) >= 5
    assert packager.inits[0].count(b"mp4a") == 1
    later = [s for s in packager.window.segments][1:]
    assert later and all(p.independent for s in later for p in s.parts)


def test_only_h264_is_packaged() -> None:
    with pytest.raises(PackagingError, match="H.264"):
        HlsPackager(FakeStream(mime={"video": "video/VP8", "audio": "audio/opus"}), OPTIONS, None)


def test_stop_removes_the_tap_and_keeps_nothing_past_the_window() -> None:
    stream, clock = FakeStream(), Clock()
    packager = HlsPackager(stream, PackagerOptions(0.5, 2.0, keep_segments=3), None, clock=clock, run="t2")
    packager.start()
    play_video(stream, clock, rtp_samples.video("H264", frames=150, keyframe_every=30))
    assert len(packager.window.segments) == 4  # three complete, one open
    oldest = packager.window.segments[0].msn
    assert all(msn >= oldest for msn, _ in packager.parts)
    packager.stop()
    assert stream.taps == []
