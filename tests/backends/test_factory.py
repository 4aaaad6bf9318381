"""The backend is decided once, from ``hub.backend``, by :mod:`hub.backends.factory`."""

from __future__ import annotations

import ast
from pathlib import Path

from hub.backends.factory import Backend, build_backend, build_credentials
from hub.backends.memory import MemoryBus, MemoryPresenceStore
from hub.backends.nodes import LocalRouter, RedisRouter
from hub.backends.redis import RedisBus, RedisPresenceStore
from hub.backends.redis_credentials import RedisCredentials
from hub.backends.redis_questions import RedisQuestions
from hub.backends.sqlite import SqliteCredentials
from hub.backends.sqlite_questions import SqliteQuestions
from hub.ledger.redis import RedisLedger
from hub.ledger.sqlite import SqliteLedger
from hub.settings import Settings, settings_from_mapping

HUB = Path(__file__).resolve().parents[2] / "hub"
# Nothing is sent: a redis.asyncio client connects on its first command.
UNUSED_REDIS = "redis://127.0.0.1:1/0"


def settings(tmp_path: Path, backend: str) -> Settings:
    return settings_from_mapping({"hub": {"backend": backend, "redis_url": UNUSED_REDIS, "node_id": "node-1"}},
                                 base_dir=str(tmp_path))


def url() -> str:
    return "http://node-1.test"


async def close(backend: Backend) -> None:
    await backend.bus.close()
    await backend.ledger.close()
    await backend.questions.close()
    await backend.credentials.close()


async def test_memory_settings_give_a_single_node(tmp_path: Path) -> None:
    backend = build_backend(settings(tmp_path, "memory"), url)
    try:
        assert isinstance(backend.bus, MemoryBus)
        assert isinstance(backend.presence, MemoryPresenceStore)
        assert isinstance(backend.credentials, SqliteCredentials)
        assert isinstance(backend.ledger, SqliteLedger)
        assert isinstance(backend.router, LocalRouter)
        assert isinstance(backend.questions, SqliteQuestions)
        assert backend.shared is False
        assert (tmp_path / "var" / "jaga.db").exists()  # credentials, ledger and questions in data_dir
    finally:
        await close(backend)


async def test_redis_settings_give_a_cluster_node_on_one_client(tmp_path: Path) -> None:
    backend = build_backend(settings(tmp_path, "redis"), url)
    try:
        assert isinstance(backend.bus, RedisBus)
        assert isinstance(backend.presence, RedisPresenceStore)
        assert isinstance(backend.credentials, RedisCredentials)
        assert isinstance(backend.ledger, RedisLedger)
        assert isinstance(backend.router, RedisRouter)
        assert isinstance(backend.questions, RedisQuestions)
        assert backend.shared is True
        links = {id(part.link) for part in (backend.bus, backend.presence, backend.credentials, backend.ledger,
                                            backend.router, backend.questions)}
        assert len(links) == 1  # one client, one health flag for every part
        assert backend.router.node == "node-1" and backend.router.public_url() == url()
    finally:
        await close(backend)


async def test_the_cli_gets_the_credentials_of_the_same_choice(tmp_path: Path) -> None:
    for kind, expected in (("memory", SqliteCredentials), ("redis", RedisCredentials)):
        store = build_credentials(settings(tmp_path, kind))
        try:
            assert isinstance(store, expected)
        finally:
            await store.close()


def test_only_the_factory_reads_the_backend_kind() -> None:
    """``settings.hub.backend`` is read in one place; everything else asks the Backend."""
    readers = []
    for path in sorted(HUB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr == "backend"
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "hub"):
                readers.append(f"{path.relative_to(HUB.parent)}:{node.lineno}")
    assert len(readers) == 1 and readers[0].startswith("hub/backends/factory.py:"), readers
