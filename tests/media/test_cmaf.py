"""The CMAF writer against real media and real readers.

FFmpeg's command line (Debian ``ffmpeg``, installed by ``.ci/run``) encodes a test pattern
with libx264 and a tone with AAC; their access units and frames go through
``init_segment`` + ``media_fragment`` into a file that PyAV (FFmpeg's MP4 demuxer and
decoders) and ``ffprobe`` then read back: streams, bytes, timestamps, keyframes and every
frame decoded. Without ffmpeg those tests skip (and on CI a skip fails the run).
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import pytest

from hub.media.cmaf import (
    AUDIO_TRACK_ID,
    VIDEO_TIMESCALE,
    VIDEO_TRACK_ID,
    AudioTrack,
    Sample,
    TrackRun,
    VideoTrack,
    avcc_sample,
    codecs,
    init_segment,
    media_fragment,
)
from tests.kit import timeout
from tests.web.browser import open_page

if TYPE_CHECKING:
    from playwright.async_api import Browser

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None or FFPROBE is None,
                                  reason="ffmpeg/ffprobe (Debian's ffmpeg) is not installed")

FPS = 15
SECONDS = 4
AAC_FRAME = 1024  # samples per AAC-LC frame
START_S = 50_000  # both tracks start here: past 2**32 ticks of 90 kHz, so tfdt must be 64-bit
VIDEO_START = START_S * VIDEO_TIMESCALE
AUDIO_START = START_S * 48000

BASELINE_SPS = bytes.fromhex("6742c01fda0280bfe5c0440000030004000003007823c60c92")  # an aiortc-like SPS
AAC_LC_48K_STEREO = bytes.fromhex("1190")


# --- real media --------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    access_units: list[bytes]  # Annex B, one per frame
    keyframes: list[bool]
    aac_frames: list[bytes]  # raw, no ADTS
    aac_config: bytes
    width: int
    height: int


def nal_units(access_unit: bytes) -> list[bytes]:
    """An Annex B access unit's NAL units, without start codes (3- or 4-byte)."""
    return [nal.rstrip(b"\x00") for nal in access_unit.split(b"\x00\x00\x01") if nal.strip(b"\x00")]


def encode(directory: Path, video_args: list[str], size: str = "320x240", audio: bool = True) -> Encoded:
    """Encode SECONDS of test pattern (Annex B with access unit delimiters) and of tone (AAC
    in MP4, for its AudioSpecificConfig); return their units as the hub would get them."""
    assert FFMPEG is not None
    command = [FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={FPS}",
               "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS),
               "-map", "0:v", "-c:v", "libx264", "-pix_fmt", "yuv420p", *video_args, "-tune", "zerolatency",
               "-g", str(FPS), "-bf", "0", "-x264-params", "aud=1", "-f", "h264", str(directory / "video.h264")]
    if audio:
        command += ["-t", str(SECONDS), "-map", "1:a", "-c:a", "aac", "-ac", "2", "-b:a", "64k",
                    str(directory / "audio.m4a")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout(120), check=False)
    assert done.returncode == 0, f"ffmpeg could not encode: {done.stderr[-2000:]}"
    with av.open(str(directory / "video.h264")) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
        units, keys = [bytes(packet) for packet in packets], [packet.is_keyframe for packet in packets]
        width, height = container.streams.video[0].width, container.streams.video[0].height
    frames: list[bytes] = []
    config = b""
    if audio:
        with av.open(str(directory / "audio.m4a")) as container:
            config = bytes(container.streams.audio[0].codec_context.extradata or b"")
            frames = [bytes(packet) for packet in container.demux(audio=0) if packet.size]
    return Encoded(units, keys, frames, config, width, height)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    if FFMPEG is None or FFPROBE is None:
        pytest.skip("ffmpeg/ffprobe (Debian's ffmpeg) is not installed")
    return encode(tmp_path_factory.mktemp("baseline"), ["-profile:v", "baseline"])


