"""The attendance ledger in the SQLite file under ``data_dir`` (WAL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hub.backends.sqlite import open_database
from hub.core.attendance import Interval
from hub.errors import LedgerUnavailable
from hub.ledger.base import Ledger, LedgerWrite

SCHEMA = """
CREATE TABLE IF NOT EXISTS intervals (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    state TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    end_reason TEXT,
    checkpoint REAL NOT NULL,
    node TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS intervals_open ON intervals(station) WHERE end IS NULL;
CREATE INDEX IF NOT EXISTS intervals_start ON intervals(start);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    title TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    checkpoint REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS activities_start ON activities(start);
"""


class SqliteLedger(Ledger):
    def __init__(self, path: Path, node: str = "") -> None:
        self.node = node
        self._db = open_database(path)
        self._db.executescript(SCHEMA)

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                self._db.execute(sql, params)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise LedgerUnavailable(f"ledger write failed: {exc}") from None

    async def apply(self, write: LedgerWrite) -> None:
        statements: list[tuple[str, tuple[Any, ...]]]
        if write.kind == "transition":
            statements = [(
                "UPDATE intervals SET end = ?, end_reason = ? WHERE station = ? AND end IS NULL",
                (write.at, write.reason, write.station),
            )]
            if write.state and write.state != "offline":
                statements.append((
                    "INSERT INTO intervals(station, state, start, checkpoint, node) VALUES (?, ?, ?, ?, ?)",
                    (write.station, write.state, write.at, write.at, self.node),
                ))
        else:
            statements = [(
                "UPDATE activities SET end = ? WHERE station = ? AND end IS NULL", (write.at, write.station),
            )]
            if write.state:
                statements.append((
                    "INSERT INTO activities(station, title, start, checkpoint) VALUES (?, ?, ?, ?)",
                    (write.station, write.state, write.at, write.at),
                ))
        self._write(statements)

    async def checkpoint(self, now: float) -> None:
        self._write([
            ("UPDATE intervals SET checkpoint = ? WHERE end IS NULL", (now,)),
            ("UPDATE activities SET checkpoint = ? WHERE end IS NULL", (now,)),
        ])

    async def recover(self, node: str | None = None) -> int:
        where, params = ("AND node = ?", (node,)) if node is not None else ("", ())
        count = self._db.execute(f"SELECT count(*) FROM intervals WHERE end IS NULL {where}", params).fetchone()[0]
        self._write([
            (f"UPDATE intervals SET end = checkpoint, end_reason = 'crash' WHERE end IS NULL {where}", params),
            ("UPDATE activities SET end = checkpoint WHERE end IS NULL", ()),
        ])
        return int(count)

    async def close_all(self, now: float, reason: str, node: str | None = None) -> None:
        self._write([
            ("UPDATE intervals SET end = ?, end_reason = ? WHERE end IS NULL", (now, reason)),
            ("UPDATE activities SET end = ? WHERE end IS NULL", (now,)),
        ])

    async def intervals(self, start: float, end: float) -> list[Interval]:
        rows = self._db.execute(
            "SELECT station, state, start, end, end_reason FROM intervals "
            "WHERE start < ? AND (end IS NULL OR end > ?) ORDER BY start, id",
            (end, start),
        )
        return [Interval(r["station"], r["state"], r["start"], r["end"], r["end_reason"]) for r in rows]

    async def activities(self, start: float, end: float) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT station, title, start, end FROM activities "
            "WHERE start < ? AND (end IS NULL OR end > ?) ORDER BY start, id",
            (end, start),
        )
        return [dict(row) for row in rows]

    async def close(self) -> None:
        self._db.close()
