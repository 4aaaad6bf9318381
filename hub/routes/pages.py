"""HTML pages and their static assets. Pages are plain files; data comes from the API and
``/ws/watch``. Every page is served with a Content-Security-Policy that allows no inline
script and nothing from another origin."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from hub.routes.roles import allow

PORTAL_DIR = Path(__file__).resolve().parent.parent / "static"
WALL_DIR = Path(__file__).resolve().parent.parent.parent / "pendopo_wall" / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def page(path: Path) -> Response:
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@allow("public", "operator")
async def portal(request: Request) -> Response:
    return page(PORTAL_DIR / "index.html")


@allow("public", "operator")
async def watch_page(request: Request) -> Response:
    return page(PORTAL_DIR / "watch.html")


@allow("public", "operator")
async def reports_page(request: Request) -> Response:
    return page(PORTAL_DIR / "laporan.html")


@allow("public", "operator")
async def login_page(request: Request) -> Response:
    return page(PORTAL_DIR / "login.html")


@allow("operator")
async def wall_page(request: Request) -> Response:
    if request.scope.get("jaga.operator") is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)
    return page(WALL_DIR / "index.html")


class _Assets(StaticFiles):
    """Static files with the same security headers as pages."""

    roles = frozenset({"public", "operator"})  # what allow() would mark (tests/test_roles.py reads it)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def _static(directory: Path) -> _Assets:
    directory.mkdir(parents=True, exist_ok=True)
    return _Assets(directory=directory)


routes = [
    Route("/", portal),
    Route("/watch/{station}", watch_page),
    Route("/laporan", reports_page),
    Route("/login", login_page),
    Route("/wall", wall_page),
    Mount("/static", app=_static(PORTAL_DIR), name="static"),
    Mount("/wall/static", app=_static(WALL_DIR), name="wall-static"),
]
