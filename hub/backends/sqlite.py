"""The SQLite file under ``data_dir``: credentials and audit log for the memory backend.

One file, WAL mode, so the CLI (another process) can mint tokens and add operators while a
hub reads them. Queries are tiny and local; they run on the event loop directly.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.backends.base import CredentialStore
from hub.errors import Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS station_tokens (station TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS station_tokens_hash ON station_tokens(hash);
CREATE TABLE IF NOT EXISTS operators (name TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, operator TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_operator ON sessions(operator);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires);
CREATE TABLE IF NOT EXISTS login_attempts (key TEXT PRIMARY KEY, count INTEGER NOT NULL, window_ends REAL NOT NULL);
CREATE TABLE IF NOT EXISTS login_locks (key TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL
);
"""


@contextlib.contextmanager
def unavailable_on_error(db: sqlite3.Connection, what: str) -> Iterator[None]:
    """sqlite3 errors (a locked or full disk) become the hub's 503, with any open transaction
    rolled back so the connection stays usable."""
    try:
        yield
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise Unavailable(f"{what} unavailable (sqlite: {exc})", retry_after=5.0) from None


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

    async def sessions(self, session_ids: list[str]) -> dict[str, tuple[str, float] | None]:
        found: dict[str, tuple[str, float] | None] = dict.fromkeys(session_ids)
        for start in range(0, len(session_ids), 500):  # under SQLite's limit of bound parameters
            chunk = session_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT id, operator, expires FROM sessions WHERE id IN ({marks})", chunk)
            found.update({row["id"]: (row["operator"], row["expires"]) for row in rows})
        return found

    async def revoke_operator_sessions(self, name: str) -> int:
        return self._db.execute("DELETE FROM sessions WHERE operator = ?", (name,)).rowcount

    async def remove_operator(self, name: str) -> bool:
        with self._db:  # one transaction: no session outlives its operator
            self._db.execute("BEGIN IMMEDIATE")
            removed = self._db.execute("DELETE FROM operators WHERE name = ?", (name,)).rowcount > 0
            self._db.execute("DELETE FROM sessions WHERE operator = ?", (name,))
        return removed

    async def sweep_expired(self, now: float) -> int:
        swept = self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,)).rowcount
        self._db.execute("DELETE FROM login_attempts WHERE window_ends <= ?", (now,))
        self._db.execute("DELETE FROM login_locks WHERE until <= ?", (now,))
        return swept

    async def count_login_attempt(self, key: str, now: float, window_s: float) -> int:
        # One statement, so two processes counting at once each get their own number.
        row = self._db.execute(
            "INSERT INTO login_attempts(key, count, window_ends) VALUES (:key, 1, :ends) "
            "ON CONFLICT(key) DO UPDATE SET "
            "count = CASE WHEN window_ends <= :now THEN 1 ELSE count + 1 END, "
            "window_ends = CASE WHEN window_ends <= :now THEN excluded.window_ends ELSE window_ends END "
            "RETURNING count",
            {"key": key, "now": now, "ends": now + window_s}).fetchone()
        return int(row["count"])

    async def lock_login(self, key: str, until: float, now: float) -> None:
        self._db.execute("INSERT INTO login_locks(key, until) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET until = max(until, excluded.until)", (key, until))

    async def login_locks(self, keys: list[str], now: float) -> dict[str, float]:
        rows = self._db.execute(f"SELECT key, until FROM login_locks WHERE key IN ({','.join('?' * len(keys))}) "
                                "AND until > ?", [*keys, now])
        return {row["key"]: row["until"] for row in rows}

    async def clear_login(self, key: str) -> None:
        self._db.execute("DELETE FROM login_attempts WHERE key = ?", (key,))
        self._db.execute("DELETE FROM login_locks WHERE key = ?", (key,))

    async def audit(self, at: float, actor: str, action: str, detail: str) -> None:
        self._db.execute("INSERT INTO audit(at, actor, action, detail) VALUES (?, ?, ?, ?)",
                         (at, actor, action, detail))

    async def audit_log(self, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, at, actor, action, detail FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?",
            (2**63 - 1 if before is None else before, limit))
        return [dict(row) for row in rows]

    async def close(self) -> None:
        self._db.close()
