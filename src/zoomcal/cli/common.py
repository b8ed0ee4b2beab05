"""What every command shares: the tenant it acts in, opening the application context, rendering results and
errors (with the command-line hints the application layer leaves to its doors)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from zoomcal.app.errors import AppError, ConflictError, NeedsReauthError, NotFoundError, SchemaOutdated
from zoomcal.errors import ZoomcalError

if TYPE_CHECKING:
    from zoomcal.app.context import AppContext, Services
    from zoomcal.config import Settings

console = Console()
err = Console(stderr=True)
state: dict[str, Any] = {"tenant": None}
T = TypeVar("T")

SCHEMA_HINTS = {"missing": "run `zoomcal init` first", "behind": "run `zoomcal db upgrade`",
                "ahead": "use the zoomcal release that upgraded it", "no_vault": "run `zoomcal init` (or set "
                                                                                 "ZOOMCAL_VAULT_KEYS)"}
# application fields whose command-line spelling is not simply --field-name
FLAGS = {"user": "--user", "email": "the e-mail", "provider": "the provider", "client_secret": "--client-secret-env",
         "refresh_token": "--refresh-token-env", "password": "--password-env", "calendar": "--calendar",
         "meetings_calendar": "--meetings-calendar", "excluded_calendars": "--exclude-calendars",
         "working_hours": "--hours", "timezone": "--tz", "buffer_before_min": "--buffer-before",
         "buffer_after_min": "--buffer-after", "receives_meetings": "--receives-meetings/--no-meetings"}


def settings() -> Settings:
    from zoomcal.config import get_settings

    return get_settings()


def tenant() -> str:
    return state.get("tenant") or settings().tenant


def fail(message: str, code: int = 1, hint: str | None = None):
    err.print(f"[red]error:[/] {message}", highlight=False)
    if hint:
        err.print(f"  hint: {hint}", highlight=False)
    raise typer.Exit(code)


def hint_for(exc: AppError, flags: dict[str, str] | None = None) -> str | None:
    if isinstance(exc, SchemaOutdated):
        return SCHEMA_HINTS.get(exc.details.get("state", ""))
    if isinstance(exc, NotFoundError) and exc.field == "user":
        return "add the person with `zoomcal user add EMAIL`"
    if isinstance(exc, NotFoundError) and exc.field == "tenant":
        return "create it with `zoomcal tenant add NAME` (or pick another with --tenant)"
    if isinstance(exc, NeedsReauthError):
        return "link the account again with `zoomcal account relink ID` and new credentials"
    if exc.field:
        flag = (flags or {}).get(exc.field) or FLAGS.get(exc.field) or f"--{exc.field.replace('_', '-')}"
        return f"check {flag}"
    return None


def handled(fn: Callable[..., T] | None = None, *, flags: dict[str, str] | None = None):
    """Application errors become one readable line (and a hint naming the command's own flag, `flags` mapping a
    field to it where the command spells it differently); conflicts exit 3, other refusals 1."""
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except AppError as exc:
                fail(exc.message, 3 if isinstance(exc, ConflictError) and exc.details.get("conflict") else 1,
                     hint_for(exc, flags))
            except ZoomcalError as exc:
                fail(str(exc))
        return wrapper
    return decorate(fn) if fn is not None else decorate


def services(**kwargs: Any) -> Services:
    from zoomcal.app.context import open_services

    try:
        return open_services(settings(), **kwargs)
    except AppError as exc:
        fail(exc.message, hint=hint_for(exc))
    except ZoomcalError as exc:
        fail(str(exc))


def context(svc: Services | None = None) -> AppContext:
    from zoomcal.app.context import CLI

    svc = svc or services()
    try:
        return svc.context(tenant(), CLI)
    except AppError as exc:
        fail(exc.message, hint=hint_for(exc))


def run_async(ctx: AppContext, work: Callable[[], Awaitable[T]]) -> T:
    """Run async work on one event loop; the connectors it built are closed with it."""
    async def main() -> T:
        try:
            return await work()
        finally:
            await ctx.services.aclose()
    return asyncio.run(main())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def as_dict(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) else value


def when(text: str) -> datetime:
    """An ISO date-time (without an offset: local time in the person's zone) or a date (local midnight)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"not a date-time: {text!r}", hint="use e.g. 2026-12-01T09:00 or 2026-12-01T09:00:00+01:00")


def env_secret(var: str, label: str) -> str:
    value = os.environ.get(var)
    if not value:
        fail(f"environment variable {var} (for the {label}) is empty or unset")
    return value


def ask_secret(name: str, flag: str, required: bool) -> str:
    """A secret nobody passed: prompt on a terminal, else say which flag carries it."""
    if not required:
        return ""
    if not sys.stdin.isatty():
        fail(f"the {name.replace('_', ' ')} is needed", hint=f"pass {flag} VAR (no terminal to prompt on)")
    return typer.prompt(name.replace("_", " "), hide_input=True)


def listen(host: str, port: int, doing: str = "listen on", hint: str | None = None) -> socket.socket:
    """The listening socket, bound here so a busy port is one clear line rather than a server's traceback (and
    before anything else is printed)."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        fail(f"cannot {doing} {host}:{port}: {exc.strerror}", hint=hint)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a restart reuses it; a listener still refuses
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        fail(f"cannot {doing} {host}:{port}: {exc.strerror or exc}", hint=hint)
    sock.set_inheritable(True)
    return sock
