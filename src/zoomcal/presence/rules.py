"""Declarative presence rules (TOML): per tenant, overridable per user."""

from __future__ import annotations

import tomllib
from datetime import datetime, time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zoomcal.tomlfile import read_toml, validate

Kind = Literal["busy", "tentative", "ooo", "focus", "free"]
Status = Literal["Available", "Away", "Busy", "In_Calendar_Event", "Out_of_Office", "Do_Not_Disturb", "restore"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    kind: Kind | list[Kind] | None = None
    zoom_meeting: bool | None = None
    calendar: list[str] | None = None
    title_contains: list[str] | None = None
    between: str | None = None
    weekdays: list[str] | None = None

    @field_validator("between")
    @classmethod
    def _span(cls, value: str | None) -> str | None:
        if value is not None:
            start, _, end = value.partition("-")
            try:
                time.fromisoformat(start), time.fromisoformat(end)
            except ValueError as exc:
                raise ValueError("between must look like 09:00-17:00") from exc
        return value

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(d not in DAYS for d in value):
            raise ValueError(f"weekdays are {DAYS}")
        return value

    def matches(self, situation: Any) -> tuple[bool, str]:
        """(matched?, why) — the why names the first condition that failed, or what matched."""
        kinds = [self.kind] if isinstance(self.kind, str) else self.kind
        if kinds is not None and situation.kind not in kinds:
            return False, f"kind is {situation.kind}, rule wants {'/'.join(kinds)}"
        if self.zoom_meeting is not None and situation.is_zoom != self.zoom_meeting:
            return False, f"zoom_meeting is {situation.is_zoom}"
        if self.calendar is not None and not set(self.calendar) & set(situation.calendars):
            return False, f"calendar {situation.calendars} not in {self.calendar}"
        if self.title_contains is not None and not any(w.lower() in (situation.title or "").lower()
                                                       for w in self.title_contains):
            return False, f"title {situation.title!r} has none of {self.title_contains}"
        local: datetime = situation.local_time
        if self.weekdays is not None and DAYS[local.weekday()] not in self.weekdays:
            return False, f"{DAYS[local.weekday()]} not in {self.weekdays}"
        if self.between is not None:
            start, _, end = self.between.partition("-")
            if not time.fromisoformat(start) <= local.time() < time.fromisoformat(end):
                return False, f"{local:%H:%M} is outside {self.between}"
        return True, "matched"


class Rule(_Strict):
    name: str
    when: Condition = Condition()
    status: Status
    dnd_minutes: int | None = Field(None, ge=1, le=1440)


class PresenceRules(_Strict):
    version: int
    rule: list[Rule]

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"unsupported presence rules version {value}; this zoomcal reads 1")
        return value


def default_presence_dict() -> dict[str, Any]:
    return tomllib.loads(resources.files("zoomcal.presence").joinpath("default_presence.toml").read_text("utf-8"))


def parse_presence_rules(data: dict[str, Any]) -> PresenceRules:
    return validate(PresenceRules, {**default_presence_dict(), **data}, "presence rules")


def load_presence_rules(path: Path | None = None, *overrides: dict[str, Any] | None) -> PresenceRules:
    """Defaults, then a tenant file, then per-user overrides; a `rule` list given later replaces earlier ones."""
    data: dict[str, Any] = read_toml(path, "presence rules") if path is not None else {}
    for extra in overrides:
        data.update(extra or {})
    return parse_presence_rules(data)
