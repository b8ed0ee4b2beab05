"""Declarative mapping rules: a versioned TOML file with shipped defaults, overridable per tenant."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zoomcal.errors import ConfigError
from zoomcal.tomlfile import read_toml, validate

Direction = Literal["both", "zoom_to_calendar", "calendar_to_zoom", "none"]
SUPPORTED_VERSIONS = (1,)
# Which content fields each rules field governs.
FIELD_GROUPS = {
    "title": ("title",),
    "description": ("description",),
    "time": ("start", "end", "duration", "timezone", "all_day"),
    "recurrence": ("rrule", "exdates", "overrides"),
    "attendees": ("attendees",),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarkerRules(_Strict):
    location_equals: list[str] = ["zoom"]
    description_contains: list[str] = ["#zoom"]


class FieldRules(_Strict):
    title: Direction = "both"
    description: Direction = "both"
    time: Direction = "both"
    recurrence: Direction = "both"
    attendees: Direction = "both"


ShowAs = Literal["busy", "tentative", "free", "ooo", "focus"]


class GoogleAvailability(_Strict):
    transparent: ShowAs = "free"
    declined: ShowAs = "free"
    tentative: ShowAs = "tentative"
    outOfOffice: ShowAs = "ooo"  # noqa: N815 (Google's own eventType spelling)
    focusTime: ShowAs = "focus"  # noqa: N815
    workingLocation: ShowAs = "free"  # noqa: N815
    birthday: ShowAs = "free"


class IcalAvailability(_Strict):
    transparent: ShowAs = "free"
    tentative: ShowAs = "tentative"
    oof: ShowAs = "ooo"
    free: ShowAs = "free"
    working_elsewhere: ShowAs = "free"


class AvailabilityRules(_Strict):
    window_past_days: int = Field(7, ge=0, le=366)
    window_future_days: int = Field(180, ge=1, le=1100)
    google: GoogleAvailability = GoogleAvailability()
    ical: IcalAvailability = IcalAvailability()


class ConflictRules(_Strict):
    policy: Literal["calendar", "zoom"] = "calendar"


class DeleteRules(_Strict):
    max_share: float = Field(0.5, gt=0, le=1)
    min_items: int = Field(5, ge=0)


class ZoomRules(_Strict):
    topic_max: int = Field(200, ge=1, le=200)
    agenda_max: int = Field(2000, ge=1, le=2000)
    unsupported_recurrence: Literal["no_fixed_time", "first_only"] = "no_fixed_time"


class ContactsRules(_Strict):
    # whose display name a person gets when their records disagree: providers in order ("zoomcal" is the
    # person's own zoomcal profile); a provider not named comes after all named ones
    name_from: list[str] = Field(default_factory=lambda: ["zoomcal", "zoom", "graph-contacts", "google-contacts",
                                                          "carddav"], min_length=1)

    @field_validator("name_from")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not isinstance(v, str) or not v.strip() for v in value) or len(set(value)) != len(value):
            raise ValueError("name_from lists provider keys, each once")
        return value


class CalendarRules(_Strict):
    join_header: str = "── Zoom meeting ──"

    @field_validator("join_header")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if not value.strip() or "\n" in value:
            raise ValueError("join_header must be one non-empty line")
        return value


class MappingRules(_Strict):
    version: int
    marker: MarkerRules = MarkerRules()
    fields: FieldRules = FieldRules()
    availability: AvailabilityRules = AvailabilityRules()
    conflict: ConflictRules = ConflictRules()
    deletes: DeleteRules = DeleteRules()
    zoom: ZoomRules = ZoomRules()
    calendar: CalendarRules = CalendarRules()
    contacts: ContactsRules = ContactsRules()

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported rules version {value}; this zoomcal reads {SUPPORTED_VERSIONS}")
        return value

    def flows(self, field: str, from_side: str) -> bool:
        """Do edits of `field` (a content key) made on `from_side` ("a" = Zoom, "b" = calendar) propagate?"""
        for group, members in FIELD_GROUPS.items():
            if field in members:
                direction = getattr(self.fields, group)
                break
        else:
            return True
        if direction == "both":
            return True
        if direction == "none":
            return False
        return direction == ("zoom_to_calendar" if from_side == "a" else "calendar_to_zoom")

    def wins(self) -> str:
        return "b" if self.conflict.policy == "calendar" else "a"


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def default_rules_dict() -> dict[str, Any]:
    text = resources.files("zoomcal.mapping").joinpath("default_rules.toml").read_text("utf-8")
    return tomllib.loads(text)


def parse_rules(data: dict[str, Any]) -> MappingRules:
    return validate(MappingRules, _deep_merge(default_rules_dict(), data), "mapping rules")


def load_rules(path: Path | None = None, overrides: dict[str, Any] | None = None) -> MappingRules:
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path, "rules")
        if "version" not in data:
            raise ConfigError(f"rules file {path} has no 'version' key")
    if overrides:
        data = _deep_merge(data, overrides)
    return parse_rules(data)


DEFAULT_RULES = parse_rules({})
