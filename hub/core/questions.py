"""Questions from citizens: the state of one question, its text rules, moderation and order.

Theory of operation
-------------------
A question is a frozen :class:`Question`; nothing here changes one in place. Its life is a
small state machine, driven only by moderators (and, for votes, by citizens):

    pending ──approve──▶ approved ──answered──▶ answered
       │                    │  ▲                   │
       └──reject──▶ rejected ◀┘  └─────reopen──────┘
                       ▲
       pending|approved ──ban / timeout── (also acts on the sender, see the service)

    TRANSITIONS[action] = (states it may start from, state it ends in)

The public sees a question exactly when ``state in VISIBLE`` (approved or answered); a
pending question is for moderators only, whatever it says. Text is cleaned *before* it is
stored (:func:`clean_text`, :func:`clean_name`) so every node and every page shows the same
characters; markup is kept as typed and rendered inert by the pages (``textContent``).

Names and held words are compared on a *folded* form (:func:`fold`): NFKC, casefold, a few
look-alike letters from other scripts mapped to Latin, then letters only. "B u p a t i",
"BUPATI" and "Bupatі" (a Cyrillic і) all fold to "bupati".

Rate limits and the memory of used proofs are in :mod:`hub.core.question_limits`, the proof
of work in :mod:`hub.core.proof`; the service (:mod:`hub.services.questions`) owns the I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jaga.errors import ProtocolViolation

STATES = ("pending", "approved", "rejected", "answered")
PENDING, APPROVED, REJECTED, ANSWERED = STATES
VISIBLE = (APPROVED, ANSWERED)  # what the public may see
ACTIONS = ("approve", "reject", "answered", "reopen", "ban", "timeout")
MAX_TEXT = 280
MAX_NAME = 40


@dataclass(frozen=True)
class Question:
    id: str  # unguessable, e.g. secrets.token_urlsafe(9)
    station: str
    text: str  # cleaned (see clean_text)
    name: str  # cleaned display name, "" = anonymous ("Warga")
    state: str  # one of STATES
    votes: int
    asked_at: float  # unix seconds
    device: str  # hash of the asker's device cookie (never the cookie itself)
    address: str  # the asker's client address (trusted-proxy aware)
    activity: str  # title of the station's activity when asked, "" if none
    held: str  # "" or why it was held for a closer look (a listed word, a link)
    decided_by: str  # the operator (or "station:<id>") of the last moderation action, ""
    decided_at: float  # 0.0 until moderated


def public_view(q: Question) -> dict[str, Any]:
    """What anybody may read. ``activity`` (the title it was asked under) is public record:
    a station's history can be read per activity (``?activity=``)."""
    return {"id": q.id, "text": q.text, "name": q.name, "votes": q.votes, "state": q.state,
            "asked_at": q.asked_at, "activity": q.activity}


def moderator_view(q: Question) -> dict[str, Any]:
    view = public_view(q)
    view.update(station=q.station, held=q.held, decided_by=q.decided_by, decided_at=q.decided_at)
    return view


# ---------------------------------------------------------------- text rules

# Removed outright: bidi embeddings/overrides/isolates and zero-width characters are listed
# by name in docs/questions.md; every other format character (Cf: U+200E marks, U+00AD soft
# hyphen, U+2061.. invisible operators, tags) is removed too, because each of them is an
# invisible way to make two names look alike. Lone surrogates (Cs) can arrive through JSON
# "\ud800" escapes and would break every UTF-8 encoder after us.
_REMOVED_CATEGORIES = ("Cf", "Cs")
_WHITESPACE = re.compile(r"\s+")


def _strip_invisible(text: str) -> str:
    out = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category in _REMOVED_CATEGORIES:
            continue
        if category == "Cc":
            # Tabs and newlines separate words; the other control characters are dropped.
            if char in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85":
                out.append(" ")
            continue
        out.append(char)
    return _WHITESPACE.sub(" ", "".join(out)).strip()


def _clean(text: str, limit: int, what: str) -> str:
    if len(text) > 16 * limit:  # no cleaning work for something this far over the limit
        raise ProtocolViolation(f"{what} longer than {limit} characters", code="too_long")
    cleaned = _strip_invisible(text)
    if len(cleaned) > limit:
        raise ProtocolViolation(f"{what} longer than {limit} characters", code="too_long")
    return cleaned


def clean_text(text: str) -> str:
    """The question as stored: NFC, invisible characters removed, whitespace collapsed.
    Raises ``ProtocolViolation`` ``empty`` or ``too_long`` (over 280 characters)."""
    cleaned = _clean(text, MAX_TEXT, "question")
    if not cleaned:
        raise ProtocolViolation("question is empty", code="empty")
    return cleaned


def clean_name(name: str, reserved: Iterable[str] = ()) -> str:
    """The display name as stored ("" = anonymous). Raises ``too_long`` (over 40) or
    ``reserved_name`` when :func:`reserved_in` finds one of ``reserved`` in it."""
    cleaned = _clean(name, MAX_NAME, "name")
    if cleaned and reserved_in(cleaned, reserved):
        raise ProtocolViolation("this name is reserved", code="reserved_name")
    return cleaned


