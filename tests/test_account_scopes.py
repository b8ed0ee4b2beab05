"""What a linked calendar's grant allows, judged against what zoomcal does with it (reading, writing, the profile),
and what the account may do with the calendar itself: the scopes each provider declares agree with the vendors'
own references, and the periodic check marks an account that cannot do its part, with the reason."""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import link_sandbox_user, make_context
from specs import SPECS, require_specs
from test_portal import PASSWORD, sign_in, web
from zoomcal.app import accounts, signin
from zoomcal.connectors import registry
from zoomcal.connectors.spec import judge_scopes

NEEDS = {"read": (("a", "b"), ("a", "c")), "write": (("w",),)}


@pytest.mark.parametrize(("granted", "read", "write"), [
    (["a"], True, False),                      # one scope meeting both of read's requirements
    (["b", "c", "W"], True, True),             # one each; case does not matter
    (["b"], False, False),                     # read's second requirement lacks
    ([], False, False),
])
def test_each_feature_is_met_when_every_requirement_has_a_granted_scope(granted, read, write):
    judged = {n.feature: n for n in judge_scopes(NEEDS, granted)}
    assert (judged["read"].met, judged["write"].met) == (read, write)
    if not judged["read"].met:
        assert judged["read"].lacking and set(judged["read"].lacking) <= set(NEEDS["read"])


def test_an_unknown_grant_is_not_judged_and_graph_scopes_compare_without_their_prefix():
    assert judge_scopes(NEEDS, None) == []
    graph = registry.get("graph").scopes
    judged = judge_scopes(graph, ["https://graph.microsoft.com/Calendars.ReadWrite", "offline_access"])
    assert all(n.met for n in judged)
    assert [n.met for n in judge_scopes(graph, ["Calendars.Read"])] == [True, False]


def test_zooms_needs_are_its_references_scopes_for_each_operation():
    require_specs()
    meetings = json.loads((SPECS / "zoom" / "meetings-api.json").read_text())["paths"]
    users = json.loads((SPECS / "zoom" / "users-api.json").read_text())["paths"]

    def allowed(paths, path, method):
        return set(paths[path][method]["security"][0]["openapi_oauth"])

    zoom = registry.get("zoom").scopes
    assert [set(r) for r in zoom["read"]] == [allowed(meetings, "/users/{userId}/meetings", "get"),
                                              allowed(meetings, "/meetings/{meetingId}", "get")]
    assert [set(r) for r in zoom["write"]] == [allowed(meetings, "/users/{userId}/meetings", "post"),
                                               allowed(meetings, "/meetings/{meetingId}", "patch"),
                                               allowed(meetings, "/meetings/{meetingId}", "delete")]
    assert [set(r) for r in zoom["profile"]] == [allowed(users, "/users/{userId}", "get")]
    assert [set(r) for r in zoom["presence"]] == [allowed(users, "/users/{userId}/presence_status", "get"),
                                                  allowed(users, "/users/{userId}/presence_status", "put")]


def test_googles_needs_are_among_the_scopes_its_reference_lists_for_the_methods():
    require_specs()
    methods = json.loads((SPECS / "google" / "calendar.v3.json").read_text())["resources"]["events"]["methods"]
    google = registry.get("google").scopes
    for scope in google["read"][0]:
        assert all(scope in methods[m]["scopes"] for m in ("list", "get", "instances"))
    for scope in google["write"][0]:
        assert all(scope in methods[m]["scopes"] for m in ("insert", "patch", "update", "delete", "import"))
    assert set(google["write"][0]) < set(google["read"][0])


