"""The SQLite file under ``data_dir``: credentials and audit log for the memory backend.

One file, WAL mode, so the CLI (another process) can mint tokens and add operators while a
hub reads them. Queries are tiny and local; they run on the event loop directly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hub.backends.base import CredentialStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS station_tokens (station TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS station_tokens_hash ON station_tokens(hash);
CREATE TABLE IF NOT EXISTS operators (name TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, operator TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL
);
"""


def open_database(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    connection.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a process crash (kill -9); only power loss may drop the
    # last transactions, which the checkpoint period bounds anyway.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.row_factory = sqlite3.Row
    return connection


class SqliteCredentials(CredentialStore):
    def __init__(self, path: Path) -> None:
        self._db = open_database(path)
        self._db.executescript(SCHEMA)

    async def set_token_hash(self, station: str, token_hash: str) -> None:
        self._db.execute(
            "INSERT INTO station_tokens(station, hash) VALUES (?, ?) "
            "ON CONFLICT(station) DO UPDATE SET hash = excluded.hash",
            (station, token_hash),
        )

    async def token_hash(self, station: str) -> str | None:
        row = self._db.execute("SELECT hash FROM station_tokens WHERE station = ?", (station,)).fetchone()
        return row["hash"] if row else None

    async def station_for_token_hash(self, token_hash: str) -> str | None:
        row = self._db.execute("SELECT station FROM station_tokens WHERE hash = ?", (token_hash,)).fetchone()
        return row["station"] if row else None

    async def token_hashes(self, stations: list[str]) -> dict[str, str | None]:
        found = {row["station"]: row["hash"] for row in self._db.execute("SELECT station, hash FROM station_tokens")}
        return {station: found.get(station) for station in stations}

    async def set_operator(self, name: str, password_hash: str) -> None:
        self._db.execute(
            "INSERT INTO operators(name, hash) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET hash = excluded.hash",
            (name, password_hash),
        )

    async def operator_hash(self, name: str) -> str | None:
        row = self._db.execute("SELECT hash FROM operators WHERE name = ?", (name,)).fetchone()
        return row["hash"] if row else None

    async def operators(self) -> list[str]:
        return [row["name"] for row in self._db.execute("SELECT name FROM operators ORDER BY name")]

    async def save_session(self, session_id: str, operator: str, expires: float) -> None:
        self._db.execute("INSERT INTO sessions(id, operator, expires) VALUES (?, ?, ?)",
                         (session_id, operator, expires))

    async def session(self, session_id: str) -> tuple[str, float] | None:
        row = self._db.execute("SELECT operator, expires FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return (row["operator"], row["expires"]) if row else None

    async def revoke_session(self, session_id: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    async def audit(self, at: float, actor: str, action: str, detail: str) -> None:
        self._db.execute("INSERT INTO audit(at, actor, action, detail) VALUES (?, ?, ?, ?)",
                         (at, actor, action, detail))

    async def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]

    async def close(self) -> None:
        self._db.close()
