"""The presence state machine, driven with an injected clock."""

from __future__ import annotations

from hub.core.presence import PresenceTable, Transition, flowing_media


def states(transitions: list[Transition]) -> list[tuple[str, str]]:
    return [(t.state, t.reason) for t in transitions]


def test_connect_heartbeat_silence_timeout() -> None:
    table = PresenceTable(heartbeat_s=5, timeout_s=30)
    replaced, transitions = table.connected("s", 1, now=0)
    assert replaced is None and states(transitions) == [("online", "hello")]
    assert table.seen("s", 1, now=5) == []
    transitions, expired = table.tick(now=16)  # > 2 heartbeats of silence
    assert states(transitions) == [("reconnecting", "silent")] and expired == []
    assert states(table.seen("s", 1, now=17)) == [("online", "heartbeat")]
    transitions, expired = table.tick(now=48)
    assert states(transitions) == [("offline", "timeout")] and expired == [("s", 1)]


def test_lost_socket_reconnecting_until_timeout_or_return() -> None:
    table = PresenceTable(heartbeat_s=5, timeout_s=30)
    table.connected("s", 1, now=0)
    assert states(table.disconnected("s", 1, now=3, clean=False)) == [("reconnecting", "lost")]
    replaced, transitions = table.connected("s", 2, now=10)
    assert replaced == 1 and states(transitions) == [("online", "hello")]
    assert states(table.disconnected("s", 2, now=11, clean=True)) == [("offline", "closed")]


def test_replaced_socket_closing_changes_nothing() -> None:
    table = PresenceTable(heartbeat_s=5, timeout_s=30)
    table.connected("s", 1, now=0)
    table.connected("s", 2, now=1)
    assert table.disconnected("s", 1, now=2, clean=False) == []
    assert table.get("s").state == "online"


def test_publishing_is_live_even_without_socket() -> None:
    table = PresenceTable(heartbeat_s=5, timeout_s=30)
    assert states(table.publishing("obs", True, now=0)) == [("live", "published")]
    table.connected("obs", 1, now=1)
    assert table.get("obs").state == "live"
    assert states(table.publishing("obs", False, now=2)) == [("online", "unpublished")]
    assert states(table.forget_connection("obs", now=3, reason="node_lost")) == [("offline", "node_lost")]


def test_since_is_the_transition_time() -> None:
    table = PresenceTable(heartbeat_s=5, timeout_s=30)
    table.connected("s", 1, now=100)
    assert table.get("s").since == 100
    table.seen("s", 1, now=104)
    assert table.get("s").since == 100


def test_a_stalled_stream_is_not_live_until_its_media_resumes() -> None:
    table = PresenceTable(heartbeat_s=5, timeout_s=30)
    table.connected("s", 1, now=0)
    assert states(table.publishing("s", True, now=1)) == [("live", "published")]
    assert table.media_flow("s", "video", now=2) == (False, [])  # already video: nothing to announce
    changed, transitions = table.media_flow("s", "", now=10)
    assert changed and states(transitions) == [("reconnecting", "media_stalled")]
    assert table.get("s").since == 10
    table.seen("s", 1, now=11)  # heartbeats go on: the socket is fine, the media is not
    assert table.get("s").state == "reconnecting"
    changed, transitions = table.media_flow("s", "audio", now=12)
    assert changed and states(transitions) == [("live", "media_resumed")]
    changed, transitions = table.media_flow("s", "video", now=20)  # video back: same state, announced
    assert changed and transitions == [] and table.get("s").media == "video"
    table.seen("s", 1, now=29)
    assert states(table.publishing("s", False, now=30)) == [("online", "unpublished")]
    assert table.get("s").media == "" and table.media_flow("s", "video", now=31) == (False, [])


def test_flowing_media_from_the_ages_of_the_last_packets() -> None:
    assert flowing_media(audio_age_s=0.1, video_age_s=0.2, stall_s=3) == "video"
    assert flowing_media(audio_age_s=0.1, video_age_s=3.5, stall_s=3) == "audio"  # stepped down to audio
    assert flowing_media(audio_age_s=9.0, video_age_s=0.5, stall_s=3) == "video"  # a publisher without audio
    assert flowing_media(audio_age_s=3.1, video_age_s=3.1, stall_s=3) == ""
