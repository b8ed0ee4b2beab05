"""The planner, one case per branch: pure inputs in, plans out (no I/O anywhere)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zoomcal.connectors.base import Item
from zoomcal.domain.content import (
    add_length,
    apply_paths,
    apply_view,
    content_hash,
    diff_paths,
    diff_view,
    flatten,
    make_content,
    unflatten,
)
from zoomcal.sync.planner import EventRecord, PlanRules, SideLink, new_event_id, plan_sync

BASE = make_content(title="Plan", description="d", start="2026-03-02T10:00:00Z", end="2026-03-02T11:00:00Z",
                    timezone="UTC")


def item(rid, content=BASE, **kw):
    return Item(rid, content, etag=kw.pop("etag", "e1"), **kw)


def link(rid, content=BASE, pending=None, etag="e1"):
    return SideLink(rid, etag, content_hash(content), content, pending)


def record(base=BASE, a=BASE, b=BASE, a_pending=None, b_pending=None):
    return EventRecord("ev1", base, link("z1", a, a_pending) if a is not None else None,
                       link("g1", b, b_pending) if b is not None else None)


def edited(**changes):
    return make_content(**{**BASE, **changes})


def only(plan):
    assert len(plan.events) == 1, plan.events
    return plan.events[0]


def ops(event_plan):
    return [(w.side, w.op) for w in event_plan.writes]


def test_new_on_zoom_creates_in_calendar():
    p = only(plan_sync({"z1": item("z1")}, {}, []))
    assert ops(p) == [("b", "create")] and p.base == BASE and p.event_id == new_event_id("", "a", "z1")


def test_new_plain_calendar_event_is_tracked_not_paired():
    p = only(plan_sync({}, {"g1": item("g1", wants_peer=False)}, []))
    assert ops(p) == [] and p.seen["b"].id == "g1"


def test_marked_calendar_event_creates_meeting():
    assert ops(only(plan_sync({}, {"g1": item("g1", wants_peer=True)}, []))) == [("a", "create")]


def test_etag_only_change_writes_nothing():
    plan = plan_sync({}, {"g1": item("g1", etag="e2")}, [record()])
    assert all(not p.writes for p in plan.events)


def test_echo_of_our_own_write_is_recognised():
    # the calendar reports back exactly what we wrote last time: same hash as the link -> no write anywhere
    plan = plan_sync({"z1": item("z1")}, {"g1": item("g1", etag="e9")}, [record()])
    assert plan.writes == []


def test_change_on_one_side_updates_the_other():
    p = only(plan_sync({"z1": item("z1", edited(title="New"))}, {}, [record()]))
    assert ops(p) == [("b", "update")] and p.base["title"] == "New"


def test_different_fields_changed_on_both_sides_merge():
    p = only(plan_sync({"z1": item("z1", edited(title="New"))},
                       {"g1": item("g1", edited(start="2026-03-02T12:00:00Z", end="2026-03-02T13:00:00Z"))},
                       [record()]))
    assert p.base["title"] == "New" and p.base["start"] == "2026-03-02T12:00:00Z"
    assert sorted(ops(p)) == [("a", "update"), ("b", "update")] and not p.reviews


def test_same_field_conflict_follows_policy_and_is_reviewed():
    listing = ({"z1": item("z1", edited(title="Zoom"))}, {"g1": item("g1", edited(title="Cal"))})
    p = only(plan_sync(*listing, [record()], PlanRules(winner="b")))
    assert p.base["title"] == "Cal" and ops(p) == [("a", "update")]
    assert [(r.path, r.a_value, r.b_value, r.chosen) for r in p.reviews] == [("title", "Zoom", "Cal", "b")]
    p = only(plan_sync(*listing, [record()], PlanRules(winner="a")))
    assert p.base["title"] == "Zoom" and ops(p) == [("b", "update")]


def test_same_change_on_both_sides_is_not_a_conflict():
    p = only(plan_sync({"z1": item("z1", edited(title="Same"))}, {"g1": item("g1", edited(title="Same"))},
                       [record()]))
    assert not p.reviews and not p.writes and p.base["title"] == "Same"


def test_delete_on_one_side_deletes_the_other():
    p = only(plan_sync({"z1": None}, {}, [record()]))
    assert ops(p) == [("b", "delete")] and p.writes[0].remote_id == "g1"


def test_delete_versus_modify_modification_wins():
    p = only(plan_sync({"z1": None}, {"g1": item("g1", edited(title="Kept"))}, [record()]))
    assert ops(p) == [("a", "create")] and p.base["title"] == "Kept" and "modified" in p.reason


def test_deleted_on_both_sides_is_forgotten():
    p = only(plan_sync({"z1": None}, {"g1": None}, [record()]))
    assert p.base is None and not p.writes


def test_first_sync_adopts_existing_pair_by_meeting_reference():
    zoom = item("81234", edited(title="Board", join={"meeting_id": "81234", "join_url": "u", "passcode": ""}))
    cal = item("g7", edited(title="Board (invite)"), peer_ref="81234", wants_peer=False)
    p = only(plan_sync({"81234": zoom}, {"g7": cal}, []))
    assert p.base["title"] == "Board" and ops(p) == [("b", "update")] and p.seen["b"].id == "g7"


def test_pending_create_adopts_its_twin_by_marker_instead_of_creating_again():
    ev = EventRecord("ev1", BASE, link("z1"), SideLink(None, pending="create"))
    twin = item("g-new", marker="ev1")
    p = only(plan_sync({}, {"g-new": twin}, [ev]))
    assert ops(p) == [] and p.seen["b"].id == "g-new"
    # without a twin in the listing: create again, flagged as possibly done already
    p = only(plan_sync({}, {}, [ev]))
    assert ops(p) == [("b", "create")] and p.writes[0].maybe_exists


def test_adopted_twin_brings_edits_made_after_our_write():
    ev = EventRecord("ev1", BASE, link("z1"), SideLink(None, pending="create"))
    p = only(plan_sync({}, {"g-new": item("g-new", edited(title="Edited"), marker="ev1")}, [ev]))
    assert p.base["title"] == "Edited" and ops(p) == [("a", "update")]


def test_pending_update_is_retried_without_new_changes():
    p = only(plan_sync({}, {}, [record(a_pending="update")]))
    assert ops(p) == [("a", "update")]


def test_owed_delete_yields_to_a_later_modification():
    ev = EventRecord("ev1", BASE, None, link("g1", pending="delete"))
    p = only(plan_sync({}, {"g1": item("g1", edited(title="Still here"))}, [ev]))
    assert ops(p) == [("a", "create")]


def test_mass_delete_is_held():
    records = [EventRecord(f"ev{i}", BASE, link(f"z{i}"), link(f"g{i}")) for i in range(10)]
    plan = plan_sync({f"z{i}": None for i in range(6)}, {}, records, PlanRules(max_delete_share=0.5,
                                                                               min_delete_items=5))
    assert plan.held_deletes == 6 and plan.writes == []
    plan = plan_sync({f"z{i}": None for i in range(6)}, {}, records,
                     PlanRules(max_delete_share=0.5, min_delete_items=5, confirm_deletes=True))
    assert len(plan.writes) == 6


def test_field_direction_rules_stop_edits_from_one_side():
    rules = PlanRules(flows={"b": frozenset({"title"})})
    p = plan_sync({}, {"g1": item("g1", edited(title="Cal"))}, [record()], rules)
    assert p.writes == [] and (not p.events or p.events[0].base["title"] == "Plan")



def test_a_plan_says_what_changed_and_which_rules_shaped_it():
    """What an event's history shows: the fields each side changed, and the rule behind each decision."""
    p = only(plan_sync({"z1": item("z1", edited(title="New"))}, {}, [record()]))
    assert p.changed == {"a": ["title"]} and p.rules == []
    listing = ({"z1": item("z1", edited(title="Zoom"))}, {"g1": item("g1", edited(title="Cal", description="x"))})
    p = only(plan_sync(*listing, [record()], PlanRules(winner="b")))
    assert p.changed == {"a": ["title"], "b": ["description", "title"]}
    assert p.rules == ["title changed on both sides: B wins (conflict.policy)"]
    kept = only(plan_sync({}, {"g1": item("g1", edited(title="Cal"))}, [record()],
                          PlanRules(flows={"b": frozenset({"title"})})))
    assert kept.rules == ["title edits on B do not flow from there (fields)"] and kept.changed == {}
    assert kept.reason == "edited title on B: kept there by the rules" and kept.writes == []
    new = only(plan_sync({}, {"g2": item("g2", wants_peer=True)}, []))
    assert new.rules == ["B item asks for a counterpart (marker)"]
    records = [EventRecord(f"ev{i}", BASE, link(f"z{i}"), link(f"g{i}")) for i in range(10)]
    held = plan_sync({f"z{i}": None for i in range(6)}, {}, records, PlanRules(max_delete_share=0.5))
    assert held.events[0].rules == ["deleting more than 50% of B at once is held for confirmation (deletes.max_share)"]


