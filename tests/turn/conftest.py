"""The TURN tests' coturn: one real ``turnserver`` per test module (tests/turn/coturn.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.turn.coturn import Coturn


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    server = Coturn(tmp_path_factory.mktemp("coturn"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
