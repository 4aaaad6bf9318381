"""The HLS playlists and blocking rules, pure (hub/core/hls_playlist.py)."""

from __future__ import annotations

import pytest

from hub.core.hls_playlist import BlockingState, Names, Window, first_msn, program_date_time

NAMES = Names("r1")


def window_with(segments: list[int], open_parts: int = 0, keep: int = 3) -> Window:
    """Complete segments with these part counts, then an open one with ``open_parts`` parts."""
    window = Window(NAMES, segment_s=2.0, part_s=0.5, keep=keep)
    msn = 100
    for parts in segments:
        window.open_segment(msn, 0, 1_000.0 + 2 * (msn - 100), discontinuity=False)
        for index in range(parts):
            window.add_part(0.5, independent=index == 0, size=1000)
        window.close_segment()
        msn += 1
    window.open_segment(msn, 0, 1_000.0 + 2 * (msn - 100), discontinuity=False)
    for index in range(open_parts):
        window.add_part(0.5, independent=index == 0, size=1000)
    return window


def test_low_latency_playlist_lists_segments_parts_and_the_preload_hint() -> None:
    text = window_with([4, 4], open_parts=2).render(low_latency=True)
    lines = text.splitlines()
    assert lines[:6] == ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:2",
                         "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500",
                         "#EXT-X-PART-INF:PART-TARGET=0.500", "#EXT-X-MEDIA-SEQUENCE:100"]
    assert lines[6] == '#EXT-X-MAP:URI="r1/i0.mp4"'
    assert lines[7] == "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:40.000Z"
    assert lines[8] == '#EXT-X-PART:DURATION=0.500,URI="r1/p100.0.m4s",INDEPENDENT=YES'
    assert "#EXTINF:2.000," in lines and "r1/s100.m4s" in lines and "r1/s101.m4s" in lines
    assert lines[-2] == '#EXT-X-PART:DURATION=0.500,URI="r1/p102.1.m4s"'
    assert lines[-1] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="r1/p102.2.m4s"'


def test_plain_playlist_has_whole_segments_only() -> None:
    text = window_with([4, 4], open_parts=2).render(low_latency=False)
    assert "#EXT-X-PART" not in text and "PRELOAD-HINT" not in text and "SERVER-CONTROL" not in text
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["r1/s100.m4s", "r1/s101.m4s"]


def test_parts_are_listed_for_the_last_three_segments_only() -> None:
    text = window_with([4, 4, 4, 4], open_parts=1, keep=6).render(low_latency=True)
    assert "p100." not in text and "p101.0" in text and "p103.3" in text and "p104.0" in text
    assert "r1/s100.m4s" in text  # the segment itself stays


def test_the_window_keeps_its_segments_and_counts_discontinuities_that_leave() -> None:
    window = Window(NAMES, 2.0, 0.5, keep=2)
    for msn in range(10, 15):
        window.open_segment(msn, msn // 12, 0.0, discontinuity=msn == 12)
        window.add_part(2.0, True, 10)
        window.close_segment()
    assert [s.msn for s in window.segments] == [12, 13, 14]  # keep + 1
    window.open_segment(15, 1, 0.0, discontinuity=False)
    assert [s.msn for s in window.segments] == [13, 14, 15]
    assert window.discontinuity_sequence == 1  # segment 12 carried its tag out
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in window.render(low_latency=True)


def test_a_new_init_segment_is_named_after_a_discontinuity() -> None:
    window = Window(NAMES, 2.0, 0.5, keep=4)
    window.open_segment(1, 0, 0.0, False)
    window.add_part(2.0, True, 10)
    window.close_segment()
    window.open_segment(2, 1, 5.0, True)
    window.add_part(2.0, True, 10)
    window.close_segment()
    lines = window.render(low_latency=False).splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1] == '#EXT-X-MAP:URI="r1/i1.mp4"'
    assert lines.count('#EXT-X-MAP:URI="r1/i0.mp4"') == 1


@pytest.mark.parametrize(("msn", "part", "expected"), [
    (101, None, BlockingState.READY),  # complete
    (102, None, BlockingState.WAIT),  # open
    (102, 1, BlockingState.READY),  # its part 1 exists
    (102, 2, BlockingState.WAIT),  # the preload hint
    (101, 4, BlockingState.READY),  # past 101's last part: 102's first, which exists
    (103, 0, BlockingState.WAIT),  # the next segment
    (104, None, BlockingState.WAIT),  # two ahead: allowed
    (105, None, BlockingState.BAD),  # too far ahead (RFC 8216bis: 400)
    (5, None, BlockingState.READY),  # long gone: the current playlist
    (-1, None, BlockingState.BAD),
    (102, -1, BlockingState.BAD),
])
def test_blocking_requests(msn: int, part: int | None, expected: BlockingState) -> None:
    assert window_with([4, 4], open_parts=2).blocking_state(msn, part) is expected


def test_past_the_last_part_of_a_segment_just_completed_waits_for_the_next_segment() -> None:
    window = window_with([4], open_parts=0)
    assert window.blocking_state(100, 4) is BlockingState.WAIT
    window.add_part(0.5, True, 10)
    assert window.blocking_state(100, 4) is BlockingState.READY


def test_program_date_time_and_first_msn() -> None:
    assert program_date_time(1_787_022_000.1234) == "2026-08-18T03:00:00.123Z"
    assert first_msn(1_787_022_001.0, 2.0) == 893_511_000
    window = Window(NAMES, 2.0, 0.5, keep=3)
    with pytest.raises(ValueError, match="no open segment"):
        window.add_part(0.5, True, 1)
    window.open_segment(1, 0, 0.0, False)
    with pytest.raises(ValueError, match="closed first"):
        window.open_segment(2, 0, 0.0, False)