def test_a_calendar_grant_that_cannot_write_or_a_calendar_shared_read_only_is_pointed_out(world, tmp_path):
    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada", "Europe/Paris")
        first = {a.provider: a for a in asyncio.run(accounts.health(ctx))}["google"]
        assert first.status == "ok"
        assert first.profile["access"] == "owner" and first.profile["timezone"] == "Europe/Paris"
        assert {n["feature"]: n["met"] for n in first.needs} == {"read": True, "write": True}
        # the grant is narrowed to reading (as a person who unticks a box at Google's consent page)
        world.google.tokens.scopes[info["google_refresh_token"]] = "https://www.googleapis.com/auth/calendar.readonly"
        for token in list(world.google.tokens.scopes):
            if token.startswith("at_"):
                world.google.tokens.scopes[token] = "https://www.googleapis.com/auth/calendar.readonly"
        world.google.tokens.expire_all()
        narrowed = {a.provider: a for a in asyncio.run(accounts.health(ctx))}["google"]
        assert narrowed.status == "reauth" and "does not allow writing to the calendar" in narrowed.status_reason
        assert {n["feature"]: n["met"] for n in narrowed.needs} == {"read": True, "write": False}
        signin.set_password(ctx, "ada@example.com", PASSWORD)
        client = web(ctx)
        sign_in(client, "ada@example.com")
        page = client.get("/accounts").text
        assert "Writing: <strong>not allowed</strong>" in page and "Reading: allowed by" in page
        # a full grant again, on a calendar its owner shares for reading only
        world.google.tokens.scopes[info["google_refresh_token"]] = "https://www.googleapis.com/auth/calendar"
        world.google.tokens.expire_all()
        world.google.calendars[info["google_calendar_id"]].access_role = "reader"
        shared = {a.provider: a for a in asyncio.run(accounts.health(ctx))}
        assert shared["google"].status == "degraded" and "may only read the calendar (reader)" in \
            shared["google"].status_reason
        assert shared["zoom"].status == "ok" and all(n["met"] for n in shared["zoom"].needs)
    finally:
        ctx.services.close()


def test_a_microsoft_calendar_that_cannot_be_edited_is_pointed_out(world, tmp_path):
    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada", calendar="graph")
        first = {a.provider: a for a in asyncio.run(accounts.health(ctx))}["graph"]
        assert first.status == "ok" and first.profile == {"email": "ada@example.com", "access": "can edit",
                                                          "writable": True}
        world.graph.calendars[info["graph_calendar_id"]]["canEdit"] = False     # shared with Ada to read
        after = {a.provider: a for a in asyncio.run(accounts.health(ctx))}["graph"]
        assert after.status == "degraded" and "read only" in after.status_reason
    finally:
        ctx.services.close()


def test_an_admin_checks_the_contact_sources_scopes_in_the_portal(world, tmp_path):
    from test_portal import form_token, person

    ctx = make_context(world, tmp_path)
    try:
        link_sandbox_user(ctx, world, "ada@example.com", "Ada")         # Zoom's users are a contact source
        signin.set_password(ctx, "ada@example.com", PASSWORD)
        signin.set_role(ctx, "ada@example.com", "admin")
        person(ctx, "bo@example.com", "Bo")
        admin = web(ctx)
        sign_in(admin, "ada@example.com")
        page = admin.get("/contacts").text
        assert 'id="check-scopes"' in page and "<th scope=\"col\">Scopes</th>" not in page
        checked = admin.post("/contacts/scopes", data={"csrf": form_token(page)})
        assert checked.status_code == 200 and "<th scope=\"col\">Scopes</th>" in checked.text
        assert '<li class="need-met">users: <code>user:read:list_users:admin</code>' in checked.text
        member = web(ctx)
        sign_in(member, "bo@example.com")
        refused = member.post("/contacts/scopes", data={"csrf": form_token(member.get("/contacts").text)})
        assert refused.status_code == 403
    finally:
        ctx.services.close()


def test_a_shared_google_calendar_names_no_address_as_its_accounts(world, tmp_path):
    from conftest import SANDBOX, add_account

    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        team = world.google.add_calendar("ada@example.com", cal_id="team1@group.calendar.google.com").id
        add_account(ctx, "ada@example.com", "google", {"api_base": f"{SANDBOX}/google/calendar/v3",
                                                       "token_url": f"{SANDBOX}/google/token"},
                    {"client_id": world.google.client_id, "client_secret": world.google.client_secret,
                     "refresh_token": world.google.tokens.grant_refresh("ada@example.com")}, team, "Team")
        checked = [a for a in asyncio.run(accounts.health(ctx)) if a.provider == "google"]
        emails = {a.calendar: a.profile.get("email") for a in checked}
        assert emails == {info["google_calendar_id"]: "ada@example.com", team: ""}
    finally:
        ctx.services.close()
