"""The provider registry: every provider zoomcal knows, found through the spec its folder exports.

The built-in providers are the import list below; more can be added without touching zoomcal's code, by naming
their modules in ZOOMCAL_EXTRA_PROVIDERS (comma-separated) or through the `zoomcal.providers` entry-point group.
Each module exports `SPEC` (one `ProviderSpec`) or `SPECS` (several).
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from zoomcal.connectors.spec import ProviderSpec

BUILT_IN = (
    "zoomcal.connectors.zoom",
    "zoomcal.connectors.zoom_calendar",
    "zoomcal.connectors.google",
    "zoomcal.connectors.graph",
    "zoomcal.connectors.ews",
    "zoomcal.connectors.caldav",
    "zoomcal.connectors.ics",
)

_specs: dict[str, ProviderSpec] = {}
_loaded: set[str] = set()
_scanned_for: str | None = None      # the ZOOMCAL_EXTRA_PROVIDERS value the last full scan saw


class UnknownProvider(KeyError):
    pass


def register(spec: ProviderSpec) -> ProviderSpec:
    _specs[spec.key] = spec
    return spec


def load_module(name: str) -> None:
    if name in _loaded:
        return
    module = importlib.import_module(name)
    specs = getattr(module, "SPECS", None) or (getattr(module, "SPEC", None),)
    for spec in specs:
        if not isinstance(spec, ProviderSpec):
            raise TypeError(f"{name} exports no ProviderSpec (SPEC or SPECS)")
        register(spec)
    _loaded.add(name)


def _load() -> None:
    """Import every provider once per process (entry points are costly to read: webhooks ask on every call); a
    changed ZOOMCAL_EXTRA_PROVIDERS is picked up at the next call."""
    global _scanned_for
    extra = os.environ.get("ZOOMCAL_EXTRA_PROVIDERS", "")
    if _scanned_for == extra:
        return
    for name in BUILT_IN:
        load_module(name)
    for name in filter(None, (n.strip() for n in extra.split(","))):
        load_module(name)
    for entry in entry_points(group="zoomcal.providers"):
        if entry.module not in _loaded:
            load_module(entry.module)
    _scanned_for = extra


def all_specs() -> list[ProviderSpec]:
    _load()
    return list(_specs.values())


def get(key: str) -> ProviderSpec:
    _load()
    try:
        return _specs[key]
    except KeyError:
        raise UnknownProvider(key) from None


def keys() -> list[str]:
    return [spec.key for spec in all_specs()]
