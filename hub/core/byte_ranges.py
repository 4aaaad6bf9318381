"""HTTP ``Range: bytes=…`` for one file (RFC 9110 §14): which bytes to send, decided purely.

:func:`choose` takes the request's ``Range`` value and the file's size and says what to
answer: the whole file (:data:`WHOLE`, a 200), one span (:class:`Span`, a 206 with
``Content-Range: bytes first-last/size``), or :data:`UNSATISFIABLE` (a 416 with
``Content-Range: bytes */size``). The rules, as the RFC has them:

* a header that is not ``bytes=`` with valid syntax is *ignored* (200), never an error: a
  server must ignore a unit it does not understand, and may ignore what it cannot parse;
* several ranges are ignored too (the whole file): browsers seeking in ``<video>`` ask one
  range at a time, and a multipart answer is code nobody here needs;
* ``first-last`` with ``last`` past the end is cut at the end; ``first-`` runs to the end;
  ``-n`` is the last ``n`` bytes (all of a shorter file);
* a range that starts at or past the end, a suffix of zero bytes, or any range of an empty
  file is unsatisfiable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Span:
    """Bytes ``first`` to ``last`` inclusive (as ``Content-Range`` writes them)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


class _Whole:
    def __repr__(self) -> str:
        return "WHOLE"


class _Unsatisfiable:
    def __repr__(self) -> str:
        return "UNSATISFIABLE"


WHOLE: Final = _Whole()
UNSATISFIABLE: Final = _Unsatisfiable()

_ONE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_DIGITS = 19  # 2**63 has 19 digits: no file is larger, and int() of a huge string costs time


def choose(header: str | None, size: int) -> Span | _Whole | _Unsatisfiable:
    """What to send of a ``size``-byte file for a request whose ``Range`` is ``header``."""
    if header is None:
        return WHOLE
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return WHOLE
    found = _ONE.match(spec)
    if found is None:
        return WHOLE
    first_text, last_text = found.groups()
    if (not first_text and not last_text) or len(first_text) > MAX_DIGITS or len(last_text) > MAX_DIGITS:
        return WHOLE
    if not first_text:  # a suffix: the last n bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return Span(max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return WHOLE  # invalid syntax (RFC 9110 §14.1.1): ignored
    if first >= size:
        return UNSATISFIABLE
    return Span(first, min(last, size - 1))
