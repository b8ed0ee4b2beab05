"""The presence decision: the user's current state + rules + what Zoom shows now -> at most one write.

Pure: no I/O. The service around it reads the state from the busy index and the status from Zoom, and
applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from zoomcal.presence.rules import PresenceRules

PROTECTED = ("In_A_Zoom_Meeting", "Presenting", "On_A_Call")   # Zoom's own live states: never overridden
MIN_INTERVAL = timedelta(seconds=60)                           # Zoom: about one update per user per minute
DND = "Do_Not_Disturb"


def canonical_status(status: str | None) -> str | None:
    """Zoom spells Do-Not-Disturb two ways (`Do_No_Disturb` in the PUT schema)."""
    return DND if status in ("Do_No_Disturb", "Do_Not_Disturb") else status


@dataclass(frozen=True)
class Situation:
    kind: str                      # strongest kind right now: busy, tentative, ooo, focus, free
    event_id: str | None
    title: str | None
    is_zoom: bool
    calendars: tuple[str, ...]
    local_time: datetime           # now, in the user's zone
    interval_end: datetime | None  # when the current state ends (for Do-Not-Disturb without a set length)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.event_id or '-'}"


@dataclass(frozen=True)
class Memory:
    last_written: str | None = None
    last_written_at: datetime | None = None
    restore_to: str | None = None
    manual_since: datetime | None = None
    state_key: str | None = None


@dataclass
class Decision:
    status: str | None                      # what to write (None: nothing)
    dnd_minutes: int | None
    rule: str | None
    reason: str
    memory: Memory
    retry_at: datetime | None = None
    checked: list[tuple[str, str]] = field(default_factory=list)   # (rule, why it did or did not match)


def decide(situation: Situation, current: str | None, memory: Memory, rules: PresenceRules,
           now: datetime) -> Decision:
    current = canonical_status(current)
    checked = []
    chosen = None
    for rule in rules.rule:
        ok, why = rule.when.matches(situation)
        checked.append((rule.name, why))
        if ok:
            chosen = rule
            break
    new_state = situation.key != memory.state_key
    mem = replace(memory, state_key=situation.key)
    if chosen is None:
        return Decision(None, None, None, "no rule matches the current state", mem, checked=checked)
    target = memory.restore_to if chosen.status == "restore" else chosen.status
    if current in PROTECTED:
        return Decision(None, None, chosen.name, f"Zoom shows {current}: zoomcal never overrides it", mem,
                        checked=checked)
    ours = memory.last_written is not None and current == canonical_status(memory.last_written)
    if memory.manual_since is not None and not new_state:
        # the user set their status by hand during this state (Zoom told us, or we saw it): it stays until the
        # state changes
        return Decision(None, None, chosen.name, f"the user set {current} by hand at "
                        f"{memory.manual_since:%H:%M}; left alone until the state changes", mem, checked=checked)
    if new_state:
        mem = replace(mem, manual_since=None)
    if memory.last_written is not None and not ours and not new_state:
        # the user changed the status by hand after our last write: leave it for the rest of this state
        mem = replace(mem, manual_since=memory.manual_since or now)
        return Decision(None, None, chosen.name, f"the user set {current} by hand after zoomcal wrote "
                        f"{memory.last_written}; left alone until the state changes", mem, checked=checked)
    if chosen.status == "restore":
        if target is None or target == current:
            return Decision(None, None, chosen.name, "nothing to restore", replace(mem, restore_to=None,
                            last_written=None if target is None else memory.last_written), checked=checked)
    elif memory.restore_to is None:
        mem = replace(mem, restore_to=current)          # remember what to put back when the state ends
    if target == current:
        return Decision(None, None, chosen.name, f"Zoom already shows {current}", mem, checked=checked)
    if memory.last_written_at is not None and now - memory.last_written_at < MIN_INTERVAL:
        retry = memory.last_written_at + MIN_INTERVAL
        return Decision(None, None, chosen.name, f"rate limit: next write possible at {retry:%H:%M:%S}", mem,
                        retry_at=retry, checked=checked)
    minutes = None
    if target == DND:
        if chosen.dnd_minutes:
            minutes = chosen.dnd_minutes
        elif situation.interval_end is not None:
            minutes = max(1, min(1440, int((situation.interval_end - now).total_seconds() // 60) or 1))
        else:
            minutes = 20
    mem = replace(mem, last_written=target, last_written_at=now, manual_since=None)
    if chosen.status == "restore":
        mem = replace(mem, restore_to=None)
    return Decision(target, minutes, chosen.name, f"rule '{chosen.name}' -> {target}", mem, checked=checked)