# Look-alikes NFKC leaves alone, mapped to the Latin letter they imitate (after casefold, so
# lower case only). Not Unicode's whole confusables table: the letters a reserved name can be
# spelt with, from the scripts a keyboard on a phone in Indonesia offers, plus digits used as
# letters ("4dm1n"). A fold is only ever compared, never shown.
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "н": "h", "і": "i",
    "ї": "i", "ј": "j", "к": "k", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t",
    "у": "y", "ԝ": "w", "х": "x", "ӏ": "l", "п": "n", "г": "r",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s", "σ": "o",
    # Latin oddities
    "ı": "i", "ɑ": "a", "ɡ": "g", "ʟ": "l", "ɩ": "i", "ø": "o", "đ": "d", "ł": "l", "ß": "ss",
    # digits and signs as letters
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
})


def fold_words(text: str) -> list[str]:
    """The words of ``text`` folded for comparison: NFKC, casefold, look-alikes to Latin,
    accents dropped, then runs of letters (anything else separates words)."""
    mapped = unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLES)
    words: list[str] = []
    current: list[str] = []
    for char in unicodedata.normalize("NFKD", mapped):
        category = unicodedata.category(char)
        if category.startswith("L"):
            current.append(char)
        elif category.startswith("M") or category in _REMOVED_CATEGORIES:
            continue  # accents and invisible characters do not split a word
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words


def fold(text: str) -> str:
    """Letters only, folded (see :func:`fold_words`): "B u p a t i!" → "bupati"."""
    return "".join(fold_words(text))


def _runs(words: Sequence[str], longest: int) -> Iterable[str]:
    """Every run of consecutive words joined, up to ``longest`` letters: spacing a reserved
    name out ("B u p a t i") or writing it in one piece ("WakilBupati") changes nothing."""
    for start in range(len(words)):
        joined = ""
        for word in words[start:]:
            joined += word
            if len(joined) > longest:
                break
            yield joined


def reserved_in(name: str, reserved: Iterable[str]) -> str:
    """The reserved name ``name`` claims, or "". A name claims one when a run of its words
    folds to it: "Pak Camat" and "Bupati Jember" are refused, "Warga Kelurahan Patrang"
    (kelurahan is not lurah) and "Badminton" (not admin) are not."""
    folded = {fold(entry) for entry in reserved} - {""}
    if not folded:
        return ""
    longest = max(map(len, folded))
    for run in _runs(fold_words(name), longest):
        if run in folded:
            return run
    return ""


# A link: a scheme, "www.", or a domain-like token (name.tld). Read on the NFKC, casefolded
# text so full-width "ｗｗｗ．" and "HTTP" count. A sentence missing the space after its full
# stop ("selesai.terima") is held too: a false alarm costs a moderator one glance.
_LINK = re.compile(r"(?:https?|ftp)\s*:|www\s*\.|\b[a-z0-9-]+\s?\.\s?(?:[a-z]{2,24})(?:\b|/)")


def held_reason(text: str, held_words: Iterable[str] = ()) -> str:
    """Why a (cleaned) question needs a closer look, or "": ``link``, or ``word:<w>`` for a
    listed word found anywhere in its folded letters (a question is held, not refused, so
    matching inside words, "bodohnya" for "bodoh", is the better mistake)."""
    folded_text = fold(text)
    for word in held_words:
        folded = fold(word)
        if folded and folded in folded_text:
            return f"word:{word}"
    if _LINK.search(unicodedata.normalize("NFKC", text).casefold()):
        return "link"
    return ""


def dedupe_key(text: str) -> str:
    """What two questions share when one is the other again: letters and digits, casefolded."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())


# ---------------------------------------------------------------- moderation

# action → (states it may start from, the state it leaves the question in)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": ((PENDING,), APPROVED),
    "reject": ((PENDING, APPROVED), REJECTED),
    "answered": ((APPROVED,), ANSWERED),
    "reopen": ((ANSWERED,), APPROVED),
    # These act on the sender (the service bans them); the question goes, whatever its state.
    "ban": (STATES, REJECTED),
    "timeout": (STATES, REJECTED),
}


def moderate(q: Question, action: str, actor: str, now: float) -> Question:
    """The question after ``action`` by ``actor``; ``ProtocolViolation`` ``bad_action`` for an
    unknown action or one its state does not allow (approving twice, answering a pending one)."""
    rule = TRANSITIONS.get(action)
    if rule is None:
        raise ProtocolViolation(f"unknown action {action!r}", code="bad_action")
    sources, target = rule
    if q.state not in sources:
        raise ProtocolViolation(f"cannot {action} a question that is {q.state}", code="bad_action")
    return replace(q, state=target, decided_by=actor, decided_at=now)


def with_votes(q: Question, votes: int) -> Question:
    return replace(q, votes=votes)


def for_display(questions: Iterable[Question]) -> list[Question]:
    """What the public sees, in order: approved by votes (most first), then by when asked
    (oldest first: it has waited longest); then answered, most recently answered first."""
    listed = list(questions)
    approved = sorted((q for q in listed if q.state == APPROVED), key=lambda q: (-q.votes, q.asked_at, q.id))
    answered = sorted((q for q in listed if q.state == ANSWERED), key=lambda q: (-q.decided_at, q.id))
    return approved + answered


def concerns_public(before: str | None, after: str) -> bool:
    """Whether a change from state ``before`` (None: new) to ``after`` is news to the public:
    the question is visible now, or was and has just left (pages remove it by its state)."""
    return after in VISIBLE or before in VISIBLE
