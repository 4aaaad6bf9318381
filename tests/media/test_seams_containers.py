"""Pins the PyAV behaviour ``hub.media.containers`` relies on (see its docstring, points 1-4).

If one of these fails after an upgrade, re-read PyAV's ``container/output.py`` and
``stream.py`` and FFmpeg's Matroska/MP4 muxers' options, and adapt the seam (and
docs/recordings.md) before anything else.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.container.output
import av.stream
import pytest

from hub.media import containers
from hub.media.containers import PacketWriter, Track
from hub.media.frames import annexb_nal_units, video_size
from tests.locked import check_locked
from tests.media.rtp_samples import encoded_frames

FORMATS = {"webm": "VP8", "mp4": "H264"}


def test_installed_pyav_is_the_locked_one() -> None:
    check_locked("av")


def test_template_streams_are_not_opened_and_their_context_reaches_the_stream() -> None:
    # Point 1: add_stream_from_template marks the context initialised; start_encoding then
    # skips ctx.open() and copies the context's parameters to the stream.
    output = (Path(av.container.output.__file__).parent / "output.py").read_text()
    assert "py_codec_context._ctxflags |= 1  # _template_initialized = True" in output
    assert "if not (ctx._ctxflags & 1):  # template_initialized\n                    ctx.open()" in output
    assert "stream._finalize_for_output()" in output
    stream_source = (Path(av.stream.__file__).parent / "stream.py").read_text()
    assert "lib.avcodec_parameters_from_context(\n                self.ptr.codecpar, self.codec_context.ptr" in (
        stream_source)
    assert ("def add_stream_from_template(\n        self, template: Stream, opaque: bool | None = None, **kwargs"
            in output)


def write(tmp_path: Path, fmt: str, options: dict[str, str], frames: int = 30) -> tuple[Path, list[tuple[str, bytes]]]:
    codec = FORMATS[fmt]
    video = encoded_frames(codec, frames)
    audio = encoded_frames("opus", frames * 4 // 3)  # 20 ms each: the same 2 s as the video at 15 fps
    size = video_size(f"video/{codec.lower()}", video[0][0])
    assert size is not None
    extradata = containers.h264_extradata(annexb_nal_units(video[0][0])) if codec == "H264" else b""
    tracks = [Track("video", codec.lower(), *size, extradata=extradata),
              Track("audio", "opus", extradata=containers.opus_head())]
    path = tmp_path / f"part{containers.SUFFIXES[fmt]}"
    writer = PacketWriter(path, fmt, tracks, options)
    items = sorted([(t, "video", d, k) for d, k, t in video] + [(t, "audio", d, k) for d, k, t in audio])
    written = []
    for time_s, kind, data, keyframe in items:
        writer.write(kind, data, keyframe, time_s)
        written.append((kind, data))
    assert not any(stream.codec_context.is_open for stream in writer._streams.values())  # no encoder
    writer.close()
    return path, written


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoded_packets_are_muxed_as_given_with_their_parameters(tmp_path: Path, fmt: str) -> None:
    path, written = write(tmp_path, fmt, containers.PART_OPTIONS[fmt])
    tracks = {t.kind: t for t in containers.read_tracks(path)}
    assert (tracks["video"].codec, tracks["video"].width, tracks["video"].height) == (FORMATS[fmt].lower(), 320, 240)
    assert tracks["audio"].codec == "opus" and tracks["audio"].channels == 2
    assert tracks["audio"].extradata.startswith(b"OpusHead")
    packets = list(containers.read_packets(path))
    assert sorted(p.kind for p in packets) == sorted(kind for kind, _ in written)
    audio = [p.data for p in packets if p.kind == "audio"]
    assert audio == [d for kind, d in written if kind == "audio"]
    if fmt == "webm":
        assert [p.data for p in packets if p.kind == "video"] == [d for kind, d in written if kind == "video"]
    else:
        # Point 2: Annex B in, avcC + length-prefixed NAL units out (the muxer converted them)
        assert tracks["video"].extradata[0] == 1
        first = next(p for p in packets if p.kind == "video")
        assert first.keyframe and int.from_bytes(first.data[:4], "big") < len(first.data)
    times = [p.time_s for p in packets if p.kind == "video"]
    assert times == sorted(times) and times[-1] == pytest.approx(29 / 15, abs=0.002)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_part_cut_anywhere_reads_up_to_its_last_whole_packet(tmp_path: Path, fmt: str) -> None:
    # Point 3: what kill -9 leaves (the muxer's last buffered cluster/fragment never written)
    path, written = write(tmp_path, fmt, containers.PART_OPTIONS[fmt], frames=45)
    whole = list(containers.read_packets(path))
    data = path.read_bytes()
    cut = tmp_path / f"cut{path.suffix}"
    counts = []
    for size in range(0, len(data), max(1, len(data) // 97)):
        cut.write_bytes(data[:size])
        try:
            packets = list(containers.read_packets(cut))
        except containers.ContainerError:
            packets = []  # the header itself was cut
        for kind in ("video", "audio"):
            got = [p.data for p in packets if p.kind == kind]
            assert got == [p.data for p in whole if p.kind == kind][:len(got)], f"cut at {size}"
        counts.append(len(packets))
    assert counts == sorted(counts) and counts[-1] > len(whole) * 0.6


@pytest.mark.parametrize("fmt", FORMATS)
def test_part_options_write_at_least_every_second(tmp_path: Path, fmt: str) -> None:
    # Point 3: the file holds everything but the last second or so while still open
    codec = FORMATS[fmt]
    video = encoded_frames(codec, 60, keyframe_every=60)  # 4 s, one keyframe: time limits must cut
    size = video_size(f"video/{codec.lower()}", video[0][0])
    assert size is not None
    extradata = containers.h264_extradata(annexb_nal_units(video[0][0])) if codec == "H264" else b""
    path = tmp_path / f"open{containers.SUFFIXES[fmt]}"
    writer = PacketWriter(path, fmt, [Track("video", codec.lower(), *size, extradata=extradata)],
                          containers.PART_OPTIONS[fmt])
    for data, keyframe, time_s in video:
        writer.write("video", data, keyframe, time_s)
    readable = [p.time_s for p in containers.read_packets(path)]  # before close
    writer.close()
    assert readable and readable[-1] >= video[-1][2] - 1.5


@pytest.mark.parametrize("fmt", FORMATS)
def test_finished_files_carry_their_seek_index_where_browsers_find_it(tmp_path: Path, fmt: str) -> None:
    # Point 4
    path, _ = write(tmp_path, fmt, containers.FINISHED_OPTIONS[fmt])
    data = path.read_bytes()
    if fmt == "webm":
        assert b"\x1c\x53\xbb\x6b" in data  # Cues
    else:
        assert data.index(b"moov") < data.index(b"mdat")  # faststart
    with av.open(str(path)) as container:
        assert container.duration is not None and container.duration > 1_500_000


@pytest.mark.parametrize("fmt", FORMATS)
def test_parts_keep_their_packets_own_times(tmp_path: Path, fmt: str) -> None:
    # Point 3: a part that starts 7.25 s into the recording reads back at 7.25 s, each track
    # at its own start (the MP4 muxer would otherwise move both to 0)
    codec = FORMATS[fmt]
    video = encoded_frames(codec, 15)
    size = video_size(f"video/{codec.lower()}", video[0][0])
    assert size is not None
    extradata = containers.h264_extradata(annexb_nal_units(video[0][0])) if codec == "H264" else b""
    path = tmp_path / f"late{containers.SUFFIXES[fmt]}"
    writer = PacketWriter(path, fmt, [Track("video", codec.lower(), *size, extradata=extradata),
                                      Track("audio", "opus", extradata=containers.opus_head())],
                          containers.PART_OPTIONS[fmt])
    items = sorted([(t + 7.3, "video", d, k) for d, k, t in video]
                   + [(t + 7.25, "audio", d, k) for d, k, t in encoded_frames("opus", 20)])
    for time_s, kind, data, keyframe in items:
        writer.write(kind, data, keyframe, time_s)
    writer.close()
    packets = list(containers.read_packets(path))
    assert next(p.time_s for p in packets if p.kind == "video") == pytest.approx(7.3, abs=0.002)
    assert next(p.time_s for p in packets if p.kind == "audio") == pytest.approx(7.25, abs=0.002)
