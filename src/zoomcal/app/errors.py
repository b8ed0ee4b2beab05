"""The typed errors of the application layer. Their messages speak of the thing, never of a door's syntax: the
CLI adds its own hints (which flag, which command), the portal its own (which field, which button)."""

from __future__ import annotations

from typing import Any

from zoomcal.errors import ZoomcalError


class AppError(ZoomcalError):
    kind = "error"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field            # the input that was wrong, when one was
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message, "field": self.field, **self.details}


class NotFoundError(AppError):
    kind = "not_found"


class InvalidError(AppError):
    kind = "invalid"


class ConflictError(AppError):
    kind = "conflict"


class ForbiddenError(AppError):
    kind = "forbidden"


class NotSignedInError(AppError):
    """No session, or one that ended: the person signs in (again)."""

    kind = "unauthenticated"


class ThrottledError(AppError):
    """Too many failed attempts: `details["retry_after"]` says in how many seconds to try again."""

    kind = "throttled"


class NeedsReauthError(AppError):
    """The provider no longer accepts the account's credentials: a person has to link it again."""

    kind = "needs_reauth"


class SchemaOutdated(AppError):
    """The database is not at the schema this zoomcal reads (missing, behind or ahead); `details["state"]` says
    which, so a door can say what to run."""

    kind = "schema"
