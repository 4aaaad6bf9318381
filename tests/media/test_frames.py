"""FrameAssembler: RTP packets (real ones from aiortc's packetisers, and synthetic) → frames."""

from __future__ import annotations

import random

import pytest

from hub.media import seams_keyframes
from hub.media.frames import Frame, FrameAssembler, annexb_nal_units, video_size
from hub.media.keyframes import is_keyframe
from tests.media import rtp_samples
from tests.media.rtp_samples import Packet, Sample

CODECS = ["VP8", "H264"]


def assembler(codec: str, window: int | None = None) -> FrameAssembler:
    kind = "audio" if codec == "opus" else "video"
    return FrameAssembler(f"{kind}/{codec.lower()}", seams_keyframes.depayload, window)


def push_all(assembler: FrameAssembler, packets: list[Packet]) -> list[Frame]:
    frames: list[Frame] = []
    for packet in packets:
        frames.extend(assembler.push(*packet))
    return frames


def expected(codec: str, sample: Sample, indexes: range | list[int]) -> list[bytes]:
    mime = f"video/{codec.lower()}"
    return [b"".join(seams_keyframes.depayload(mime, p[3]) for p in sample.frame_packets[i]) for i in indexes]


@pytest.fixture(scope="module")
def samples() -> dict[str, Sample]:
    return {codec: rtp_samples.video(codec, frames=30) for codec in CODECS}