def video_track(encoded: Encoded) -> VideoTrack:
    first = nal_units(encoded.access_units[0])
    sps = next(nal for nal in first if nal[0] & 0x1F == 7)
    pps = next(nal for nal in first if nal[0] & 0x1F == 8)
    return VideoTrack(sps, pps, encoded.width, encoded.height)


@dataclass
class Packaged:
    data: bytes
    video: list[Sample]
    audio: list[Sample]
    fragments: int


def runs_by_part(track_id: int, start: int, timescale: int, samples: list[Sample]) -> dict[int, TrackRun]:
    """The samples cut into 1/3 s parts by their time, as the hub cuts them: part → run."""
    runs: dict[int, TrackRun] = {}
    time = 0
    for sample in samples:
        runs.setdefault(time * 3 // timescale, TrackRun(track_id, start + time, [])).samples.append(sample)
        time += sample.duration
    return runs


def package(encoded: Encoded, with_video: bool, with_audio: bool) -> Packaged:
    """init + one fragment per part, with a video and an audio run side by side."""
    video = [Sample(avcc_sample(nal_units(unit)), VIDEO_TIMESCALE // FPS, key)
             for unit, key in zip(encoded.access_units, encoded.keyframes, strict=True)] if with_video else []
    audio = [Sample(frame, AAC_FRAME) for frame in encoded.aac_frames] if with_audio else []
    video_runs = runs_by_part(VIDEO_TRACK_ID, VIDEO_START, VIDEO_TIMESCALE, video)
    audio_runs = runs_by_part(AUDIO_TRACK_ID, AUDIO_START, 48000, audio)
    parts = sorted(video_runs.keys() | audio_runs.keys())
    chunks = [init_segment(video_track(encoded) if with_video else None,
                           AudioTrack(encoded.aac_config) if with_audio else None)]
    chunks += [media_fragment(sequence, [run for run in (video_runs.get(part), audio_runs.get(part)) if run])
               for sequence, part in enumerate(parts, start=1)]
    return Packaged(b"".join(chunks), video, audio, len(parts))


def ffprobe(path: Path) -> dict[str, Any]:
    assert FFPROBE is not None
    done = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
                          capture_output=True, text=True, timeout=timeout(60), check=False)
    assert done.returncode == 0 and not done.stderr, f"ffprobe on {path}: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return {stream["codec_type"]: stream for stream in result["streams"]}


# --- end to end -----------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("kinds", ["video+audio", "video", "audio"])
def test_fragments_demux_and_decode_exactly(baseline: Encoded, tmp_path: Path, kinds: str) -> None:
    with_video, with_audio = "video" in kinds, "audio" in kinds
    packaged = package(baseline, with_video, with_audio)
    path = tmp_path / "stream.mp4"
    path.write_bytes(packaged.data)
    assert packaged.fragments >= 3 * SECONDS

    streams = ffprobe(path)
    assert set(streams) == {"video", "audio"} & set(kinds.split("+"))
    if with_video:
        assert (streams["video"]["codec_name"], streams["video"]["profile"]) == ("h264", "Constrained Baseline")
        assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
        assert int(streams["video"]["nb_read_frames"]) == len(baseline.access_units) == FPS * SECONDS
    if with_audio:
        assert (streams["audio"]["codec_name"], streams["audio"]["profile"]) == ("aac", "LC")
        assert (int(streams["audio"]["sample_rate"]), streams["audio"]["channels"]) == (48000, 2)
        assert int(streams["audio"]["nb_read_frames"]) == len(baseline.aac_frames)

    with av.open(str(path)) as container:
        assert container.format.name.startswith("mov,mp4")
        for stream, samples, start in ((container.streams.video, packaged.video, VIDEO_START),
                                       (container.streams.audio, packaged.audio, AUDIO_START)):
            if not samples:
                assert not stream
                continue
            packets = [packet for packet in container.demux(stream[0]) if packet.size]
            container.seek(0)
            # every sample's bytes, time and sync flag as written
            assert [bytes(packet) for packet in packets] == [sample.data for sample in samples]
            times, time = [], start
            for sample in samples:
                times.append(time)
                time += sample.duration
            assert [packet.pts for packet in packets] == times
            assert [packet.dts for packet in packets] == times
            assert [packet.is_keyframe for packet in packets] == [sample.keyframe for sample in samples]
            # every frame decodes, none lost, each at its packet's time
            decoded: list[Any] = [frame for packet in packets for frame in packet.decode()]
            decoded += stream[0].codec_context.decode(None)
            assert len(decoded) == len(samples)
            assert [frame.pts for frame in decoded] == times


# Append init + fragments to a Media Source Extensions buffer (what hls.js does), play to the end.
MSE_PLAY = """
async ([mime, chunks, deadlineMs]) => {
  const deadline = (what) => new Promise((_, reject) => setTimeout(() => reject(new Error(what)), deadlineMs));
  const once = (target, event) => new Promise((resolve) => target.addEventListener(event, resolve, {once: true}));
  if (!MediaSource.isTypeSupported(mime)) return {error: `unsupported: ${mime}`};
  const video = document.createElement("video");
  video.muted = true;
  document.body.append(video);
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await Promise.race([once(source, "sourceopen"), deadline("no sourceopen")]);
  const buffer = source.addSourceBuffer(mime);
  for (const chunk of chunks) {
    buffer.appendBuffer(Uint8Array.from(atob(chunk), (c) => c.charCodeAt(0)));
    const done = await Promise.race([once(buffer, "updateend"), once(buffer, "error"), deadline("no updateend")]);
    if (done.type === "error") return {error: `append: ${video.error && video.error.message}`};
  }
  source.endOfStream();
  const buffered = [buffer.buffered.start(0), buffer.buffered.end(buffer.buffered.length - 1)];
  video.currentTime = buffered[0];
  video.playbackRate = 2;
  await Promise.race([video.play(), deadline("play() did not start")]);
  await Promise.race([once(video, "ended"), deadline(`not ended at ${video.currentTime}`)]);
  const quality = video.getVideoPlaybackQuality();
  return {buffered, frames: quality.totalVideoFrames, error: video.error && video.error.message};
}
"""


@needs_ffmpeg
@pytest.mark.browser
async def test_chromium_media_source_plays_fragments(baseline: Encoded, browser: Browser) -> None:
    page, log = await open_page(browser)
    for with_video, with_audio in ((True, True), (True, False), (False, True)):
        video = video_track(baseline) if with_video else None
        audio = AudioTrack(baseline.aac_config) if with_audio else None
        init = init_segment(video, audio)
        packaged = package(baseline, with_video, with_audio)
        mime = f'{"video" if video else "audio"}/mp4; codecs="{codecs(video, audio)}"'
        chunks = [base64.b64encode(chunk).decode() for chunk in (init, packaged.data[len(init):])]
        result = await page.evaluate(MSE_PLAY, [mime, chunks, timeout(10) * 1000])
        assert result["error"] is None, f"{mime}: {result}"
        assert result["buffered"][0] == pytest.approx(START_S, abs=0.001), result
        assert result["buffered"][1] == pytest.approx(START_S + SECONDS, abs=0.1), result
        assert result["frames"] == (len(baseline.access_units) if video else 0), result
    log.assert_clean()


@needs_ffmpeg
@pytest.mark.parametrize(("args", "chroma"), [(["-profile:v", "high"], "yuv420p"),
                                              (["-profile:v", "high444", "-pix_fmt", "yuv444p"], "yuv444p")])
def test_high_profile_avcc_matches_ffmpeg(tmp_path: Path, args: list[str], chroma: str) -> None:
    """High profiles' avcC carries chroma format and bit depths: ours equals FFmpeg's own
    (its MP4 muxer, remuxing the same stream), and the stream decodes."""
    assert FFMPEG is not None
    encoded = encode(tmp_path, args, size="176x144", audio=False)
    subprocess.run([FFMPEG, "-v", "error", "-i", str(tmp_path / "video.h264"), "-c", "copy", str(tmp_path / "ref.mp4")],
                   check=True, capture_output=True, timeout=timeout(60))
    path = tmp_path / "ours.mp4"
    path.write_bytes(package(encoded, with_video=True, with_audio=False).data)
    with av.open(str(tmp_path / "ref.mp4")) as reference, av.open(str(path)) as ours:
        expected = bytes(reference.streams.video[0].codec_context.extradata or b"")
        assert bytes(ours.streams.video[0].codec_context.extradata or b"") == expected
        assert len(expected) == 4 + 7 + len(video_track(encoded).sps) + len(video_track(encoded).pps) + 4
    streams = ffprobe(path)
    assert streams["video"]["pix_fmt"] == chroma
    assert int(streams["video"]["nb_read_frames"]) == len(encoded.access_units)


# --- the boxes themselves -------------------------------------------------------------------


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the boxes in data[start:end]."""
    found, position, end = [], start, len(data) if end is None else end
    while position < end:
        size, kind = struct.unpack_from(">I4s", data, position)
        assert size >= 8 and position + size <= end, f"bad box {kind!r} at {position}"
        found.append((kind, position, size))
        position += size
    return found


def test_two_runs_point_into_one_mdat() -> None:
    video = [Sample(avcc_sample([b"\x65" + bytes(100)]), 6000, True), Sample(avcc_sample([b"\x41\x01"]), 6000, False)]
    audio = [Sample(b"\x21" * 9, 1024), Sample(b"\x21" * 7, 1024)]
    data = media_fragment(3, [TrackRun(VIDEO_TRACK_ID, 2**40, video), TrackRun(AUDIO_TRACK_ID, 5, []),
                              TrackRun(AUDIO_TRACK_ID, 96000, audio)])
    (moof, _, moof_size), (mdat, mdat_at, mdat_size) = boxes(data)
    assert (moof, mdat, mdat_size) == (b"moof", b"mdat", 8 + 105 + 6 + 9 + 7)
    inner = boxes(data, 8, moof_size)
    assert [kind for kind, _, _ in inner] == [b"mfhd", b"traf", b"traf"]  # the empty run has no traf
    assert struct.unpack_from(">I", data, inner[0][1] + 12) == (3,)
    offsets = []
    for (_, traf_at, traf_size), track, base in zip(inner[1:], (VIDEO_TRACK_ID, AUDIO_TRACK_ID), (2**40, 96000),
                                                    strict=True):
        (tfhd, tfhd_at, _), (tfdt, tfdt_at, _), (trun, trun_at, _) = boxes(data, traf_at + 8, traf_at + traf_size)
        assert (tfhd, tfdt, trun) == (b"tfhd", b"tfdt", b"trun")
        assert struct.unpack_from(">II", data, tfhd_at + 8) == (0x020000, track)
        assert struct.unpack_from(">IQ", data, tfdt_at + 8) == (1 << 24, base)
        flags, count, offset = struct.unpack_from(">IIi", data, trun_at + 8)
        assert (flags, count) == (0x000701, 2)
        offsets.append(offset)
        entries = struct.unpack_from(">6I", data, trun_at + 20)
        if track == VIDEO_TRACK_ID:
            assert entries == (6000, 105, 0x02000000, 6000, 6, 0x01010000)
        else:
            assert entries == (1024, 9, 0x02000000, 1024, 7, 0x02000000)
    assert offsets == [mdat_at + 8, mdat_at + 8 + 111]
    assert data[offsets[1]:] == b"\x21" * 16


def test_init_segment_layout() -> None:
    data = init_segment(VideoTrack(BASELINE_SPS, b"\x68\xce\x3c\x80", 640, 480), AudioTrack(AAC_LC_48K_STEREO))
    (ftyp, _, ftyp_size), (moov, moov_at, moov_size) = boxes(data)
    assert (ftyp, moov) == (b"ftyp", b"moov")
    assert data[8:ftyp_size] == b"iso6" + bytes(4) + b"iso6mp41"  # two tracks: not a CMAF track
    assert [kind for kind, _, _ in boxes(data, moov_at + 8, moov_at + moov_size)] == [b"mvhd", b"trak", b"trak",
                                                                                      b"mvex"]
    single = init_segment(None, AudioTrack(AAC_LC_48K_STEREO))
    assert single[8:boxes(single)[0][2]] == b"iso6" + bytes(4) + b"iso6cmfcmp41"


# --- codecs, samples, bad input -------------------------------------------------------------


def test_codecs_string() -> None:
    video = VideoTrack(BASELINE_SPS, b"\x68\xce\x3c\x80", 640, 480)
    audio = AudioTrack(AAC_LC_48K_STEREO)
    assert codecs(video, audio) == "avc1.42c01f,mp4a.40.2"
    assert codecs(video, None) == "avc1.42c01f"
    assert codecs(None, audio) == "mp4a.40.2"
    assert codecs(None, AudioTrack(bytes.fromhex("f940"))) == "mp4a.40.42"  # object type 31 escapes to 6 bits
    high = VideoTrack(bytes.fromhex("6764001facd9"), b"\x68\xeb\xe3\xcb", 640, 480)
    assert codecs(high, None) == "avc1.64001f"


@needs_ffmpeg
def test_codecs_of_real_streams(baseline: Encoded) -> None:
    track = video_track(baseline)
    assert codecs(track, AudioTrack(baseline.aac_config)) == f"avc1.{track.sps[1:4].hex()},mp4a.40.2"
    assert track.sps[1] == 66 and track.sps[2] & 0x40  # Constrained Baseline


def test_avcc_sample_drops_delimiters_and_prefixes_lengths() -> None:
    sps, pps, sei, idr = b"\x67\x42\xc0\x1f", b"\x68\xce", b"\x06\x05\x01\x80", b"\x65" + bytes(300)
    sample = avcc_sample([b"\x09\xf0", sps, pps, sei, idr])
    assert sample == b"".join(struct.pack(">I", len(nal)) + nal for nal in (sps, pps, sei, idr))
    assert avcc_sample([b"\x41\x9a"]) == b"\x00\x00\x00\x02\x41\x9a"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: avcc_sample([]), "at least one NAL unit"),
    (lambda: avcc_sample([b"\x09\xf0"]), "nothing but delimiters"),
    (lambda: avcc_sample([b"\x65", b""]), "empty NAL unit"),
    (lambda: init_segment(VideoTrack(b"\x67\x42\xc0", b"\x68\xce", 640, 480), None), "SPS"),
    (lambda: init_segment(VideoTrack(BASELINE_SPS, b"\x41\x00", 640, 480), None), "PPS"),
    (lambda: init_segment(VideoTrack(BASELINE_SPS, b"\x68\xce", 0, 480), None), "video size"),
    (lambda: init_segment(VideoTrack(bytes.fromhex("6764001f"), b"\x68\xce", 640, 480), None), "SPS truncated"),
    (lambda: init_segment(None, AudioTrack(b"\x11")), "AudioSpecificConfig"),
    (lambda: init_segment(None, AudioTrack(AAC_LC_48K_STEREO, sample_rate=96000)), "sample rate"),
    (lambda: init_segment(None, None), "at least one track"),
    (lambda: codecs(VideoTrack(b"\x67\x42", b"\x68\xce", 640, 480), None), "SPS"),
    (lambda: codecs(None, AudioTrack(b"")), "AudioSpecificConfig"),
    (lambda: codecs(None, None), "at least one track"),
    (lambda: media_fragment(1, [TrackRun(VIDEO_TRACK_ID, 0, [])]), "at least one sample"),
    (lambda: media_fragment(1, [TrackRun(AUDIO_TRACK_ID, -1, [Sample(b"\x21", 1024)])]), "media fragment 1"),
    (lambda: media_fragment(2, [TrackRun(AUDIO_TRACK_ID, 0, [Sample(b"\x21", 2**32)])]), "media fragment 2"),
])
def test_bad_input_is_a_value_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
