"""Citizens' questions in the hub's SQLite file (``jaga.db``, WAL), for the single-node hub.

Tables (prefixed ``question_`` where the plain word would be too general for a shared file):

* ``questions`` — one row per question, every :class:`Question` field; indexed by
  ``(station, state, asked_at)`` for a station's queue and count, and ``(state, asked_at)``
  for the wall's queue of every station.
* ``question_votes`` — ``(question_id, device)`` primary key: a device votes once, enforced
  by the database, not by a read before the write.
* ``question_bans`` — ``(kind, value)`` → ``until``; the caller's clock decides whether a ban
  still holds, so tests and the service agree on time. Expired rows are harmless (one per
  banned sender) and are replaced by the next ban of the same sender.
* ``question_slow_modes`` — station → seconds set by an operator (absent = the default).

Statements are small, indexed and local; like the other SQLite stores they run on the event
loop directly. Writes that touch two tables run in one ``BEGIN IMMEDIATE`` transaction, so a
second process on the same file (another hub started by mistake, the CLI) cannot interleave.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub.backends.base import QuestionStore
from hub.backends.sqlite import open_database, unavailable_on_error
from hub.core.questions import PENDING, Question

SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    text TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    votes INTEGER NOT NULL,
    asked_at REAL NOT NULL,
    device TEXT NOT NULL,
    address TEXT NOT NULL,
    activity TEXT NOT NULL,
    held TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    decided_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS questions_station_state ON questions(station, state, asked_at);
CREATE INDEX IF NOT EXISTS questions_state ON questions(state, asked_at);
CREATE TABLE IF NOT EXISTS question_votes (
    question_id TEXT NOT NULL, device TEXT NOT NULL, PRIMARY KEY (question_id, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS question_bans (
    kind TEXT NOT NULL, value TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS question_slow_modes (station TEXT PRIMARY KEY, seconds REAL NOT NULL);
"""

COLUMNS = ("id", "station", "text", "name", "state", "votes", "asked_at", "device", "address", "activity",
           "held", "decided_by", "decided_at")
# Everything but the id and the vote count, which only vote() changes (atomically): an update
# built from a question read before a citizen's upvote must not take the upvote back.
UPDATED = tuple(c for c in COLUMNS if c not in ("id", "votes"))


def _question(row: sqlite3.Row) -> Question:
    return Question(**{column: row[column] for column in COLUMNS})


class SqliteQuestions(QuestionStore):
    def __init__(self, path: Path) -> None:
        self._db = open_database(path)
        self._db.executescript(SCHEMA)

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return unavailable_on_error(self._db, "question store")

    async def add(self, q: Question) -> None:
        with self._translated():
            self._db.execute(f"INSERT INTO questions({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             [getattr(q, column) for column in COLUMNS])

    async def get(self, question_id: str) -> Question | None:
        with self._translated():
            row = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM questions WHERE id = ?",
                                   (question_id,)).fetchone()
        return _question(row) if row else None

    async def update(self, q: Question) -> None:
        with self._translated():
            self._db.execute(f"UPDATE questions SET {', '.join(f'{c} = ?' for c in UPDATED)} WHERE id = ?",
                             [*(getattr(q, column) for column in UPDATED), q.id])

    async def list(self, station: str | None, states: Sequence[str], limit: int = 500) -> builtins.list[Question]:
        if not states or limit <= 0:
            return []
        where = f"state IN ({', '.join('?' * len(states))})"
        params: builtins.list[Any] = [*states]
        if station is not None:
            where += " AND station = ?"
            params.append(station)
        # id breaks ties the way Redis orders equal scores (byte order), so both agree.
        with self._translated():
            rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM questions WHERE {where} "
                                    "ORDER BY asked_at DESC, id DESC LIMIT ?", [*params, limit]).fetchall()
        return [_question(row) for row in rows]

    async def count_pending(self, station: str) -> int:
        with self._translated():
            row = self._db.execute("SELECT COUNT(*) FROM questions WHERE station = ? AND state = ?",
                                   (station, PENDING)).fetchone()
        return int(row[0])

    async def vote(self, question_id: str, device: str) -> int | None:
        with self._translated():
            self._db.execute("BEGIN IMMEDIATE")
            counted = self._db.execute(
                "INSERT OR IGNORE INTO question_votes(question_id, device) "
                "SELECT id, ? FROM questions WHERE id = ?", (device, question_id)).rowcount
            row = None
            if counted:
                row = self._db.execute("UPDATE questions SET votes = votes + 1 WHERE id = ? RETURNING votes",
                                       (question_id,)).fetchone()
            self._db.execute("COMMIT")
        return int(row["votes"]) if row else None

    async def ban(self, kind: str, value: str, until: float) -> None:
        # A shorter ban (a time-out after a ban) never shortens the one already there.
        with self._translated():
            self._db.execute("INSERT INTO question_bans(kind, value, until) VALUES (?, ?, ?) "
                             "ON CONFLICT(kind, value) DO UPDATE SET until = max(until, excluded.until)",
                             (kind, value, until))

    async def banned(self, device: str, address: str, now: float) -> bool:
        with self._translated():
            row = self._db.execute("SELECT 1 FROM question_bans WHERE until > ? AND "
                                   "((kind = 'device' AND value = ?) OR (kind = 'address' AND value = ?)) LIMIT 1",
                                   (now, device, address)).fetchone()
        return row is not None

    async def set_slow_mode(self, station: str, seconds: float) -> None:
        with self._translated():
            self._db.execute("INSERT INTO question_slow_modes(station, seconds) VALUES (?, ?) "
                             "ON CONFLICT(station) DO UPDATE SET seconds = excluded.seconds", (station, seconds))

    async def slow_mode(self, station: str) -> float | None:
        with self._translated():
            row = self._db.execute("SELECT seconds FROM question_slow_modes WHERE station = ?",
                                   (station,)).fetchone()
        return float(row["seconds"]) if row else None

    async def close(self) -> None:
        self._db.close()
