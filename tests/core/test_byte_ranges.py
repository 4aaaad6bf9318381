"""hub.core.byte_ranges: which bytes a ``Range`` header asks for (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from hub.core.byte_ranges import UNSATISFIABLE, WHOLE, Span, choose


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 1000, WHOLE),
    ("bytes=0-99", 1000, Span(0, 99)),
    ("bytes=500-599", 1000, Span(500, 599)),
    ("bytes=900-", 1000, Span(900, 999)),
    ("bytes=900-5000", 1000, Span(900, 999)),  # cut at the end
    ("bytes=-100", 1000, Span(900, 999)),  # the last 100 bytes
    ("bytes=-5000", 1000, Span(0, 999)),  # a suffix longer than the file: all of it
    ("BYTES = 1-1", 1000, Span(1, 1)),
    ("bytes=1000-", 1000, UNSATISFIABLE),  # starts at the end
    ("bytes=5000-6000", 1000, UNSATISFIABLE),
    ("bytes=-0", 1000, UNSATISFIABLE),
    ("bytes=0-", 0, UNSATISFIABLE),  # nothing to send of an empty file
    ("bytes=-10", 0, UNSATISFIABLE),
    # Ignored (the whole file), as the RFC says: another unit, bad syntax, several ranges.
    ("items=0-1", 1000, WHOLE),
    ("bytes=abc", 1000, WHOLE),
    ("bytes=-", 1000, WHOLE),
    ("bytes=5-2", 1000, WHOLE),
    ("bytes=0-1,5-6", 1000, WHOLE),
    ("bytes=0-99999999999999999999999", 1000, WHOLE),  # beyond any file: not even parsed
    ("bytes 0-1", 1000, WHOLE),
])
def test_choose(header: str | None, size: int, expected: object) -> None:
    assert choose(header, size) == expected


def test_a_span_writes_its_content_range() -> None:
    span = Span(100, 199)
    assert span.length == 100
    assert span.content_range(1000) == "bytes 100-199/1000"
