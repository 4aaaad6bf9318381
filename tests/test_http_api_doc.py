"""docs/http-api.md lists every HTTP route and method the router answers, with its roles.

The reference table is read back and compared with :func:`hub.routes.roles.declared` both
ways: a route, method or role missing from the doc fails, and so does a row the app no
longer has. HEAD is implied by GET (Starlette adds it) and is not listed.
"""

from __future__ import annotations

import re
from pathlib import Path

from hub.app import create_app
from hub.routes.roles import declared
from tests.kit import REPO, hub_settings

DOC = REPO / "docs" / "http-api.md"
ROW = re.compile(r"^\| `(GET|POST|DELETE|PATCH|OPTIONS|PUT|WS)` \| `([^`]+)` \| ([a-z, ]+) \|", re.MULTILINE)


def documented() -> dict[tuple[str, str], frozenset[str]]:
    rows = ROW.findall(DOC.read_text(encoding="utf-8"))
    table = {(method, path): frozenset(role.strip() for role in roles.split(",")) for method, path, roles in rows}
    assert len(table) == len(rows), "a route is listed twice"
    return table


def test_every_route_and_method_is_in_the_http_api_reference(tmp_path: Path) -> None:
    routes = {key: roles for key, roles in declared(create_app(hub_settings(tmp_path)).routes).items()
              if key[0] != "HEAD"}
    doc = documented()
    missing = sorted(set(routes) - set(doc))
    assert not missing, f"add these to docs/http-api.md: {missing}"
    stale = sorted(set(doc) - set(routes))
    assert not stale, f"docs/http-api.md lists routes the app does not have: {stale}"
    wrong = {key: (sorted(doc[key]), sorted(roles or ())) for key, roles in routes.items() if doc[key] != roles}
    assert not wrong, f"roles in docs/http-api.md differ from @allow (doc, code): {wrong}"


def test_the_readme_links_the_http_api_reference() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    docs_row = next(line for line in readme.splitlines() if line.startswith("| `docs/` |"))
    assert "(docs/http-api.md)" in docs_row
