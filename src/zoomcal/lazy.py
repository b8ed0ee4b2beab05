"""Modules loaded on first use: the command line names every operation at start-up but runs one, so the
application layer behind the others (SQLAlchemy, numpy, HTTP clients) is imported only when a command needs it."""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class _OnFirstUse:
    """Stands for a module until one of its attributes is read, then imports it (once, whichever thread asks
    first: the import system's own lock serialises the import, this one the hand-over) and reads from it."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def _load(self) -> ModuleType:
        with self._lock:
            if self._module is None:
                self._module = importlib.import_module(self._name)
            return self._module

    def __getattr__(self, attribute: str) -> Any:
        module = self._module or self._load()
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, {'loaded' if self._module is not None else 'loaded on first use'}>"


def lazy(name: str) -> Any:
    """`name`'s module, imported when one of its attributes is first read."""
    return _OnFirstUse(name)
