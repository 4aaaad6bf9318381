"""Which roles may use a route: every endpoint declares it, and a test enforces that.

Roles: ``public`` (anyone), ``operator`` (a logged-in Pendopo operator), ``station`` (the
route takes a station's token as its credential; a route open to ``public`` is open to
stations as to anyone, so ``station`` is declared only where the token opens something an
anonymous caller cannot). The declaration is what the route allows; the route itself checks
the credential. :func:`declared` lists every (method, path) the router answers with its
roles; ``tests/test_role_matrix.py`` calls each as every kind of caller and fails when the
answers and the declaration differ, or when a route or method declares nothing, and
``tests/test_http_api_doc.py`` fails when docs/http-api.md misses one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

ROLES = ("public", "operator", "station")
F = TypeVar("F", bound=Callable[..., Any])


def allow(*roles: str) -> Callable[[F], F]:
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"roles must be among {ROLES}: {sorted(unknown)}")

    def mark(endpoint: F) -> F:
        endpoint.roles = frozenset(roles)  # type: ignore[attr-defined]  # any callable may carry its roles
        return endpoint

    return mark


def roles_of(endpoint: Any) -> frozenset[str] | None:
    return getattr(endpoint, "roles", None)


def declared(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], frozenset[str] | None]:
    """``{(method, path): roles}`` for everything the router answers, in its own spelling:
    each method of a :class:`Route` (Starlette adds HEAD to GET), ``"WS"`` for a
    :class:`WebSocketRoute`, ``GET`` on ``<mount>/{path}`` for a :class:`Mount` (static
    files). Roles are None where nothing was declared; any other kind of route is a
    ``TypeError``, so nothing answers unlisted."""
    table: dict[tuple[str, str], frozenset[str] | None] = {}
    for route in routes:
        # setdefault: Starlette answers with the first route that matches.
        if isinstance(route, Route):
            for method in sorted(route.methods or ("*",)):  # None: a class endpoint, any method
                table.setdefault((method, route.path), roles_of(route.endpoint))
        elif isinstance(route, WebSocketRoute):
            table.setdefault(("WS", route.path), roles_of(route.endpoint))
        elif isinstance(route, Mount):
            table.setdefault(("GET", route.path + "/{path}"), roles_of(route.app))
        else:
            raise TypeError(f"a route the role table does not know: {route!r}")
    return table