@pytest.mark.parametrize("codec", CODECS)
def test_in_order_packets_give_every_frame_whole(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    assert max(len(group) for group in sample.frame_packets) > 3  # really multi-packet frames
    frames = push_all(assembler(codec), sample.packets)
    assert [f.data for f in frames] == expected(codec, sample, range(30))
    assert [i for i, f in enumerate(frames) if f.keyframe] == sample.keyframes == [0, 10, 20]
    assert [f.timestamp for f in frames] == [group[0][1] for group in sample.frame_packets]
    assert all(is_keyframe(f"video/{codec.lower()}", f.data) == f.keyframe for f in frames)


@pytest.mark.parametrize("codec", CODECS)
def test_reordered_and_duplicated_packets_within_the_window(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    shuffled = list(sample.packets)
    rng = random.Random(7)
    for start in range(0, len(shuffled) - 6, 6):  # shuffle inside blocks of 6: reordering
        block = shuffled[start:start + 6]
        rng.shuffle(block)
        shuffled[start:start + 6] = block
    shuffled[40:40] = [shuffled[35], shuffled[12]]  # a duplicate and a late retransmission
    a = assembler(codec)
    frames = push_all(a, shuffled)
    # the stream's first packet may have been shuffled away from the front: the first
    # keyframe is then waited for, as at any start; from there every frame is whole
    first = next(i for i, f in enumerate(frames) if f.keyframe)
    assert first == 0 or frames[0].keyframe
    datas = [f.data for f in frames]
    assert datas == expected(codec, sample, range(30 - len(datas), 30))
    assert a.gaps == 0


@pytest.mark.parametrize("codec", CODECS)
def test_a_lost_packet_drops_until_the_next_keyframe_and_asks_once(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    lost = sample.frame_packets[3][1]  # inside frame 3 (a delta frame)
    also_lost = sample.frame_packets[6][0]  # a second loss before the keyframe: no second request
    packets = [p for p in sample.packets if p not in (lost, also_lost)]
    a = assembler(codec, window=8)
    frames: list[Frame] = []
    requests = 0
    for packet in packets:
        frames.extend(a.push(*packet))
        requests += a.take_keyframe_request()
    assert [f.data for f in frames] == expected(codec, sample, [0, 1, 2, *range(10, 30)])
    assert requests == 1
    assert a.gaps == 2


@pytest.mark.parametrize("codec", CODECS)
def test_a_lost_frame_between_frames_is_a_gap(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    lost = sample.frame_packets[14]
    packets = [p for p in sample.packets if p not in lost]
    a = assembler(codec, window=4)
    frames = push_all(a, packets)
    assert [f.data for f in frames] == expected(codec, sample, [*range(14), *range(20, 30)])
    assert a.take_keyframe_request() is True
    assert a.take_keyframe_request() is False


@pytest.mark.parametrize("codec", CODECS)
def test_a_late_retransmission_inside_the_window_fills_the_hole(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    packets = list(sample.packets)
    held = packets.pop(50)
    packets.insert(50 + 20, held)  # arrives 20 packets late, as RTX after a NACK
    a = assembler(codec)  # default window: 64
    assert [f.data for f in push_all(a, packets)] == expected(codec, sample, range(30))
    assert a.gaps == 0


@pytest.mark.parametrize("codec", CODECS)
def test_start_waits_for_a_keyframe(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    start = sample.frame_packets[4][2][0]  # mid-frame, mid-GOP
    packets = [p for p in sample.packets if ((p[0] - start) & 0xFFFF) < 0x8000]
    a = assembler(codec)
    frames = push_all(a, packets)
    assert [f.data for f in frames] == expected(codec, sample, range(10, 30))
    assert a.take_keyframe_request() is False  # the caller asks at start itself


@pytest.mark.parametrize("codec", CODECS)
def test_sequence_numbers_wrap(codec: str) -> None:
    sample = rtp_samples.video(codec, frames=12, first_seq=65500, first_ts=0xFFFFFFFF - 6000 * 3)
    assert sample.packets[0][0] > sample.packets[-1][0]  # it did wrap
    frames = push_all(assembler(codec), sample.packets)
    assert [f.data for f in frames] == expected(codec, sample, range(12))


@pytest.mark.parametrize("codec", CODECS)
def test_reset_for_a_new_publisher_whose_numbers_go_back(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    a = assembler(codec)
    push_all(a, sample.packets[:100])
    other = rtp_samples.video(codec, frames=12, first_seq=200, first_ts=77)
    a.reset()
    assert [f.data for f in push_all(a, other.packets)] == expected(codec, other, range(12))


@pytest.mark.parametrize("codec", CODECS)
def test_numbers_jumping_back_without_a_reset_recover(codec: str, samples: dict[str, Sample]) -> None:
    # A new sender whose numbers are "behind": first taken as late packets, then as a new start.
    sample = samples[codec]
    a = assembler(codec, window=4)
    push_all(a, sample.packets[:100])
    other = rtp_samples.video(codec, frames=30, first_seq=(sample.packets[0][0] - 3000) & 0xFFFF)
    frames = push_all(a, other.packets)
    assert [f.data for f in frames] == expected(codec, other, range(30 - len(frames), 30))
    assert frames and frames[0].keyframe


def test_a_frame_ends_at_the_next_timestamp_if_its_marker_never_came(samples: dict[str, Sample]) -> None:
    sample = samples["VP8"]
    packets = [(s, t, 0 if (s, t, m, p) == sample.frame_packets[2][-1] else m, p)
               for s, t, m, p in sample.packets]
    frames = push_all(assembler("VP8"), packets)
    assert [f.data for f in frames] == expected("VP8", sample, range(30))


def test_opus_one_packet_one_frame_reordered_and_with_a_loss() -> None:
    sample = rtp_samples.audio(frames=20)  # sequence numbers and timestamps wrap
    packets = list(sample.packets)
    packets[3], packets[4] = packets[4], packets[3]
    del packets[10]
    a = assembler("opus")
    frames = push_all(a, packets)
    assert [f.data for f in frames] == [p[3] for i, p in enumerate(sample.packets) if i != 10]
    assert all(f.keyframe for f in frames)
    assert [f.timestamp for f in frames][:3] == [0xFFFFF000, 0xFFFFF000 + 960, 0xFFFFF000 + 1920]
    assert a.take_keyframe_request() is False  # audio never waits for keyframes


def test_a_malformed_payload_is_a_gap() -> None:
    # a VP8 payload too short for its descriptor: aiortc's depayloader raises ValueError
    sample = rtp_samples.video("VP8", frames=12)
    packets = list(sample.packets)
    s, t, m, _ = packets[30]
    packets[30] = (s, t, m, b"\x90")
    a = assembler("VP8")
    frames = push_all(a, packets)
    assert a.gaps == 1 and a.take_keyframe_request()
    assert len(frames) < 12 and frames[-1].data == expected("VP8", sample, [11])[0]


@pytest.mark.parametrize("codec", CODECS)
def test_video_size_from_the_keyframe_header(codec: str, samples: dict[str, Sample]) -> None:
    sample = samples[codec]
    keyframe = expected(codec, sample, [0])[0]
    assert video_size(f"video/{codec.lower()}", keyframe) == (320, 240)
    assert video_size(f"video/{codec.lower()}", expected(codec, sample, [1])[0]) is None  # a delta frame


def test_h264_sps_with_cropping_and_high_profile() -> None:
    # 1920x1080 High profile SPS (x264): 1088 coded lines, cropped to 1080
    sps = bytes.fromhex("6764002aacd940780227e5c05a808080a0000003002000000781e30632c0")
    assert video_size("video/h264", b"\x00\x00\x00\x01" + sps) == (1920, 1080)
    assert video_size("video/h264", b"\x00\x00\x00\x01\x67\x42") is None  # cut short
    assert video_size("video/vp8", b"\x00" * 5) is None


def test_annexb_nal_units_with_3_and_4_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\x01\x02\x00\x00\x01\x68\x03\x00\x00\x00\x01\x65\x04"
    assert annexb_nal_units(data) == [b"\x67\x01\x02", b"\x68\x03", b"\x65\x04"]