# --- the content helpers the planner stands on ---------------------------------------------------------------

texts = st.text(max_size=5)
instants = st.sampled_from(["2026-03-02T10:00:00Z", "2026-03-03T10:00:00Z", "2026-03-04T09:00:00Z"])
overrides = st.dictionaries(instants, st.fixed_dictionaries({"start": instants, "end": instants},
                                                            optional={"title": texts}), max_size=2)
joins = st.one_of(st.none(), st.fixed_dictionaries({"meeting_id": texts, "join_url": texts, "passcode": texts}))
spans = st.tuples(instants, st.sampled_from([0, 1800, 3600, 86400]))
contents = st.builds(lambda t, d, o, j, x, a, span: make_content(
                         title=t, description=d, start=span[0], end=add_length(span[0], span[1]), overrides=o, join=j,
                         exdates=x, attendees=a),
                     texts, texts, overrides, joins, st.lists(instants, max_size=2),
                     st.lists(st.emails(), max_size=2), spans)


@given(contents, contents)
def test_diff_then_apply_reaches_the_target(before, after):
    assert apply_paths(before, diff_paths(before, after)) == after
    assert unflatten(flatten(after)) == after
    assert diff_paths(after, after) == {}


@given(contents, contents)
def test_the_start_plus_duration_view_round_trips(before, after):
    changes = diff_view(before, after)
    assert apply_view(before, changes) == after
    assert "end" not in changes   # times change as start and/or duration, never as a bare end
    assert diff_view(after, after) == {}


