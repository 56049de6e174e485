"""Who may call what: the bearer key check (401) and each endpoint's role (403).

Authentication is a pure ASGI middleware that finds the caller's key and puts its principal in
the request's state; authorization happens after routing, where the endpoint is known: every
route of the app declares the role it needs (``ROLE_KEY`` in its OpenAPI extra, so the served
document shows it too), and a route built without one is refused when the app is built.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast, get_args

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bandit_router.core import Forbidden
from bandit_router.keys import OPEN_ACCESS, KeyRing, Principal, RequiredRole

ROLE_KEY = "x-required-role"
# The dashboard's page holds no data: it asks for a key and sends it with what it fetches.
OPEN_PATHS = frozenset({"/healthz", "/dashboard"})
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def role(required: RequiredRole) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that needs ``required``."""
    return {ROLE_KEY: required}


def required_role(route: APIRoute) -> RequiredRole:
    declared = (route.openapi_extra or {}).get(ROLE_KEY)
    if declared not in get_args(RequiredRole):
        raise TypeError(
            f"{sorted(route.methods or ())} {route.path}: every endpoint declares its role "
            f"(openapi_extra=role(...), one of {get_args(RequiredRole)}); got {declared!r}"
        )
    return cast(RequiredRole, declared)


def principal_of(request: Request) -> Principal:
    """The caller, as the key check found it; with no key configured, everyone is admin."""
    principal: Principal = request.scope.get("state", {}).get("principal", OPEN_ACCESS)
    return principal


def guarded(route: APIRoute, handler: Handler) -> Handler:
    """``handler``, refusing (403) a caller whose role the route does not admit."""
    required = required_role(route)
    if required in ("open", "any"):
        return handler

    async def checked(request: Request) -> Response:
        principal = principal_of(request)
        if not principal.may(required):
            raise Forbidden(f"{request.method} {route.path}", required, principal.role)
        return await handler(request)

    return checked


class RoleRoute(APIRoute):
    """An endpoint that admits the callers of its declared role only."""

    def get_route_handler(self) -> Handler:
        return guarded(self, super().get_route_handler())


class BearerAuth:
    """Pure ASGI middleware (no per-request task) that checks `Authorization: Bearer KEY`."""

    def __init__(
        self, app: ASGIApp, keys: KeyRing, on_refused: Callable[[], None] = lambda: None
    ) -> None:
        self.app = app
        self.keys = keys
        self.on_refused = on_refused

    def _principal(self, scope: Scope) -> Principal | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return None
                return self.keys.identify(token.strip())
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        principal = self._principal(scope)
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)
            return
        self.on_refused()
        response = JSONResponse(
            {"detail": "missing or invalid API key: send Authorization: Bearer KEY"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
