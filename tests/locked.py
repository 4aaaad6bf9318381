"""The versions the project is locked to, for the seam pin tests.

A seam module reaches into a dependency's private API; its pin test reads that dependency's
source and checks every point the seam relies on. Those source checks are the real guard.
``check_locked`` adds the bookkeeping: the installed version must be the one in
``requirements/dev.txt`` (what ``make test`` installs), so an upgrade is a deliberate step:
run ``make test-latest``, re-read the seams against the new source, then ``make lock``.

``make test-latest`` sets ``JAGA_LATEST=1``: there the installed version may differ from the
lock, and only the source checks decide.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import version
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "dev.txt"


def locked_version(distribution: str) -> str:
    """The ``==`` pin of ``distribution`` in the dev lock (names compared as PEP 503 does)."""
    wanted = _normalise(distribution)
    for line in LOCK.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if found and _normalise(found.group(1)) == wanted:
            return found.group(2)
    raise LookupError(f"{distribution} is not pinned in {LOCK}")


def check_locked(*distributions: str) -> None:
    """Fail unless each installed distribution is the locked version (outside ``make test-latest``)."""
    found = {name: version(name) for name in distributions}
    locked = {name: locked_version(name) for name in distributions}
    if os.environ.get("JAGA_LATEST") == "1":
        return
    assert found == locked, (
        f"installed {found}, locked {locked}: install from the lock (make test), or re-read the "
        "seams against the new source and run make lock")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
