"""The recordings' index in the hub's SQLite file (``jaga.db``, WAL), for the single-node hub.

One table, ``recordings``: every :class:`Recording` field, ``parts`` as a JSON list, indexed
by ``(station, start)`` and ``(day, start)`` for the portal's lists and by ``state`` for the
open ones a crash left. Statements are small, indexed and local; like the other SQLite stores
they run on the event loop directly.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from hub.backends.base import OPEN_STATES, Recording, RecordingStore
from hub.backends.sqlite import open_database, unavailable_on_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    title TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    duration_s REAL NOT NULL,
    bytes INTEGER NOT NULL,
    video_codec TEXT NOT NULL,
    audio_codec TEXT NOT NULL,
    state TEXT NOT NULL,
    visible INTEGER NOT NULL,
    hidden_reason TEXT NOT NULL,
    reason TEXT NOT NULL,
    parts TEXT NOT NULL,
    path TEXT NOT NULL,
    day TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_station ON recordings(station, start);
CREATE INDEX IF NOT EXISTS recordings_day ON recordings(day, start);
CREATE INDEX IF NOT EXISTS recordings_start ON recordings(start);
CREATE INDEX IF NOT EXISTS recordings_state ON recordings(state);
"""

COLUMNS = ("id", "station", "title", "start", "end", "duration_s", "bytes", "video_codec", "audio_codec",
           "state", "visible", "hidden_reason", "reason", "parts", "path", "day")
_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in COLUMNS) + " FROM recordings"


def _row(r: Recording) -> list[Any]:
    values = [getattr(r, column) for column in COLUMNS]
    values[COLUMNS.index("visible")] = int(r.visible)
    values[COLUMNS.index("parts")] = json.dumps(list(r.parts))
    return values


def _recording(row: sqlite3.Row) -> Recording:
    values = {column: row[column] for column in COLUMNS}
    values["visible"] = bool(values["visible"])
    values["parts"] = tuple(json.loads(values["parts"]))
    return Recording(**values)


class SqliteRecordings(RecordingStore):
    def __init__(self, path: Path) -> None:
        self._db = open_database(path)
        self._db.executescript(SCHEMA)

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return unavailable_on_error(self._db, "recording index")

    async def add(self, r: Recording) -> None:
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        with self._translated():
            self._db.execute(f"INSERT INTO recordings({names}) VALUES ({', '.join('?' * len(COLUMNS))})", _row(r))

    async def update(self, r: Recording) -> None:
        assignments = ", ".join(f'"{c}" = ?' for c in COLUMNS[1:])
        with self._translated():
            self._db.execute(f"UPDATE recordings SET {assignments} WHERE id = ?", [*_row(r)[1:], r.id])

    async def get(self, recording_id: str) -> Recording | None:
        with self._translated():
            row = self._db.execute(f"{_SELECT} WHERE id = ?", (recording_id,)).fetchone()
        return _recording(row) if row else None

    async def list(self, station: str | None = None, day: str | None = None, limit: int = 500,
                   before: float | None = None) -> builtins.list[Recording]:
        if limit <= 0:
            return []
        where, params = [], []
        for clause, value in (("station = ?", station), ("day = ?", day), ("start < ?", before)):
            if value is not None:
                where.append(clause)
                params.append(value)
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        with self._translated():
            rows = self._db.execute(f"{_SELECT}{condition} ORDER BY start DESC, id DESC LIMIT ?",
                                    [*params, limit]).fetchall()
        return [_recording(row) for row in rows]

    async def oldest(self, limit: int = 500) -> builtins.list[Recording]:
        with self._translated():
            rows = self._db.execute(f"{_SELECT} ORDER BY start, id LIMIT ?", (limit,)).fetchall()
        return [_recording(row) for row in rows]

    async def open_recordings(self) -> builtins.list[Recording]:
        with self._translated():
            rows = self._db.execute(f"{_SELECT} WHERE state IN ({', '.join('?' * len(OPEN_STATES))}) "
                                    "ORDER BY start, id", OPEN_STATES).fetchall()
        return [_recording(row) for row in rows]

    async def delete(self, recording_id: str) -> None:
        with self._translated():
            self._db.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))

    async def total_bytes(self) -> int:
        with self._translated():
            row = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM recordings").fetchone()
        return int(row[0])

    async def close(self) -> None:
        self._db.close()
