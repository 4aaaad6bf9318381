"""CMAF (fragmented MP4) for low-latency HLS: init segments and media fragments as bytes.

Pure: no I/O, no PyAV, no clock. The hub remuxes relayed H.264 and AAC into an
initialisation segment (``init_segment``: ``ftyp`` + ``moov``, sent once per rendition)
and one media fragment per LL-HLS part (``media_fragment``: ``moof`` + ``mdat``); a segment
is its parts' fragments concatenated, so nothing is written twice.

The boxes follow ISO/IEC 14496-12 (ISO BMFF), 14496-14 (``esds``), 14496-15 (``avcC``)
and the CMAF profile (23000-19) that hls.js, Safari and Chromium's MSE accept:

- ``ftyp``: major brand ``iso6``, compatible ``iso6 cmfc mp41``. ``cmfc`` (CMAF's
  constraints) only when there is one track: a CMAF track is one track per file, while a
  muxed audio + video rendition (which HLS allows) is plain fragmented MP4. Browsers'
  MSE ignore the brands (w3c/mse-byte-stream-format-isobmff#4); players that check look
  for an ISO brand, which ``iso6`` and ``mp41`` are.
- ``moov``: every duration 0 (the samples are all in fragments), empty sample tables, one
  ``trex`` per track with no defaults: each ``trun`` says everything about its samples.
- ``moof``: per track a ``tfhd`` with default-base-is-moof (CMAF requires it: offsets are
  counted from this ``moof``, so a fragment can be cut out and served alone), a 64-bit
  ``tfdt``, and a ``trun`` giving every sample's duration, size and flags. No composition
  offsets: the publishers' H.264 (Constrained Baseline, zerolatency) has no B-frames.

It is called for every part of every packaged station, so a fragment is built with
precompiled ``struct`` formats and one ``b"".join``: the samples' bytes are copied once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VIDEO_TRACK_ID = 1
AUDIO_TRACK_ID = 2
VIDEO_TIMESCALE = 90000  # RTP clock of H.264
MOVIE_TIMESCALE = 1000  # mvhd's; unused (every duration is 0) but must not be 0

MAJOR_BRAND = b"iso6"

H264_NAL_AUD = 9
H264_NAL_SPS = 7
H264_NAL_PPS = 8
# profile_idc values whose SPS carries chroma_format_idc and bit depths (H.264 7.3.2.1.1,
# plus 144, the withdrawn High 4:4:4); their avcC needs those too (14496-15 5.3.3.1.2)
H264_HIGH_PROFILES = frozenset({100, 110, 122, 144, 244, 44, 83, 86, 118, 128, 134, 135, 138, 139})

# trun sample flags (14496-12 8.8.3.1): sample_depends_on in bits 24-25, is_non_sync in bit 16
SYNC_SAMPLE = 0x02000000  # depends on no other sample: a keyframe, and every audio frame
NON_SYNC_SAMPLE = 0x01010000  # depends on others, not a sync sample

_TFHD_FLAGS = 0x020000  # default-base-is-moof
_TRUN_FLAGS = 0x000701  # data-offset, sample-duration, sample-size, sample-flags present
_MOOF_FIXED = 8 + 16  # moof header + mfhd
_TRUN_FIXED = 20  # trun without its entries
_TRAF_FIXED = 8 + 16 + 20 + _TRUN_FIXED  # traf header + tfhd + tfdt v1 + trun

# moof header + mfhd; then per track traf + tfhd + tfdt + trun up to its first entry
_MOOF_HEAD = struct.Struct(">I4sI4sII")
_TRAF_HEAD = struct.Struct(">I4s" "I4sII" "I4sIQ" "I4sIIi")
_TRUN_ENTRY = struct.Struct(">III")  # per sample: duration, size, flags
_BOX_HEAD = struct.Struct(">I4s")
_LENGTH = struct.Struct(">I")

_IDENTITY_MATRIX = struct.pack(">9i", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = (ord("u") - 0x60) << 10 | (ord("n") - 0x60) << 5 | (ord("d") - 0x60)


@dataclass(frozen=True)
class VideoTrack:
    sps: bytes  # one SPS NAL unit, no start code
    pps: bytes  # one PPS NAL unit, no start code
    width: int
    height: int


@dataclass(frozen=True)
class AudioTrack:
    config: bytes  # AAC AudioSpecificConfig (from the encoder's extradata)
    sample_rate: int = 48000  # also the audio track's timescale
    channels: int = 2


@dataclass(frozen=True, slots=True)
class Sample:
    data: bytes  # video: one access unit, length-prefixed NAL units (avcc_sample); audio: one raw AAC frame
    duration: int  # in the track's timescale
    keyframe: bool = True  # audio samples are all sync samples


@dataclass(frozen=True)
class TrackRun:
    track_id: int
    base_time: int  # tfdt baseMediaDecodeTime, in the track's timescale (64-bit)
    samples: list[Sample]


# --- media fragments ------------------------------------------------------------------


def media_fragment(sequence: int, runs: list[TrackRun]) -> bytes:
    """One ``moof`` (``mfhd`` with ``sequence``, one ``traf`` per non-empty run: ``tfhd``
    with default-base-is-moof, ``tfdt`` version 1, ``trun`` with data offset + per-sample
    duration, size and flags) followed by one ``mdat`` holding the runs' samples in order.

    ``sequence`` should start at 1 and grow by one per fragment of a rendition. Raises
    ValueError if no run has a sample or a number does not fit its field.
    """
    runs = [run for run in runs if run.samples]
    if not runs:
        raise ValueError("a media fragment needs at least one sample")
    moof_size = _MOOF_FIXED + sum(_TRAF_FIXED + _TRUN_ENTRY.size * len(run.samples) for run in runs)
    offset = moof_size + 8  # the first sample's byte, counted from the moof's first byte
    pack_entry = _TRUN_ENTRY.pack
    moof: list[bytes] = []  # moof, then mdat's header
    mdat: list[bytes] = []  # the samples' bytes
    try:
        moof.append(_MOOF_HEAD.pack(moof_size, b"moof", 16, b"mfhd", 0, sequence))
        for run in runs:
            count = len(run.samples)
            trun_size = _TRUN_FIXED + _TRUN_ENTRY.size * count
            moof.append(_TRAF_HEAD.pack(_TRAF_FIXED - _TRUN_FIXED + trun_size, b"traf",
                                        16, b"tfhd", _TFHD_FLAGS, run.track_id,
                                        20, b"tfdt", 1 << 24, run.base_time,
                                        trun_size, b"trun", _TRUN_FLAGS, count, offset))
            for sample in run.samples:
                data = sample.data
                flags = SYNC_SAMPLE if sample.keyframe else NON_SYNC_SAMPLE
                moof.append(pack_entry(sample.duration, len(data), flags))
                mdat.append(data)
                offset += len(data)
        moof.append(_BOX_HEAD.pack(offset - moof_size, b"mdat"))
    except struct.error as exc:  # a number out of its field's range
        raise ValueError(f"media fragment {sequence}: {exc}") from exc
    return b"".join(moof + mdat)


def avcc_sample(nal_units: list[bytes]) -> bytes:
    """NAL units (no start codes) → 4-byte big-endian length-prefixed concatenation, an
    MP4 video sample. Drops access unit delimiters (type 9: MP4 forbids them in samples
    described by ``avc1``); keeps SPS, PPS, SEI and slices as given. Raises ValueError on
    an empty list or an empty NAL unit."""
    if not nal_units:
        raise ValueError("an H.264 sample needs at least one NAL unit")
    parts: list[bytes] = []
    for nal in nal_units:
        if not nal:
            raise ValueError("empty NAL unit in an H.264 access unit")
        if nal[0] & 0x1F != H264_NAL_AUD:
            parts += (_LENGTH.pack(len(nal)), nal)
    if not parts:
        raise ValueError("an H.264 access unit of nothing but delimiters")
    return b"".join(parts)


# --- playlists ------------------------------------------------------------------------


def codecs(video: VideoTrack | None, audio: AudioTrack | None) -> str:
    """The RFC 6381 ``CODECS`` string for an HLS playlist, e.g. ``"avc1.42c01f,mp4a.40.2"``:
    avc1 + profile_idc, constraint flags and level_idc in hex from the SPS; mp4a.40 + the
    AAC audio object type (decimal) from the AudioSpecificConfig. Raises ValueError on a
    malformed SPS or config, or with neither track."""
    parts = []
    if video is not None:
        _check_sps(video.sps)
        parts.append("avc1." + video.sps[1:4].hex())
    if audio is not None:
        _check_audio(audio)
        parts.append(f"mp4a.40.{_audio_object_type(audio.config)}")
    if not parts:
        raise ValueError("CODECS needs at least one track")
    return ",".join(parts)


def _audio_object_type(config: bytes) -> int:
    """The AudioSpecificConfig's first field (14496-3 1.6.2.1): 5 bits, 31 escapes to 6 more."""
    aot = config[0] >> 3
    if aot == 31:
        aot = 32 + ((config[0] & 0x07) << 3 | config[1] >> 5)
    return aot


