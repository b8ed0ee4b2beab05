"""Helpers shared by the sandboxes: OAuth clients and bearer tokens, JSON errors."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def api_error_response(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


@dataclass
class TokenBook:
    """Issued access / refresh tokens. Refresh tokens rotate: each one works once."""

    ttl: int = 3600
    access: dict[str, tuple[str, float]] = field(default_factory=dict)     # token -> (subject, expires)
    refresh: dict[str, str] = field(default_factory=dict)                   # token -> subject

    def issue(self, subject: str, with_refresh: bool = False) -> dict:
        token = "at_" + secrets.token_urlsafe(24)
        self.access[token] = (subject, time.time() + self.ttl)
        out = {"access_token": token, "token_type": "bearer", "expires_in": self.ttl}
        if with_refresh:
            rt = "rt_" + secrets.token_urlsafe(24)
            self.refresh[rt] = subject
            out["refresh_token"] = rt
        return out

    def grant_refresh(self, subject: str) -> str:
        rt = "rt_" + secrets.token_urlsafe(24)
        self.refresh[rt] = subject
        return rt

    def use_refresh(self, token: str) -> str | None:
        return self.refresh.pop(token, None)

    def subject(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        found = self.access.get(auth[7:].strip())
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def revoke(self, token: str) -> bool:
        """Revoke a grant by one of its tokens (access or refresh): every token of that subject stops working."""
        subject = self.refresh.get(token) or (self.access.get(token) or (None,))[0]
        if subject is None:
            return False
        self.refresh = {t: s for t, s in self.refresh.items() if s != subject}
        self.access = {t: v for t, v in self.access.items() if v[0] != subject}
        return True

    def expire_all(self) -> None:
        self.access.clear()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
    except ValueError:
        return None
    return user, password


def require(condition: bool, status: int, detail: str) -> None:
    if not condition:
        raise HTTPException(status_code=status, detail=detail)
