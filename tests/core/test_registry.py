from __future__ import annotations

from pathlib import Path

import pytest

from hub.core.registry import parse_registry, registry_to_csv
from hub.errors import RegistryError

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "jember_stations.csv"


def test_sample_registry_is_jember() -> None:
    registry = parse_registry(SAMPLE.read_text())
    assert len(registry) == 303
    kinds = {kind: sum(1 for s in registry if s.kind == kind) for kind in ("kecamatan", "desa", "kelurahan", "opd")}
    assert kinds == {"kecamatan": 31, "desa": 226, "kelurahan": 22, "opd": 24}
    assert parse_registry(registry_to_csv(registry)).get("opd.dinkes") == registry.get("opd.dinkes")


def test_every_bad_line_is_reported() -> None:
    with pytest.raises(RegistryError) as caught:
        parse_registry("id,name,kind,kecamatan,public\n35.09.01,A,desa,X,true\nopd.x,B,opd,,maybe\n,C,desa,X,true\n")
    assert [p.split(":")[0] for p in caught.value.problems] == ["line 2", "line 3", "line 4"]


def test_header_must_match() -> None:
    with pytest.raises(RegistryError, match="line 1"):
        parse_registry("id,name\n")