# --- init segments --------------------------------------------------------------------


def init_segment(video: VideoTrack | None, audio: AudioTrack | None) -> bytes:
    """``ftyp`` + ``moov`` (``mvhd``, one ``trak`` per given track with ``avc1``/``avcC`` or
    ``mp4a``/``esds``, ``mvex``/``trex``). The video track is ``VIDEO_TRACK_ID`` at
    ``VIDEO_TIMESCALE``, the audio ``AUDIO_TRACK_ID`` at its sample rate. Raises ValueError
    with neither track, or on a malformed SPS, PPS, config or size."""
    if video is None and audio is None:
        raise ValueError("an init segment needs at least one track")
    traks: list[bytes] = []
    trexs: list[bytes] = []
    if video is not None:
        _check_video(video)
        traks.append(_trak(VIDEO_TRACK_ID, VIDEO_TIMESCALE, video.width, video.height,
                           b"vide", b"VideoHandler", _full_box(b"vmhd", 0, 1, bytes(8)), _avc1(video)))
        trexs.append(_trex(VIDEO_TRACK_ID))
    if audio is not None:
        _check_audio(audio)
        traks.append(_trak(AUDIO_TRACK_ID, audio.sample_rate, 0, 0,
                           b"soun", b"SoundHandler", _full_box(b"smhd", 0, 0, bytes(4)), _mp4a(audio)))
        trexs.append(_trex(AUDIO_TRACK_ID))
    brands = (MAJOR_BRAND, b"cmfc", b"mp41") if len(traks) == 1 else (MAJOR_BRAND, b"mp41")
    ftyp = _box(b"ftyp", MAJOR_BRAND, bytes(4), *brands)
    mvhd = _full_box(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),
                     struct.pack(">iH10x", 0x00010000, 0x0100), _IDENTITY_MATRIX, bytes(24),
                     _LENGTH.pack(AUDIO_TRACK_ID + 1))
    return ftyp + _box(b"moov", mvhd, *traks, _box(b"mvex", *trexs))


