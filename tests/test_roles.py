"""Every route the app registers declares the roles that may use it (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount, Route, WebSocketRoute

from hub.app import create_app
from hub.routes.roles import ROLES, roles_of
from tests.kit import hub_settings


def test_every_route_declares_its_roles(tmp_path: Path) -> None:
    app = create_app(hub_settings(tmp_path))
    seen = 0
    for route in app.routes:
        assert isinstance(route, (Route, WebSocketRoute, Mount)), route
        endpoint = route.app if isinstance(route, Mount) else route.endpoint
        roles = roles_of(endpoint)
        assert roles, f"{route.path} declares no roles: add @allow(...)"
        assert roles <= set(ROLES), route.path
        seen += 1
    assert seen >= 20
