"""The station registry: who may connect, what they are called, who may see them.

Parsed from a CSV with the columns ``id,name,kind,kecamatan,public``. Parsing is all or
nothing: every bad line is reported with its line number and nothing is returned, so an
import can never leave a registry half replaced.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hub.errors import RegistryError

COLUMNS = ("id", "name", "kind", "kecamatan", "public")
KINDS = ("opd", "kecamatan", "kelurahan", "desa")
PENDOPO = "pendopo"  # the control room's own talk-back publisher, not a registry row

_REGION_CODE = re.compile(r"^\d{2}\.\d{2}\.\d{2}(\.\d{4})?$")
_OPD_ID = re.compile(r"^opd\.[a-z0-9][a-z0-9_-]{0,62}$")
_TRUE = {"true", "1", "yes", "ya"}
_FALSE = {"false", "0", "no", "tidak"}


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    kind: str
    kecamatan: str
    public: bool


def valid_station_id(station_id: str) -> bool:
    return bool(_REGION_CODE.match(station_id) or _OPD_ID.match(station_id))


class Registry:
    """An immutable, ordered set of stations."""

    def __init__(self, stations: Iterable[Station]) -> None:
        self._by_id = {station.id: station for station in stations}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Station]:
        return iter(self._by_id.values())

    def __contains__(self, station_id: object) -> bool:
        return station_id in self._by_id

    def get(self, station_id: str) -> Station | None:
        return self._by_id.get(station_id)

    def visible(self, operator: bool) -> list[Station]:
        return [s for s in self._by_id.values() if operator or s.public]


def parse_registry(text: str) -> Registry:
    """Parse CSV text; raise :class:`RegistryError` listing every bad line."""
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != list(COLUMNS):
        raise RegistryError([f"line 1: header must be {','.join(COLUMNS)}"])
    stations: list[Station] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        station, problem = _parse_row(row)
        if problem:
            problems.append(f"line {line}: {problem}")
            continue
        assert station is not None
        if station.id in seen:
            problems.append(f"line {line}: duplicate id {station.id} (first on line {seen[station.id]})")
            continue
        seen[station.id] = line
        stations.append(station)
    if problems:
        raise RegistryError(problems)
    if not stations:
        raise RegistryError(["the registry has no stations"])
    return Registry(stations)


def _parse_row(row: list[str]) -> tuple[Station | None, str]:
    if len(row) != len(COLUMNS):
        return None, f"expected {len(COLUMNS)} columns, found {len(row)}"
    station_id, name, kind, kecamatan, public = (cell.strip() for cell in row)
    if not valid_station_id(station_id):
        return None, f"id {station_id!r} is neither a region code (35.09.01[.2001]) nor opd.<slug>"
    if not name:
        return None, "name is empty"
    if kind not in KINDS:
        return None, f"kind {kind!r} must be one of {', '.join(KINDS)}"
    if kind != _kind_of_id(station_id):
        return None, f"kind {kind} does not match id {station_id} (a {_kind_of_id(station_id)} code)"
    if public.lower() not in _TRUE | _FALSE:
        return None, f"public {public!r} must be true or false"
    return Station(station_id, name, kind, kecamatan, public.lower() in _TRUE), ""


def _kind_of_id(station_id: str) -> str:
    """Kemendagri codes say what they are: 3 parts a kecamatan, 1xxx a kelurahan, 2xxx a desa."""
    if station_id.startswith("opd."):
        return "opd"
    parts = station_id.split(".")
    if len(parts) == 3:
        return "kecamatan"
    return "kelurahan" if parts[3].startswith("1") else "desa"


def registry_to_csv(registry: Iterable[Station]) -> str:
    """The registry file itself, read back by :func:`parse_registry`. Not passed through the
    formula guard of the public CSV (``attendance.spreadsheet_safe``): this file is the hub's
    own configuration, written from what an administrator imported, and a ``'`` added here
    would become part of the name at the next import."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in registry:
        writer.writerow([s.id, s.name, s.kind, s.kecamatan, "true" if s.public else "false"])
    return out.getvalue()