def test_a_move_and_a_new_length_from_different_sides_combine():
    base = BASE
    moved = edited(start="2026-03-02T14:00:00Z", end="2026-03-02T15:00:00Z")       # zoom: +4h, same length
    longer = edited(end="2026-03-02T11:30:00Z")                                    # calendar: 90 minutes
    p = only(plan_sync({"z1": item("z1", moved)}, {"g1": item("g1", longer)}, [record()]))
    assert (p.base["start"], p.base["end"]) == ("2026-03-02T14:00:00Z", "2026-03-02T15:30:00Z")
    assert not p.reviews and sorted(ops(p)) == [("a", "update"), ("b", "update")]
    assert base["end"] == "2026-03-02T11:00:00Z"


def test_moving_an_already_moved_occurrence_keeps_its_length():
    rid = "2026-03-03T10:00:00Z"
    series = edited(rrule="FREQ=DAILY;COUNT=3",
                    overrides={rid: {"start": "2026-03-03T12:00:00Z", "end": "2026-03-03T13:00:00Z"}})
    again = edited(rrule="FREQ=DAILY;COUNT=3",
                   overrides={rid: {"start": "2026-03-03T15:00:00Z", "end": "2026-03-03T16:00:00Z"}})
    ev = EventRecord("ev1", series, link("z1", series), link("g1", series))
    p = only(plan_sync({"z1": item("z1", again)}, {}, [ev]))
    assert p.base["overrides"] == again["overrides"] and ops(p) == [("b", "update")]