def _check_sps(sps: bytes) -> None:
    if len(sps) < 4 or sps[0] & 0x1F != H264_NAL_SPS:
        raise ValueError(f"not an H.264 SPS NAL unit (at least 4 bytes, type 7): {sps[:8].hex()}")


def _check_video(video: VideoTrack) -> None:
    _check_sps(video.sps)
    if len(video.pps) < 2 or video.pps[0] & 0x1F != H264_NAL_PPS:
        raise ValueError(f"not an H.264 PPS NAL unit (at least 2 bytes, type 8): {video.pps[:8].hex()}")
    if len(video.sps) > 0xFFFF or len(video.pps) > 0xFFFF:
        raise ValueError("an SPS or PPS longer than avcC's 16-bit length")
    if not (0 < video.width <= 0xFFFF and 0 < video.height <= 0xFFFF):
        raise ValueError(f"video size {video.width}x{video.height} out of range")


def _check_audio(audio: AudioTrack) -> None:
    if len(audio.config) < 2:
        raise ValueError(f"an AAC AudioSpecificConfig has at least 2 bytes: {audio.config.hex()!r}")
    if not 0 < audio.sample_rate <= 0xFFFF:  # the sample entry holds it as 16.16
        raise ValueError(f"audio sample rate {audio.sample_rate} out of range")
    if not 0 < audio.channels <= 0xFFFF:
        raise ValueError(f"audio channel count {audio.channels} out of range")


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return _BOX_HEAD.pack(8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, _LENGTH.pack(version << 24 | flags), *payload)


