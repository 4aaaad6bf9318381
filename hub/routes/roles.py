"""Which roles may use a route: every endpoint declares it, and a test enforces that.

Roles: ``public`` (anyone), ``operator`` (a logged-in Pendopo operator), ``station`` (a
station token). The declaration is what the route allows; the route itself checks the
credential, so the table in ``docs/security.md`` and the code cannot drift apart unnoticed:
``tests/test_roles.py`` enumerates the router and fails on any endpoint without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

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
