"""Structured logging; secrets are redacted before anything is rendered."""

from __future__ import annotations

import logging
import re
import sys

import structlog

SECRET_KEYS = re.compile(r"(token|secret|password|passcode|authorization|assertion|code_verifier)", re.I)


def redact(_logger, _name, event_dict: dict) -> dict:
    for key in list(event_dict):
        if SECRET_KEYS.search(key):
            event_dict[key] = "***"
    return event_dict


class _Stderr:
    """Standard error as it is when a line is written (not as it was when logging was set up: a caller may have
    replaced it since, and a closed stream must never make logging fail)."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):
            return 0

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (ValueError, OSError):
            pass


def configure(level: str = "WARNING", json: bool = False) -> None:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "zoomcal"):
    return structlog.get_logger(name)