def _trak(track_id: int, timescale: int, width: int, height: int, handler: bytes, name: bytes,
          media_header: bytes, sample_entry: bytes) -> bytes:
    volume = 0 if handler == b"vide" else 0x0100
    tkhd = _full_box(b"tkhd", 0, 0x000003,  # enabled, in movie
                     struct.pack(">IIIII8xhhH2x", 0, 0, track_id, 0, 0, 0, 0, volume),
                     _IDENTITY_MATRIX, struct.pack(">II", width << 16, height << 16))
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    hdlr = _full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name, b"\x00")
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, _LENGTH.pack(1), _full_box(b"url ", 0, 1)))  # 1: same file
    stbl = _box(b"stbl", _full_box(b"stsd", 0, 0, _LENGTH.pack(1), sample_entry),
                _full_box(b"stts", 0, 0, bytes(4)), _full_box(b"stsc", 0, 0, bytes(4)),
                _full_box(b"stsz", 0, 0, bytes(8)), _full_box(b"stco", 0, 0, bytes(4)))
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", media_header, dinf, stbl)))


def _trex(track_id: int) -> bytes:
    return _full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))


def _avc1(video: VideoTrack) -> bytes:
    sps, pps = video.sps, video.pps
    avcc = [bytes((1, sps[1], sps[2], sps[3], 0xFC | 3, 0xE0 | 1)),  # version 1, 4-byte lengths, 1 SPS
            struct.pack(">H", len(sps)), sps, struct.pack(">BH", 1, len(pps)), pps]
    if sps[1] in H264_HIGH_PROFILES:
        chroma_format, luma_depth, chroma_depth = _sps_chroma(sps)
        avcc.append(bytes((0xFC | chroma_format, 0xF8 | luma_depth, 0xF8 | chroma_depth, 0)))  # no SPS ext
    entry = struct.pack(">6xH16xHHIIIH32xHh", 1, video.width, video.height, 0x00480000, 0x00480000, 0, 1, 0x0018, -1)
    return _box(b"avc1", entry, _box(b"avcC", *avcc))


def _sps_chroma(sps: bytes) -> tuple[int, int, int]:
    """chroma_format_idc, bit_depth_luma_minus8, bit_depth_chroma_minus8 of a High-profile SPS.

    They follow seq_parameter_set_id right after level_idc (H.264 7.3.2.1.1), all
    Exp-Golomb; emulation prevention bytes are taken out first. Raises ValueError if the
    SPS ends before them."""
    rbsp = sps[4:24].replace(b"\x00\x00\x03", b"\x00\x00")
    bits = "".join(f"{byte:08b}" for byte in rbsp)
    position = 0

    def exp_golomb() -> int:
        nonlocal position
        zeros = bits.find("1", position) - position
        if zeros < 0 or position + 2 * zeros + 1 > len(bits):
            raise ValueError(f"H.264 SPS truncated: {sps.hex()}")
        value = int(bits[position + zeros:position + 2 * zeros + 1], 2) - 1
        position += 2 * zeros + 1
        return value

    exp_golomb()  # seq_parameter_set_id
    chroma_format = exp_golomb()
    if chroma_format == 3:
        position += 1  # separate_colour_plane_flag
    luma_depth, chroma_depth = exp_golomb(), exp_golomb()
    if chroma_format > 3 or luma_depth > 6 or chroma_depth > 6:
        raise ValueError(f"H.264 SPS with impossible chroma format or bit depth: {sps.hex()}")
    return chroma_format, luma_depth, chroma_depth


def _mp4a(audio: AudioTrack) -> bytes:
    entry = struct.pack(">6xH8xHHHHI", 1, audio.channels, 16, 0, 0, audio.sample_rate << 16)
    decoder_config = (struct.pack(">BBBHII", 0x40, 0x05 << 2 | 1, 0, 0, 0, 0)  # AAC, audio stream; sizes unknown
                      + _descriptor(0x05, audio.config))  # DecoderSpecificInfo
    es = (struct.pack(">HB", AUDIO_TRACK_ID, 0)  # ES_ID, no dependencies, URL or OCR
          + _descriptor(0x04, decoder_config)  # DecoderConfigDescriptor
          + _descriptor(0x06, b"\x02"))  # SLConfigDescriptor, predefined 2 (MP4)
    return _box(b"mp4a", entry, _full_box(b"esds", 0, 0, _descriptor(0x03, es)))


def _descriptor(tag: int, body: bytes) -> bytes:
    """An MPEG-4 descriptor (14496-1 8.3.3): tag, size in 7-bit groups (high bit: more), body."""
    size = len(body)
    groups = [size & 0x7F]
    while size > 0x7F:
        size >>= 7
        groups.append(0x80 | size & 0x7F)
    return bytes((tag, *reversed(groups))) + body

