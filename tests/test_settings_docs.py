"""Every settings key is documented in docs/operations.md (the operator's one reference)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from hub.settings import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def settings_keys() -> list[str]:
    """``section.key`` for every field of every section of :class:`Settings`."""
    keys = []
    for section in dataclasses.fields(Settings):
        default = getattr(Settings(), section.name)
        if dataclasses.is_dataclass(default):
            keys += [f"{section.name}.{field.name}" for field in dataclasses.fields(default)]
    return keys


def test_every_settings_key_is_in_the_operations_doc() -> None:
    text = DOC.read_text()
    # Keys appear as `hub.host` (a row may name several), tables as `[schedule.kinds.<kind>]`.
    documented = set(re.findall(r"`\[?([a-z_]+\.[a-z_]+)[`.\]]", text))
    missing = [key for key in settings_keys() if key not in documented]
    assert len(settings_keys()) > 30  # it really read the settings
    assert missing == [], f"settings not documented in {DOC.name}: {missing}"
