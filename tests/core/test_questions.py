"""The pure rules of citizens' questions: text, names, holds, moderation, order and limits."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.core import questions as core
from hub.core.question_limits import SlidingLimiter, UsedTokens
from hub.core.questions import Question, moderator_view, public_view
from hub.errors import ProtocolViolation
from hub.settings import QuestionsSettings

RESERVED = QuestionsSettings().reserved_names
INVISIBLE = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
             "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u00ad"]


def question(**changes: object) -> Question:
    base = Question(id="q1", station="35.09.01.2001", text="Kapan jalan diperbaiki?", name="", state="pending",
                    votes=0, asked_at=100.0, device="d", address="10.0.0.1", activity="", held="",
                    decided_by="", decided_at=0.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def code_of(call: object, *args: object) -> str:
    with pytest.raises(ProtocolViolation) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.code


# ------------------------------------------------------------------ views


def test_public_view_has_exactly_the_public_fields() -> None:
    q = question(held="link", decided_by="budi", activity="Rapat")
    assert public_view(q) == {"id": "q1", "text": "Kapan jalan diperbaiki?", "name": "", "votes": 0,
                              "state": "pending", "asked_at": 100.0, "activity": "Rapat"}
    view = moderator_view(q)
    assert set(view) == set(public_view(q)) | {"station", "held", "decided_by", "decided_at"}
    assert "device" not in view and "address" not in view


# ------------------------------------------------------------------ text


def test_clean_text_collapses_whitespace_and_keeps_markup_as_typed() -> None:
    assert core.clean_text("  <script>alert(1)</script>\n\n  apa\tkabar ") == "<script>alert(1)</script> apa kabar"


@pytest.mark.parametrize("char", INVISIBLE + ["\x00", "\x07", "\x7f"])
def test_clean_text_removes_invisible_and_control_characters(char: str) -> None:
    assert core.clean_text(f"ha{char}lo") == "halo"


def test_clean_text_is_nfc() -> None:
    assert core.clean_text("cafe\u0301") == "caf\u00e9"


def test_empty_and_too_long() -> None:
    assert code_of(core.clean_text, "   \u200b\u202e ") == "empty"
    assert core.clean_text("a" * 280) == "a" * 280
    assert code_of(core.clean_text, "a" * 281) == "too_long"
    assert code_of(core.clean_text, "a" * 100_000) == "too_long"
    # What counts is the cleaned length: invisible padding does not make it too long.
    assert core.clean_text("a" * 280 + "\u200b" * 50) == "a" * 280
    assert core.clean_name("") == ""
    assert code_of(core.clean_name, "n" * 41) == "too_long"


def test_lone_surrogates_are_removed() -> None:
    assert core.clean_text("a\ud800b") == "ab"


@given(st.text(max_size=400))
def test_cleaned_text_is_bounded_and_free_of_tricks(text: str) -> None:
    try:
        cleaned = core.clean_text(text)
    except ProtocolViolation as exc:
        assert exc.code in ("empty", "too_long")
        return
    assert 0 < len(cleaned) <= 280
    assert cleaned == cleaned.strip() and "  " not in cleaned
    assert not any(char in cleaned for char in INVISIBLE)
    assert core.clean_text(cleaned) == cleaned  # idempotent
    cleaned.encode("utf-8")  # storable and sendable


# ------------------------------------------------------------------ reserved names


@pytest.mark.parametrize("name", [
    "Bupati", "BUPATI", "B u p a t i", "B.u.p.a.t.i", "Bupat\u0456",  # Cyrillic і
    "\u0412up\u0430ti",  # Cyrillic В and а
    "B\u200bupati", "Bup\u00e4ti", "\uff22\uff35\uff30\uff21\uff34\uff29",  # full-width
    "Bupati Jember", "Pak Camat", "wakil bupati", "WakilBupati", "4dm1n", "ADMIN!", "Pend\u043epo",
    "Kepala Desa Sukorejo", "Operator", "𝐁𝐮𝐩𝐚𝐭𝐢",  # mathematical bold (NFKC)
])
def test_reserved_names_are_refused_however_spelt(name: str) -> None:
    assert code_of(core.clean_name, name, RESERVED) == "reserved_name"


@pytest.mark.parametrize("name", ["Siti", "Warga Kelurahan Patrang", "Badminton Club", "Budi Santoso",
                                  "Pak RT 05", "Camatan", ""])
def test_ordinary_names_pass(name: str) -> None:
    assert core.clean_name(name, RESERVED) == name


def test_fold() -> None:
    assert core.fold("B u p a t i!") == "bupati"
    assert core.fold("Bupat\u0456") == "bupati"
    assert core.fold_words("Wakil, Bupati") == ["wakil", "bupati"]
    assert core.reserved_in("Siti", ()) == ""


# ------------------------------------------------------------------ held


@pytest.mark.parametrize("text", ["lihat http://x.co", "buka www.contoh", "HTTPS://EVIL", "klik bit.ly/abc",
                                  "situs judi123.com ya", "\uff57\uff57\uff57\uff0eabc", "contoh . com"])
def test_links_are_held(text: str) -> None:
    assert core.held_reason(text) == "link"


@pytest.mark.parametrize("text", ["Jam 8.30 mulai?", "Apa kabar Pak?", "Biaya 1.500.000 rupiah"])
def test_plain_text_is_not_held(text: str) -> None:
    assert core.held_reason(text) == ""


def test_held_words_match_on_the_folded_form() -> None:
    words = ("bodoh",)
    assert core.held_reason("Dasar B O D O H", words) == "word:bodoh"
    assert core.held_reason("bod\u043eh", words) == "word:bodoh"  # Cyrillic о
    assert core.held_reason("bodohnya", words) == "word:bodoh"
    assert core.held_reason("pertanyaan baik", words) == ""


def test_dedupe_key_ignores_case_spacing_and_punctuation() -> None:
    assert core.dedupe_key("Kapan jalan diperbaiki?!") == core.dedupe_key("kapan  JALAN diperbaiki")
    assert core.dedupe_key("RT 01") != core.dedupe_key("RT 02")


# ------------------------------------------------------------------ moderation


@pytest.mark.parametrize(("state", "action", "after"), [
    ("pending", "approve", "approved"), ("pending", "reject", "rejected"), ("approved", "reject", "rejected"),
    ("approved", "answered", "answered"), ("answered", "reopen", "approved"),
    ("pending", "ban", "rejected"), ("approved", "timeout", "rejected"), ("answered", "ban", "rejected"),
])
def test_allowed_transitions(state: str, action: str, after: str) -> None:
    moved = core.moderate(question(state=state), action, "budi", 200.0)
    assert (moved.state, moved.decided_by, moved.decided_at) == (after, "budi", 200.0)


@pytest.mark.parametrize(("state", "action"), [
    ("approved", "approve"), ("pending", "answered"), ("rejected", "approve"), ("answered", "reject"),
    ("pending", "reopen"), ("pending", "delete"),
])
def test_refused_transitions(state: str, action: str) -> None:
    assert code_of(core.moderate, question(state=state), action, "budi", 200.0) == "bad_action"


@given(st.lists(st.sampled_from(core.ACTIONS), max_size=12))
def test_any_sequence_of_actions_stays_in_the_states(actions: list[str]) -> None:
    q = question()
    for action in actions:
        try:
            q = core.moderate(q, action, "budi", 1.0)
        except ProtocolViolation:
            continue
        assert q.state in core.STATES


def test_concerns_public() -> None:
    assert not core.concerns_public(None, "pending")
    assert not core.concerns_public("pending", "rejected")  # never shown: the public never hears of it
    assert core.concerns_public("pending", "approved")
    assert core.concerns_public("approved", "rejected")  # pages must remove it
    assert core.concerns_public("answered", "approved")


# ------------------------------------------------------------------ display order


def test_display_order() -> None:
    listed = [
        question(id="old", state="approved", votes=2, asked_at=1.0),
        question(id="top", state="approved", votes=5, asked_at=3.0),
        question(id="new", state="approved", votes=2, asked_at=2.0),
        question(id="done1", state="answered", votes=9, decided_at=10.0),
        question(id="done2", state="answered", votes=0, decided_at=20.0),
        question(id="wait", state="pending", votes=99),
        question(id="no", state="rejected", votes=99),
    ]
    assert [q.id for q in core.for_display(iter(listed))] == ["top", "old", "new", "done2", "done1"]


@given(st.lists(st.tuples(st.sampled_from(core.STATES), st.integers(0, 5), st.floats(0, 10)), max_size=20))
def test_display_shows_only_visible_and_approved_first(rows: list[tuple[str, int, float]]) -> None:
    listed = [question(id=str(i), state=state, votes=votes, asked_at=at) for i, (state, votes, at) in enumerate(rows)]
    shown = core.for_display(listed)
    assert {q.id for q in shown} == {q.id for q in listed if q.state in core.VISIBLE}
    states = [q.state for q in shown]
    assert states == sorted(states, key=lambda s: s != "approved")
    votes = [q.votes for q in shown if q.state == "approved"]
    assert votes == sorted(votes, reverse=True)


# ------------------------------------------------------------------ limits


def test_sliding_limiter_allows_limit_per_window_and_says_when() -> None:
    limiter = SlidingLimiter(2, 60.0)
    assert limiter.hit("a", 0.0) == 0 and limiter.hit("a", 10.0) == 0
    assert limiter.hit("a", 20.0) == pytest.approx(40.0)
    assert limiter.hit("b", 20.0) == 0  # keys are separate
    assert limiter.hit("a", 59.9) > 0
    assert limiter.hit("a", 60.0) == 0  # the first left the window
    assert limiter.hit("a", 65.0) > 0


def test_refused_attempts_are_not_counted() -> None:
    limiter = SlidingLimiter(1, 10.0)
    limiter.hit("a", 0.0)
    for t in range(1, 10):
        assert limiter.hit("a", float(t)) > 0
    assert limiter.hit("a", 10.0) == 0


def test_window_per_call_for_slow_mode() -> None:
    limiter = SlidingLimiter(1, 0.0)
    assert limiter.hit("s", 0.0, window_s=30.0) == 0
    assert limiter.retry_after("s", 10.0, window_s=30.0) == pytest.approx(20.0)
    assert limiter.retry_after("s", 10.0, window_s=5.0) == 0  # an operator shortened it


def test_limiter_is_bounded() -> None:
    limiter = SlidingLimiter(1, 60.0, max_keys=3)
    for key in "abcde":
        limiter.hit(key, 0.0)
    assert len(limiter) == 3
    assert limiter.hit("a", 1.0) == 0  # forgotten first: the oldest-touched


@given(st.lists(st.floats(0, 1000), max_size=50), st.integers(1, 5), st.floats(1, 100))
def test_never_more_than_limit_in_any_window(times: list[float], limit: int, window: float) -> None:
    limiter = SlidingLimiter(limit, window)
    allowed = [t for t in sorted(times) if limiter.hit("k", t) == 0]
    for i, start in enumerate(allowed):
        assert len([t for t in allowed[i:] if t < start + window]) <= limit


def test_used_tokens_once_until_expiry_and_bounded() -> None:
    used = UsedTokens(max_tokens=2)
    assert used.use("t1", 100.0, 0.0)
    assert not used.use("t1", 100.0, 50.0)
    assert used.use("t1", 200.0, 100.0)  # expired, forgotten: verify() refuses expired tokens anyway
    used.use("t2", 300.0, 100.0)
    used.use("t3", 300.0, 100.0)
    assert len(used) == 2
